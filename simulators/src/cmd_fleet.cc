// outpost-sim fleet: generates a fleet's readings (outpost/sim/fleet.h) and delivers them as line
// protocol, CSV, or virtual agents over MQTT, paced in real time, N x faster, or at maximum rate.

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "commands.h"
#include "local_mqtt_output.h"
#include "mqtt_fleet.h"
#include "outpost/common/json.h"
#include "outpost/common/secrets.h"
#include "outpost/common/signals.h"
#include "outpost/sim/fleet.h"
#include "outpost/sim/outputs.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

struct FleetCli {
  FleetOptions fleet;
  std::string start = "auto";
  std::string duration = "0";
  std::string interval = "1s";
  std::string speed = "1";
  std::string warmup = "0";
  std::string anomalies;  // comma list
  std::string output = "none";
  std::string out;
  std::string labels;
  std::string line_ts = "us";
  std::string summary_json;
  bool quiet = false;
  // MQTT
  BrokerOptions broker;
  MqttOptions mqtt;
  std::string ack_timeout = "10s";
  std::string drain = "10s";
  uint64_t epoch = 0;
  bool no_status = false;
  // Transport of the virtual agents
  std::string transport = "mqtt";
  std::string zmq_server_key_file;
  // -o local-mqtt
  LocalMqttOptions local;
  std::string local_payload = "json";
  std::string ack_subscription = "per-device";
};

std::vector<std::string> splitComma(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  std::string x;
  while (std::getline(ss, x, ',')) {
    if (!x.empty()) v.push_back(x);
  }
  return v;
}

int usage(const std::string& msg) {
  std::cerr << "outpost-sim fleet: " << msg << "\n";
  return kExitUsage;
}

int runFleet(FleetCli& c) {
  const auto speed = parseSpeed(c.speed);
  if (!speed) return usage("--speed: " + speed.error().message());
  const auto duration = parseDurationUs(c.duration);
  if (!duration) return usage("--duration: " + duration.error().message());
  const auto interval = parseDurationUs(c.interval);
  if (!interval) return usage("--interval: " + interval.error().message());
  const auto warmup = parseDurationUs(c.warmup);
  if (!warmup) return usage("--anomaly-warmup: " + warmup.error().message());
  const auto ack_timeout = parseDurationUs(c.ack_timeout);
  if (!ack_timeout) return usage("--ack-timeout: " + ack_timeout.error().message());
  const auto drain = parseDurationUs(c.drain);
  if (!drain) return usage("--drain-timeout: " + drain.error().message());

  FleetOptions fo = c.fleet;
  fo.interval_us = *interval;
  fo.anomaly_warmup_s = double(*warmup) / 1e6;
  for (const auto& name : splitComma(c.anomalies)) {
    auto k = parseAnomalyKind(name);
    if (!k) {
      return usage("--anomalies: unknown kind '" + name +
                   "' (spike, dip, level_shift, drift, stuck, noise_burst, dropout)");
    }
    fo.kinds.push_back(*k);
  }
  if (!c.anomalies.empty() && fo.kinds.empty()) fo.anomaly_rate = 0;
  // Real time starts now; faster runs default to the past `duration` up to now (a backtest that
  // an aggregator accepts: its timestamps are not in the future).
  if (c.start == "auto") {
    fo.start_us = (*speed != 1.0 && *duration > 0) ? wallUs() - *duration : wallUs();
    fo.start_us -= fo.start_us % 1'000'000;
  } else {
    auto t = parseTimeUs(c.start);
    if (!t) return usage("--start: " + t.error().message());
    fo.start_us = *t;
  }
  fo.end_us = *duration > 0 ? fo.start_us + *duration : 0;

  if (c.output == "zmq") {
    c.output = "mqtt";
    c.transport = "zmq";
  }
  const bool to_mqtt = c.output == "mqtt";
  const bool zmq = c.transport == "zmq";
  if (zmq && !to_mqtt) return usage("--transport zmq needs --output mqtt (virtual agents)");
  if (zmq && (c.mqtt.zmq_endpoint.empty() || c.zmq_server_key_file.empty())) {
    return usage("--transport zmq needs --zmq-endpoint and --zmq-server-key");
  }
  if ((c.output == "csv") && c.out.empty()) return usage("--output csv needs --out DIR");
  if (c.output == "lines" && (c.out.empty() || c.out == "-") && fo.devices != 1) {
    return usage("--output lines to stdout needs --devices 1 (or --out DIR for a file per device)");
  }
  LineTimestamp lts = LineTimestamp::kMicros;
  if (c.line_ts == "none")
    lts = LineTimestamp::kNone;
  else if (c.line_ts == "s")
    lts = LineTimestamp::kSeconds;
  else if (c.line_ts == "ms")
    lts = LineTimestamp::kMillis;

  std::unique_ptr<Fleet> fleet;
  try {
    fleet = std::make_unique<Fleet>(fo);
  } catch (const std::invalid_argument& e) {
    return usage(e.what());
  }
  std::unique_ptr<StepOutput> output;
  if (c.output == "lines") {
    output = makeLinesOutput(c.out == "-" ? "" : c.out, *fleet, lts);
  } else if (c.output == "csv") {
    output = makeCsvOutput(c.out, *fleet);
  } else if (c.output == "local-mqtt") {
    LocalMqttOptions lo = c.local;
    lo.broker = c.broker.broker;
    lo.json = c.local_payload == "json";
    lo.keepalive_s =
        static_cast<int>(std::clamp<int64_t>(3 * fo.interval_us / 1'000'000, 30, 65535));
    auto made = makeLocalMqttOutput(lo, *fleet);
    if (!made) {
      std::cerr << "outpost-sim fleet: " << made.error().message() << "\n";
      return kExitUnavailable;
    }
    output = std::move(*made);
  }
  std::string labels_path = c.labels;
  if (labels_path.empty() && !c.out.empty() && c.out != "-") labels_path = c.out + "/labels.jsonl";
  std::unique_ptr<FILE, int (*)(FILE*)> labels_file(nullptr, &std::fclose);
  if (!labels_path.empty()) {
    if (!c.out.empty() && c.out != "-") {
      std::error_code ec;
      std::filesystem::create_directories(c.out, ec);
    }
    labels_file.reset(std::fopen(labels_path.c_str(), "wb"));
    if (!labels_file) {
      std::cerr << "outpost-sim fleet: cannot create " << labels_path << "\n";
      return kExitFailure;
    }
  }

  std::unique_ptr<MqttFleet> mqtt;
  if (to_mqtt) {
    MqttOptions mo = c.mqtt;
    mo.broker = c.broker.broker;
    mo.topic_prefix = c.broker.topic_prefix;
    mo.ack_timeout_us = *ack_timeout;
    mo.status = !c.no_status;
    mo.ack_per_device = c.ack_subscription == "per-device";
    if (zmq) {
      mo.transport = Transport::kZmq;
      auto key = secrets::loadPublicKeyFile(c.zmq_server_key_file, "--zmq-server-key");
      if (!key) return usage(key.error().message());
      mo.zmq_server_key = *key;
    }
    std::vector<std::string> names;
    std::vector<uint64_t> epochs;
    for (int d = 0; d < fleet->devices(); ++d) {
      names.push_back(fleet->deviceName(d));
      epochs.push_back(c.epoch ? c.epoch : deviceEpoch(fo.seed, fo.start_us, d));
    }
    try {
      mqtt = std::make_unique<MqttFleet>(mo, std::move(names), std::move(epochs), fleet->sensors());
    } catch (const std::runtime_error& e) {
      std::cerr << "outpost-sim fleet: " << e.what() << "\n";
      return kExitFailure;
    }
    if (auto st = mqtt->connect(); !st) {
      std::cerr << "outpost-sim fleet: " << st.error().message() << "\n";
      return kExitUnavailable;
    }
  }

  Progress progress(c.quiet);
  const int64_t origin = monoUs();
  const int64_t step_wall = *speed > 0 ? static_cast<int64_t>(double(fo.interval_us) / *speed) : 0;
  const size_t window =
      static_cast<size_t>(fleet->devices()) * static_cast<size_t>(c.mqtt.inflight) * 2;
  std::vector<DeviceStep> steps;
  std::vector<Label> labels;
  uint64_t readings = 0, label_count = 0, step_count = 0;
  int64_t max_lag_us = 0;  // paced runs: how late the latest step was generated
  int rc = kExitOk;
  std::string error;
  bool interrupted = false;

  while (true) {
    if (signals::stopRequested()) {
      interrupted = true;
      break;
    }
    if (fo.end_us > 0 && fleet->now() >= fo.end_us) break;
    // Real time: the step's readings exist at its end.
    const int64_t due =
        *speed > 0
            ? origin +
                  static_cast<int64_t>(double(fleet->now() + fo.interval_us - fo.start_us) / *speed)
            : 0;
    for (int64_t now = monoUs(); now < due && !signals::stopRequested(); now = monoUs()) {
      if (mqtt) {
        mqtt->pump(now);
        mqtt->wait(std::min<int64_t>(due - now, 2000));
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(std::min<int64_t>(due - now, 2000)));
      }
    }
    if (signals::stopRequested()) continue;
    if (*speed > 0) max_lag_us = std::max(max_lag_us, monoUs() - due);
    labels.clear();
    fleet->step(steps, labels);
    ++step_count;
    const int64_t now = monoUs();
    for (int d = 0; d < fleet->devices(); ++d) {
      DeviceStep& s = steps[static_cast<size_t>(d)];
      readings += s.readings.size();
      if (output) {
        if (auto st = output->write(*fleet, d, s); !st) {
          error = st.error().message();
          break;
        }
      }
      if (mqtt) {
        mqtt->setOnline(d, !s.offline);
        // Devices spread their publishes over the interval instead of all at once.
        const int64_t release = due + step_wall * d / fleet->devices();
        mqtt->enqueue(d, std::move(s.readings), fleet->now(), *speed > 0 ? release : now);
      }
    }
    if (error.empty() && output) {
      if (auto st = output->endStep(); !st) error = st.error().message();
    }
    if (!error.empty()) {
      rc = kExitFailure;
      break;
    }
    for (const auto& l : labels) {
      if (labels_file) {
        const std::string line = labelJson(l) + "\n";
        std::fwrite(line.data(), 1, line.size(), labels_file.get());
      }
    }
    label_count += labels.size();
    if (mqtt) {
      mqtt->pump(monoUs());
      // Maximum rate: as fast as the ack windows allow, never by dropping.
      while (*speed == 0 && mqtt->outstanding() > window && !signals::stopRequested()) {
        mqtt->wait(500);
        mqtt->pump(monoUs());
      }
    }
    const double frac =
        fo.end_us > 0 ? double(fleet->now() - fo.start_us) / double(fo.end_us - fo.start_us) : -1;
    const double el = std::max(1e-9, double(monoUs() - origin) / 1e6);
    std::string text = "sim " + isoTimeUs(fleet->now()).substr(0, 19) + "Z  " +
                       withCommas(readings) + " readings (" +
                       withCommas(static_cast<uint64_t>(double(readings) / el)) + "/s)  labels " +
                       std::to_string(label_count);
    if (mqtt) {
      const auto& ms = mqtt->stats();
      text += "  batches sent " + withCommas(ms.batches_sent) + " acked " +
              withCommas(ms.batches_acked) + " in flight " + std::to_string(ms.in_flight) +
              " queued " + std::to_string(ms.queued);
    }
    progress.update(frac, text);
  }
  const int64_t gen_end = monoUs();
  const uint64_t acked_by_gen_end = mqtt ? mqtt->stats().batches_acked : 0;
  if (output && rc == kExitOk) {
    if (auto st = output->finish(); !st) {
      error = st.error().message();
      rc = kExitFailure;
    }
  }
  if (labels_file && std::fflush(labels_file.get()) != 0) {
    error = "cannot write " + labels_path;
    rc = kExitFailure;
  }
  // Wait for the acks of what is still queued or in flight (bounded; shorter after SIGTERM).
  if (mqtt) {
    const int64_t limit = monoUs() + (interrupted ? std::min<int64_t>(*drain, 2'000'000) : *drain);
    while (mqtt->outstanding() > 0 && monoUs() < limit) {
      mqtt->pump(monoUs());
      mqtt->wait(2000);
      if (!interrupted && signals::stopRequested()) interrupted = true;
    }
    mqtt->pump(monoUs());
  }
  progress.finish();
  const double gen_s = std::max(1e-9, double(gen_end - origin) / 1e6);
  const double sim_s = double(fleet->now() - fo.start_us) / 1e6;

  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  std::string summary;
  json::Writer js(summary);
  js.beginObject()
      .member("command", "fleet")
      .member("cpu_s", cpu_s)
      .key("seed").uinteger(static_cast<uint64_t>(fo.seed))
      .key("devices").integer(static_cast<int64_t>(fo.devices))
      .key("sensors").integer(static_cast<int64_t>(fo.sensors))
      .member("output", c.output)
      .member("start_us", static_cast<int64_t>(fo.start_us))
      .member("simulated_s", sim_s)
      .key("steps").uinteger(static_cast<uint64_t>(step_count))
      .member("elapsed_s", gen_s)
      .key("readings").uinteger(static_cast<uint64_t>(readings))
      .member("readings_per_s", double(readings) / gen_s)
      .key("labels").uinteger(static_cast<uint64_t>(label_count))
      .member("interrupted", interrupted)
      .member("max_lag_ms", double(max_lag_us) / 1e3);
  std::cerr << "\noutpost-sim fleet: " << fo.devices << " devices x " << fo.sensors
            << " sensors, seed " << fo.seed << ", simulated " << isoTimeUs(fo.start_us) << " + "
            << sim_s << " s in " << gen_s << " s (" << (sim_s / gen_s) << "x real time)"
            << (interrupted ? ", stopped by signal" : "") << "\n"
            << "  readings generated  " << withCommas(readings) << " ("
            << withCommas(static_cast<uint64_t>(double(readings) / gen_s)) << "/s)\n"
            << "  anomalies labelled  " << label_count
            << (labels_path.empty() ? " (no labels file; --labels FILE)" : " in " + labels_path)
            << "\n";
  if (mqtt) {
    const auto& ms = mqtt->stats();
    const char* proto = c.transport == "zmq" ? "ZeroMQ" : "MQTT  ";
    std::cerr << "  " << proto << " batches      sent " << ms.batches_sent << ", resent "
              << ms.batches_resent << ", acked " << ms.batches_acked << ", rejected "
              << ms.batches_rejected << ", never acked " << ms.in_flight + ms.queued
              << ", dropped (backlog full) " << ms.batches_dropped << "\n"
              << "  " << proto << " readings     sent " << withCommas(ms.readings_sent)
              << ", acked " << withCommas(ms.readings_acked) << ", dropped "
              << withCommas(ms.readings_dropped) << "\n"
              << "  ack latency         p50 " << mqtt->ackLatencyMs(50) << " ms, p99 "
              << mqtt->ackLatencyMs(99) << " ms, max " << mqtt->ackLatencyMs(100) << " ms\n";
    if (*speed > 0)
      std::cerr << "  pacing              latest step " << double(max_lag_us) / 1e3
                << " ms behind schedule\n";
    auto count = [&js](const json::Name& k, auto v) {
      js.key(k).uinteger(static_cast<uint64_t>(v));
    };
    count("batches_acked_during_run", acked_by_gen_end);
    count("batches_sent", ms.batches_sent);
    count("batches_resent", ms.batches_resent);
    count("batches_acked", ms.batches_acked);
    count("batches_rejected", ms.batches_rejected);
    count("batches_unacked", ms.in_flight + ms.queued);
    count("batches_dropped", ms.batches_dropped);
    count("readings_sent", ms.readings_sent);
    count("readings_acked", ms.readings_acked);
    count("readings_dropped", ms.readings_dropped);
    count("readings_unacked", mqtt->unackedReadings());
    count("publish_failures", ms.publish_failures);
    count("reconnects", ms.reconnects);
    count("bad_acks", ms.bad_acks);
    js.key("ack_latency_ms")
        .beginObject()
        .member("p50", static_cast<double>(mqtt->ackLatencyMs(50)))
        .member("p99", static_cast<double>(mqtt->ackLatencyMs(99)))
        .member("max", static_cast<double>(mqtt->ackLatencyMs(100)))
        .endObject();
    mqtt->disconnect();
  }
  js.member("error", error.empty() ? "" : "see stderr").endObject();
  if (!error.empty()) std::cerr << "outpost-sim fleet: " << error << "\n";
  if (!c.summary_json.empty()) {
    std::ofstream f(c.summary_json);
    f << summary << "\n";
  }
  return rc;
}

}  // namespace

Command addFleetCommand(CLI::App& app) {
  auto c = std::make_shared<FleetCli>();
  CLI::App* cmd = app.add_subcommand(
      "fleet",
      "Simulate N devices x M sensors (deterministic from --seed) with labelled anomalies; "
      "deliver as line protocol, CSV, or virtual agents over MQTT or ZeroMQ");
  auto& f = c->fleet;
  cmd->add_option("--seed", f.seed, "Random seed: same seed and options = same output")
      ->capture_default_str();
  cmd->add_option("-n,--devices", f.devices, "Devices")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("-m,--sensors", f.sensors,
                  "Sensors per device; kinds cycle: temperature, humidity, vibration_rms, current, "
                  "power, pressure, counter")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--device-prefix", f.device_prefix, "Device ids are PREFIX0001, PREFIX0002, ...")
      ->capture_default_str();
  cmd->add_option("--start", c->start,
                  "Simulated start: now, 2024-05-01T00:00:00Z, epoch seconds; auto = now in real "
                  "time, now - duration when faster")
      ->capture_default_str();
  cmd->add_option("-d,--duration", c->duration,
                  "Simulated time to run (90s, 15m, 2h, 1d); 0 = until stopped")
      ->capture_default_str();
  cmd->add_option("--interval", c->interval, "Simulation step = one batch per device in MQTT mode")
      ->capture_default_str();
  cmd->add_option("--speed", c->speed, "1 = real time, N = N x faster, max = as fast as possible")
      ->capture_default_str();
  cmd->add_option("--rate", f.rate_hz,
                  "Readings/s of every sensor; 0 = per-kind defaults (0.1..2 Hz)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10000.0));
  cmd->add_option("--skew-ms", f.skew_ms, "Sd of each device clock's offset, ms")
      ->capture_default_str();
  cmd->add_option("--drift-ppm", f.drift_ppm, "Sd of each device clock's rate error, ppm")
      ->capture_default_str();
  cmd->add_option("--jitter-ms", f.jitter_ms,
                  "Max sampling jitter, ms (capped at a quarter period)")
      ->capture_default_str();
  cmd->add_option("--anomaly-rate", f.anomaly_rate, "Sensor anomalies per sensor-hour (Poisson)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--offline-rate", f.offline_rate, "Device offline episodes per device-hour")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--anomalies", c->anomalies,
                  "Comma list of sensor anomaly kinds to inject (default all: spike, dip, "
                  "level_shift, drift, stuck, noise_burst, dropout)");
  cmd->add_option("--anomaly-warmup", c->warmup,
                  "No anomaly in the first part of the run (e.g. 1h)")
      ->capture_default_str();
  cmd->add_option("--anomaly-duration-scale", f.duration_scale, "Multiplies every anomaly duration")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 1000.0));
  cmd->add_option("-o,--output", c->output,
                  "none (generate only), lines, csv, mqtt (virtual agents; over ZeroMQ with "
                  "--transport zmq), zmq (= mqtt --transport zmq), local-mqtt (each reading as a "
                  "message to a device's local broker, for real agents' MQTT source)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "lines", "csv", "mqtt", "zmq", "local-mqtt"}));
  cmd->add_option("--out", c->out,
                  "Directory for lines (DIR/<device>.lines; '-' = stdout, one device) and csv "
                  "(DIR/<device>/<sensor>.csv); labels go to DIR/labels.jsonl");
  cmd->add_option("--labels", c->labels,
                  "Labels file (JSON lines); default DIR/labels.jsonl with --out");
  cmd->add_option("--line-timestamp", c->line_ts,
                  "Timestamp of each line: us, ms, s (decimal), none")
      ->capture_default_str()
      ->check(CLI::IsMember({"us", "ms", "s", "none"}));
  cmd->add_option("--summary-json", c->summary_json, "Also write the final summary as JSON here");
  cmd->add_flag("-q,--quiet", c->quiet, "No progress output");
  addBrokerOptions(*cmd, c->broker);
  cmd->add_option(
         "--connections", c->mqtt.connections,
         "MQTT connections shared by the virtual devices; 0 = one per 1000 devices (max 8)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--client-prefix", c->mqtt.client_prefix,
                  "MQTT client ids are PREFIX-0, PREFIX-1, ...")
      ->capture_default_str();
  cmd->add_option("--inflight", c->mqtt.inflight, "Batches per device published and awaiting ack")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--ack-timeout", c->ack_timeout, "Resend a batch not acknowledged within this")
      ->capture_default_str();
  cmd->add_option("--backlog", c->mqtt.backlog,
                  "Batches per device waiting for the window; beyond, the oldest is dropped and "
                  "counted in the next batch (real-time modes only)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--ack-subscription", c->ack_subscription,
                  "per-device: each device's {prefix}/DEVICE/ack on its own connection; "
                  "wildcard: one {prefix}/+/ack on the first connection")
      ->capture_default_str()
      ->check(CLI::IsMember({"per-device", "wildcard"}));
  cmd->add_option("--ack-qos", c->mqtt.ack_qos, "QoS of the ack subscription")
      ->capture_default_str()
      ->check(CLI::Range(0, 1));
  cmd->add_option("--epoch", c->epoch,
                  "Stream epoch of every device (default: from seed and start)");
  cmd->add_option("--drain-timeout", c->drain, "At the end, wait this long for outstanding acks")
      ->capture_default_str();
  cmd->add_flag("--no-status", c->no_status,
                "Do not publish retained online/offline status per device");
  cmd->add_option("--transport", c->transport,
                  "Uplink protocol of the virtual agents: mqtt (shared connections) or zmq (a "
                  "CURVE DEALER socket per device, the agent's ZeroMQ uplink)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mqtt", "zmq"}));
  cmd->add_option("--zmq-endpoint", c->mqtt.zmq_endpoint,
                  "ZeroMQ: the aggregator's zmq.listen endpoint, tcp://host:port");
  cmd->add_option(
      "--zmq-server-key", c->zmq_server_key_file,
      "ZeroMQ: the aggregator's public key file (outpost-sim keys: DIR/aggregator.pub)");
  cmd->add_option("--key-seed", c->mqtt.key_seed,
                  "ZeroMQ: device i uses key pair i of this seed; the aggregator's allow-list "
                  "must list them (outpost-sim keys --key-seed, same --devices/--device-prefix)")
      ->capture_default_str();
  cmd->add_option("--local-topic", c->local.topic_template,
                  "local-mqtt: topic per reading; {device} and {sensor} are replaced")
      ->capture_default_str();
  cmd->add_option("--local-payload", c->local_payload,
                  "local-mqtt: json ({\"value\":V,\"ts\":US}: agent mqtt.field = \"value\", "
                  "mqtt.timestamp_field = \"ts\") or value (the bare number; the agent stamps "
                  "the receive time)")
      ->capture_default_str()
      ->check(CLI::IsMember({"json", "value"}));
  cmd->add_option("--local-qos", c->local.qos, "local-mqtt: QoS of the reading messages")
      ->capture_default_str()
      ->check(CLI::Range(0, 1));
  cmd->add_option("--local-client-id", c->local.client_id, "local-mqtt: MQTT client id")
      ->capture_default_str();
  cmd->add_option("--zmq-heartbeat-ms", c->mqtt.zmq_heartbeat_ms,
                  "ZeroMQ: ping interval per device; keep at or below the aggregator's "
                  "zmq.heartbeat_ms")
      ->capture_default_str()
      ->check(CLI::Range(50, 600000));
  return {cmd, [c] { return runFleet(*c); }};
}

}  // namespace outpost::sim

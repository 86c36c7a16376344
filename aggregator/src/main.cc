// outpost-aggregator: receives batches from agents, verifies and deduplicates them, publishes them
// to Kafka and acknowledges each batch once Kafka has it.

#include <algorithm>
#include <fstream>
#include <iostream>

#include "outpost/aggregator/aggregator.h"
#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/mqtt_ingest.h"
#include "outpost/aggregator/zmq_ingest.h"
#include "outpost/aggregator/ops.h"
#include "outpost/common/cli.h"
#include "outpost/common/detect/backtest.h"
#include "outpost/common/http_server.h"
#include "outpost/common/log.h"
#include "outpost/common/mqtt_security.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"

namespace {

// `outpost-aggregator detect`: the backtest tool. The very same detectors as the live path, over a
// CSV file, one output row per input row, no look-ahead.
int runDetect(const std::string& input, const std::string& output,
              const outpost::detect::DetectorConfig& cfg) {
  using namespace outpost;
  std::ifstream in_file;
  std::istream* in = &std::cin;
  if (input != "-") {
    in_file.open(input, std::ios::binary);
    if (!in_file) {
      std::cerr << "outpost-aggregator detect: cannot open " << input << "\n";
      return 1;
    }
    in = &in_file;
  }
  std::ofstream out_file;
  std::ostream* out = &std::cout;
  if (!output.empty() && output != "-") {
    out_file.open(output, std::ios::binary | std::ios::trunc);
    if (!out_file) {
      std::cerr << "outpost-aggregator detect: cannot write " << output << "\n";
      return 1;
    }
    out = &out_file;
  }
  auto stats = detect::backtestCsv(*in, *out, cfg);
  out->flush();
  if (!stats) {
    std::cerr << "outpost-aggregator detect: " << stats.error().message() << "\n";
    return 1;
  }
  if (!*out) {
    std::cerr << "outpost-aggregator detect: write error\n";
    return 1;
  }
  std::cerr << "detect: " << stats->rows << " rows, " << stats->bad_rows
            << " unparseable (scored 0), " << stats->alarms << " alarms\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace outpost;
  using namespace outpost::aggregator;
  CLI::App app{"outpost-aggregator " + std::string(kVersion) +
               ": receives agent batches over MQTT and/or ZeroMQ, verifies and deduplicates them, publishes to "
               "Kafka, acks after delivery"};
  cli::ProgramOptions po{.program = "outpost-aggregator",
                         .default_path = "/etc/outpost/aggregator.toml"};
  cli::addProgramOptions(app, po);
  std::string detect_input, detect_output;
  CLI::App* detect_cmd = app.add_subcommand(
      "detect",
      "Backtest the anomaly detectors on a CSV file with columns timestamp,value (extra columns "
      "ignored); writes timestamp,value,anomaly_score,alarm,kind, one row per input row");
  detect_cmd->add_option("-i,--input", detect_input, "Input CSV file, or - for stdin")->required();
  detect_cmd->add_option("-o,--output", detect_output, "Output CSV file (default: stdout)");
  std::string detect_sensor, detect_device;
  detect_cmd->add_option("--sensor", detect_sensor,
                         "Sensor name: selects the [[detect.classes]] entry of --config that the "
                         "live aggregator would use (default: the [detect] settings)");
  detect_cmd->add_option("--device", detect_device, "Device id, for classes matched by device");
  CLI11_PARSE(app, argc, argv);
  if (*detect_cmd) {
    try {
      // The [detect] table of --config / --set (built-in defaults without them).
      const AnomalyOptions ao = anomalyOptionsFrom(cli::loadConfig(po, aggregatorSchema()));
      return runDetect(detect_input, detect_output,
                       *detectorConfigFor(ao, detect_device, detect_sensor));
    } catch (const config::ConfigError& e) {
      std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
      return 2;
    }
  }

  const auto& schema = aggregatorSchema();
  if (po.print_reference) {
    std::cout << cli::configReference(po, schema);
    return 0;
  }
  signals::installSignalHandlers();
  try {
    config::Config cfg = cli::loadConfig(po, schema);
    AggregatorOptions options = aggregatorOptionsFrom(cfg);
    const bool with_mqtt = cfg.getBool("mqtt.enabled");
    const bool with_zmq = !cfg.getString("zmq.listen").empty();
    if (!with_mqtt && !with_zmq) {
      throw config::ConfigError("mqtt.enabled = false and zmq.listen is empty: no way for agents "
                                "to reach the aggregator; enable at least one");
    }
    MqttIngestOptions mo;
    if (with_mqtt) {
      mo.broker = cfg.getString("mqtt.broker");
      mo.client_id = cfg.getString("mqtt.client_id");
      mo.topic_prefix = cfg.getString("mqtt.topic_prefix");
      mo.clean_session = cfg.getBool("mqtt.clean_session");
      mo.keepalive_s = static_cast<int>(cfg.getInt("mqtt.keepalive_s"));
      mo.reconnect_min_ms = cfg.getInt("mqtt.reconnect_min_ms");
      mo.reconnect_max_ms = std::max(mo.reconnect_min_ms, cfg.getInt("mqtt.reconnect_max_ms"));
      auto sec = mqttsec::load(cfg, "mqtt.", mo.broker);
      if (!sec) throw config::ConfigError(sec.error().message());
      mo.security = std::move(*sec);
    }
    ZmqIngestOptions zo;
    zo.listen = cfg.getString("zmq.listen");
    zo.secret_key_file = cfg.getString("zmq.secret_key_file");
    zo.allow_list_file = cfg.getString("zmq.allow_list_file");
    zo.heartbeat_ms = static_cast<int>(cfg.getInt("zmq.heartbeat_ms"));
    if (po.check_only) {
      std::cout << "configuration OK\n";
      return 0;
    }
    initLogging(cfg.getString("log_level"), "outpost-aggregator");

    metrics::Registry registry;
    metrics::setCollectionEnabled(cfg.getBool("metrics.collect"));
    Aggregator aggregator(options, registry, SystemClock::instance());
    std::function<bool()> mqtt_up = [] { return false; };
    auto readiness = [&] {
      auto why = aggregator.notReadyReasons();
      if (!mqtt_up()) why.push_back("mqtt: not connected to the broker");
      return why;
    };
    std::unique_ptr<OpsCenter> ops;  // the ops layer (ops.h); off with metrics.collect=false
    if (metrics::collectionEnabled()) {
      ops = std::make_unique<OpsCenter>(
          opsOptionsFrom(cfg), registry, SystemClock::instance(),
          [&](const std::string& t, const std::string& k, const std::string& v) {
            return aggregator.publishEvent(t, k, v);
          },
          readiness);
      aggregator.setObserver(ops.get());
      // Alarms that open go to the dashboard and the webhook (ended ones only close them on Kafka).
      aggregator.anomalies().addObserver([&ops](const AnomalyRecord& r, std::string_view json) {
        if (r.ended) return;
        AnomalyEvent e;
        e.device = r.device;
        e.sensor = r.sensor;
        e.kind = detect::kindName(r.kind);
        e.value = r.value;
        e.score = r.score;
        e.ts_us = r.timestamp_us;
        e.recent = r.recent;
        e.json.assign(json);
        ops->onAnomaly(e);
      });
    }
    aggregator.start();
    std::unique_ptr<ZmqIngest> zmq_ingest;
    if (with_zmq) {
      zmq_ingest = std::make_unique<ZmqIngest>(zo, aggregator, registry, SystemClock::instance());
      if (auto st = zmq_ingest->start(); !st) {
        spdlog::error("ZeroMQ ingest: {}", st.error().message());
        aggregator.stop();
        return 1;
      }
    }
    std::unique_ptr<MqttIngest> ingest;
    if (with_mqtt) {
      ingest = std::make_unique<MqttIngest>(mo, aggregator, registry, SystemClock::instance());
      mqtt_up = [&ingest] { return ingest->connected(); };
    } else {
      mqtt_up = [] { return true; };  // no broker configured: nothing to be connected to
    }
    if (ops) {
      if (ingest) {
        ingest->setStatusHandler([&](const std::string& d, std::string_view p, bool retained) {
          ops->onStatus(d, p, retained);
        });
      }
      ops->start();
    }

    // /healthz: started and connected to the broker (if any); /readyz adds Kafka and backlog.
    HttpServer http(
        registry,
        [&](std::string& d) {
          bool ok = aggregator.healthy(d);
          if (ingest) {
            ok = ok && ingest->connected();
            d += ingest->connected() ? ", mqtt connected" : ", mqtt disconnected";
          }
          if (zmq_ingest) d += ", zmq listening";
          return ok;
        },
        readiness, ops ? cfg.getInt("dashboard.max_stream_clients") + 4 : 2);
    if (ops) ops->addRoutes(http);
    if (aggregator.latest()) aggregator.latest()->addRoutes(http, SystemClock::instance());
    if (auto st = cli::serveOps(http, cfg); !st) {
      spdlog::error("http: {}", st.error().toString());
      aggregator.stop();
      return 1;
    }
    if (!ingest || ingest->start([] { return signals::stopRequested(); })) {
      spdlog::info("aggregator running: {}{}{} -> kafka {} ({})", with_mqtt ? mo.broker : "",
                   with_mqtt && with_zmq ? " + " : "", with_zmq ? zo.listen : "",
                   options.kafka.bootstrap_servers, options.readings_topic);
      while (!signals::waitForStop(std::chrono::seconds(1))) {
        if (signals::takeReloadRequest()) {
          if (zmq_ingest) {
            (void)zmq_ingest->reloadAllowList();  // logs and counts its outcome
          } else {
            spdlog::warn("configuration reload (SIGHUP) is not implemented; restart to apply a "
                         "new configuration");
          }
        }
      }
    }
    // Drain first (acks still go out), then disconnect.
    if (ops) ops->stop();  // last status events go out before the producer stops
    aggregator.stop();
    if (zmq_ingest) zmq_ingest->stop();
    if (ingest) ingest->stop();
    http.stop();
    return 0;
  } catch (const config::ConfigError& e) {
    std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "outpost-aggregator: " << e.what() << "\n";
    return 1;
  }
}

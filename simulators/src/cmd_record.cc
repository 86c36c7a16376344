// outpost-sim record: subscribes to the uplink batch topics and writes every message, with its
// receive time, to a capture file (docs/capture-format.md). Stops on SIGTERM/SIGINT, after
// --duration or --max-batches; the file is flushed every 200 ms, so a killed recorder loses at
// most that much and leaves at worst a truncated last record (which readers tolerate).

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <iostream>
#include <mutex>
#include <thread>

#include "commands.h"
#include "outpost/common/json.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"
#include "outpost/sim/capture.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

struct RecordCli {
  BrokerOptions broker;
  std::string output;
  std::vector<std::string> topics;
  std::string client_id = "outpost-sim-recorder";
  std::string duration = "0";
  uint64_t max_batches = 0;
  int qos = 1;
  bool quiet = false;
};

int runRecord(RecordCli& c) {
  auto duration = parseDurationUs(c.duration);
  if (!duration) {
    std::cerr << "outpost-sim record: --duration: " << duration.error().message() << "\n";
    return kExitUsage;
  }
  if (c.topics.empty()) c.topics.push_back(c.broker.topic_prefix + "/+/batch");
  std::string meta;
  json::Writer mw(meta);
  mw.beginObject()
      .member("tool", "outpost-sim record")
      .member("version", kVersion)
      .member("broker", c.broker.broker)
      .member("started_us", wallUs())
      .key("topics")
      .beginArray();
  for (const auto& t : c.topics) mw.string(t);
  mw.endArray().endObject();
  auto writer = CaptureWriter::open(c.output, meta);
  if (!writer) {
    std::cerr << "outpost-sim record: " << writer.error().message() << "\n";
    return kExitFailure;
  }
  std::mutex mu;
  CaptureWriter& w = **writer;
  std::string write_error;     // GUARDED_BY(mu)
  uint64_t payload_bytes = 0;  // GUARDED_BY(mu)

  mqtt::async_client cli(c.broker.broker, c.client_id);
  cli.set_message_callback([&](mqtt::const_message_ptr m) {
    CaptureRecord r;
    r.recv_us = wallUs();
    r.topic = m->get_topic();
    const std::string& p = m->get_payload_ref().str();
    r.payload.assign(p.begin(), p.end());
    std::lock_guard lock(mu);
    if (!write_error.empty()) return;
    if (c.max_batches && w.records() >= c.max_batches) return;
    if (auto st = w.append(r); !st) {
      write_error = st.error().message();
      signals::requestStop();
      return;
    }
    payload_bytes += r.payload.size();
    if (c.max_batches && w.records() >= c.max_batches) signals::requestStop();
  });
  try {
    connectBroker(cli, c.broker);
    for (const auto& t : c.topics) cli.subscribe(t, c.qos)->wait_for(std::chrono::seconds(10));
  } catch (const mqtt::exception& e) {
    std::cerr << "outpost-sim record: cannot subscribe at " << c.broker.broker << ": " << e.what()
              << "\n";
    return kExitUnavailable;
  }
  // Ready marker for scripts: printed once the subscriptions are active.
  std::cerr << "outpost-sim record: recording " << c.topics[0]
            << (c.topics.size() > 1 ? " ..." : "") << " from " << c.broker.broker << " into "
            << c.output << "\n";

  Progress progress(c.quiet);
  const int64_t t0 = monoUs();
  bool lost = false;
  while (!signals::waitForStop(std::chrono::milliseconds(200))) {
    if (*duration > 0 && monoUs() - t0 >= *duration) break;
    if (!cli.is_connected()) {
      lost = true;
      break;
    }
    std::lock_guard lock(mu);
    if (auto st = w.flush(); !st) {
      write_error = st.error().message();
      break;
    }
    const double el = double(monoUs() - t0) / 1e6;
    progress.update(-1, "recorded " + withCommas(w.records()) + " batches, " +
                            withCommas(payload_bytes) + " payload bytes in " +
                            std::to_string(static_cast<int>(el)) + " s");
  }
  try {
    cli.disconnect(std::chrono::milliseconds(500))->wait_for(std::chrono::seconds(2));
  } catch (const mqtt::exception&) {
  }
  progress.finish();
  std::lock_guard lock(mu);
  if (auto st = w.close(); !st && write_error.empty()) write_error = st.error().message();
  const double el = std::max(1e-9, double(monoUs() - t0) / 1e6);
  std::cerr << "outpost-sim record: " << w.records() << " batches (" << withCommas(payload_bytes)
            << " payload bytes) in " << el << " s into " << c.output << "\n";
  if (lost) std::cerr << "outpost-sim record: connection to the broker lost; stopped\n";
  if (!write_error.empty()) {
    std::cerr << "outpost-sim record: " << write_error << "\n";
    return kExitFailure;
  }
  return lost ? kExitUnavailable : kExitOk;
}

}  // namespace

Command addRecordCommand(CLI::App& app) {
  auto c = std::make_shared<RecordCli>();
  CLI::App* cmd = app.add_subcommand(
      "record", "Capture uplink traffic (the batch topics) into a capture file with receive times");
  cmd->add_option("-w,--output", c->output, "Capture file to write (truncated)")->required();
  addBrokerOptions(*cmd, c->broker);
  cmd->add_option("-t,--topic", c->topics, "Topic filter (repeatable); default PREFIX/+/batch");
  cmd->add_option("--client-id", c->client_id, "MQTT client id")->capture_default_str();
  cmd->add_option("--qos", c->qos, "Subscription QoS")
      ->capture_default_str()
      ->check(CLI::Range(0, 1));
  cmd->add_option("-d,--duration", c->duration,
                  "Stop after this long (90s, 15m, 2h); 0 = until SIGTERM")
      ->capture_default_str();
  cmd->add_option("--max-batches", c->max_batches, "Stop after this many messages; 0 = no limit")
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", c->quiet, "No progress output");
  return {cmd, [c] { return runRecord(*c); }};
}

}  // namespace outpost::sim

// outpost-sim ack-responder: a stand-in for the aggregator's ack path in load tests of the
// simulator and the broker alone. Subscribes to {prefix}/+/batch, verifies each batch
// (verifyBatch + checkBatchSemantics against the topic's device) and publishes an Accepted Ack to
// {prefix}/{device}/ack. It does NOT deduplicate, store or forward anything: it is not an
// aggregator, and figures measured with it say so (docs/benchmarks.md).

#include <poll.h>

#include <iostream>
#include <thread>

#include "commands.h"
#include "outpost/common/codec.h"
#include "outpost/common/signals.h"
#include "outpost/sim/lite_mqtt.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

// Backpressure: while this many bytes of acks are unsent (the broker does not read them), the
// responder stops reading batches; the broker then queues them for it. (Not a cap on acks
// awaiting PUBACK: PUBACKs arrive on the read side, so that would deadlock.)
constexpr size_t kMaxUnsent = 4u << 20;

struct AckCli {
  int ack_qos = 1;
  BrokerOptions broker;
  std::string client_id = "outpost-sim-ack-responder";
  std::string duration = "0";
  int connections = 4;
  bool quiet = false;
};

// One thread, one LiteMqtt connection (lite_mqtt.h): read a batch, verify it, queue its ack.
int runAckResponder(AckCli& c) {
  auto duration = parseDurationUs(c.duration);
  if (!duration) {
    std::cerr << "outpost-sim ack-responder: --duration: " << duration.error().message() << "\n";
    return kExitUsage;
  }
  uint64_t received = 0, acked = 0, invalid = 0, failures = 0;
  // Several connections share the batches through an MQTT shared subscription: the broker's
  // per-client window (max_inflight_messages) then applies to each, not to one carrying all.
  std::vector<std::unique_ptr<LiteMqtt>> clis;
  for (int i = 0; i < c.connections; ++i) clis.push_back(std::make_unique<LiteMqtt>());
  const std::string prefix = c.broker.topic_prefix + "/";
  const codec::VerifyLimits limits;
  std::vector<uint8_t> buf;  // aligned copy for the FlatBuffers verifier
  std::string ack_topic;
  auto onBatch = [&](LiteMqtt& cli, std::string_view topic, std::span<const uint8_t> payload) {
    ++received;
    // {prefix}/{device}/batch
    if (topic.size() <= prefix.size() + 6 || topic.compare(0, prefix.size(), prefix) != 0 ||
        topic.substr(topic.size() - 6) != "/batch") {
      ++invalid;
      return;
    }
    const std::string_view device = topic.substr(prefix.size(), topic.size() - prefix.size() - 6);
    buf.assign(payload.begin(), payload.end());
    auto b = codec::verifyBatch(buf, limits);
    if (!b || !codec::checkBatchSemantics(**b, limits, wallUs(), std::string(device))) {
      ++invalid;
      return;
    }
    const auto ack = codec::encodeAck(
        {std::string(device), (*b)->epoch(), (*b)->seq(), wire::AckStatus::Accepted, ""});
    ack_topic.assign(prefix).append(device).append("/ack");
    if (cli.publish(ack_topic, ack, c.ack_qos, false)) {
      ++acked;
    } else {
      ++failures;
    }
  };
  const std::string filter =
      c.connections > 1 ? "$share/" + c.client_id + "/" + prefix + "+/batch" : prefix + "+/batch";
  Status st;
  for (int i = 0; i < c.connections && st; ++i) {
    LiteMqtt& cli = *clis[static_cast<size_t>(i)];
    cli.setOnMessage(
        [&onBatch, &cli](std::string_view t, std::span<const uint8_t> p) { onBatch(cli, t, p); });
    LiteMqttOptions lo;
    lo.broker = c.broker.broker;
    lo.client_id = c.connections > 1 ? c.client_id + "-" + std::to_string(i) : c.client_id;
    st = cli.connect(lo);
    if (st) st = cli.subscribe(filter, 1, 10'000'000);
  }
  if (!st) {
    std::cerr << "outpost-sim ack-responder: cannot subscribe at " << c.broker.broker << ": "
              << st.error().message() << "\n";
    return kExitUnavailable;
  }
  std::cerr << "outpost-sim ack-responder: acking " << filter << " on " << c.broker.broker << " ("
            << c.connections << " connection(s))\n";
  Progress progress(c.quiet);
  const int64_t t0 = monoUs();
  int64_t next_progress = t0;
  int64_t last_io = 0;
  std::vector<pollfd> pfds;
  int rc = kExitOk;
  while (!signals::stopRequested()) {
    const int64_t now = monoUs();
    if (*duration > 0 && now - t0 >= *duration) break;
    // At most one wake-up per 500 us: batches arrive one by one at 10,000/s, and a recv + send
    // per batch costs more than the ack itself; gathered, one pair of calls serves many.
    const int64_t since = monoUs() - last_io;
    if (since < 500) std::this_thread::sleep_for(std::chrono::microseconds(500 - since));
    pfds.clear();
    for (auto& cli : clis) {
      const bool room = cli->unsent() < kMaxUnsent;
      pfds.push_back({cli->fd(),
                      static_cast<short>((room ? POLLIN : 0) | (cli->unsent() > 0 ? POLLOUT : 0)),
                      0});
    }
    ::poll(pfds.data(), pfds.size(), 100);
    last_io = monoUs();
    bool lost = false;
    for (size_t i = 0; i < clis.size(); ++i) {
      LiteMqtt& cli = *clis[i];
      if (!cli.io(last_io, (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0)) {
        std::cerr << "outpost-sim ack-responder: connection lost: " << cli.lastError() << "\n";
        lost = true;
      }
    }
    if (lost) {
      rc = kExitUnavailable;
      break;
    }
    if (now >= next_progress) {
      next_progress = now + 200'000;
      const double el = std::max(1e-9, double(now - t0) / 1e6);
      progress.update(-1, withCommas(acked) + " acks (" +
                              withCommas(static_cast<uint64_t>(double(acked) / el)) + "/s), " +
                              std::to_string(invalid) + " invalid");
    }
  }
  progress.finish();
  for (auto& cli : clis) cli->disconnect(1'000'000);
  std::cerr << "outpost-sim ack-responder: " << received << " batches received, " << acked
            << " acked, " << invalid << " invalid (not acked), " << failures
            << " ack publishes failed\n";
  return rc;
}

}  // namespace

Command addAckResponderCommand(CLI::App& app) {
  auto c = std::make_shared<AckCli>();
  CLI::App* cmd = app.add_subcommand(
      "ack-responder",
      "Load-test helper: ack every valid batch (no dedup, no Kafka; NOT an aggregator)");
  addBrokerOptions(*cmd, c->broker);
  cmd->add_option("--client-id", c->client_id, "MQTT client id")->capture_default_str();
  cmd->add_option("--ack-qos", c->ack_qos, "QoS of the acks it publishes (the aggregator uses 1)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1));
  cmd->add_option("--connections", c->connections,
                  "MQTT connections sharing the batches (shared subscription $share/CLIENT-ID/...)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option("-d,--duration", c->duration, "Stop after this long; 0 = until SIGTERM")
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", c->quiet, "No progress output");
  return {cmd, [c] { return runAckResponder(*c); }};
}

}  // namespace outpost::sim

// outpost-sim ack-responder: a stand-in for the aggregator's ack path in load tests of the
// simulator and the broker alone. Subscribes to {prefix}/+/batch, verifies each batch
// (verifyBatch + checkBatchSemantics against the topic's device) and publishes an Accepted Ack to
// {prefix}/{device}/ack. It does NOT deduplicate, store or forward anything: it is not an
// aggregator, and figures measured with it say so (docs/benchmarks.md).

#include <mqtt/async_client.h>

#include <atomic>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <thread>

#include "commands.h"
#include "outpost/common/codec.h"
#include "outpost/common/signals.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

class PendingCounter final : public mqtt::iaction_listener {
 public:
  std::atomic<int> pending{0};

 private:
  void on_failure(const mqtt::token&) override { pending.fetch_sub(1); }
  void on_success(const mqtt::token&) override { pending.fetch_sub(1); }
};

struct AckCli {
  int ack_qos = 1;
  BrokerOptions broker;
  std::string client_id = "outpost-sim-ack-responder";
  std::string duration = "0";
  bool quiet = false;
};

int runAckResponder(AckCli& c) {
  auto duration = parseDurationUs(c.duration);
  if (!duration) {
    std::cerr << "outpost-sim ack-responder: --duration: " << duration.error().message() << "\n";
    return kExitUsage;
  }
  std::atomic<uint64_t> received{0}, acked{0}, invalid{0}, failures{0};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<codec::AckContent> todo;  // GUARDED_BY(mu)
  bool done = false;                    // GUARDED_BY(mu)
  PendingCounter counter;
  mqtt::create_options create(MQTTVERSION_DEFAULT, 200000);
  create.set_send_while_disconnected(false);
  mqtt::async_client cli(c.broker.broker, c.client_id, create);
  const std::string prefix = c.broker.topic_prefix + "/";
  const codec::VerifyLimits limits;
  cli.set_message_callback([&](mqtt::const_message_ptr m) {
    received.fetch_add(1, std::memory_order_relaxed);
    const std::string& topic = m->get_topic();
    // {prefix}/{device}/batch
    if (topic.size() <= prefix.size() + 6 || topic.compare(0, prefix.size(), prefix) != 0) {
      invalid.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const std::string device = topic.substr(prefix.size(), topic.size() - prefix.size() - 6);
    const std::string& p = m->get_payload_ref().str();
    std::vector<uint8_t> buf(p.begin(), p.end());
    auto b = codec::verifyBatch(buf, limits);
    if (!b || !codec::checkBatchSemantics(**b, limits, wallUs(), device)) {
      invalid.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    {
      std::lock_guard lock(mu);
      todo.push_back({device, (*b)->epoch(), (*b)->seq(), wire::AckStatus::Accepted, ""});
    }
    cv.notify_one();
  });
  // Acks are published from this thread, never from Paho's receive thread: that thread must stay
  // free to process PUBACKs, and Paho's command queue is kept short (see mqtt_fleet.cc).
  std::thread sender([&] {
    std::vector<codec::AckContent> work;
    for (;;) {
      {
        std::unique_lock lock(mu);
        cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return !todo.empty() || done; });
        if (done && todo.empty()) return;
        work.swap(todo);
      }
      for (const auto& a : work) {
        while (counter.pending.load() >= 256 && cli.is_connected()) {
          std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        auto ack = codec::encodeAck(a);
        try {
          counter.pending.fetch_add(1);
          cli.publish(prefix + a.device_id + "/ack", ack.data(), ack.size(), c.ack_qos, false,
                      nullptr, counter);
          acked.fetch_add(1, std::memory_order_relaxed);
        } catch (const mqtt::exception&) {
          counter.pending.fetch_sub(1);
          failures.fetch_add(1, std::memory_order_relaxed);
        }
      }
      work.clear();
    }
  });
  auto stopSender = [&] {
    {
      std::lock_guard lock(mu);
      done = true;
    }
    cv.notify_one();
    if (sender.joinable()) sender.join();
  };
  try {
    connectBroker(cli, c.broker);
    cli.subscribe(prefix + "+/batch", 1)->wait_for(std::chrono::seconds(10));
  } catch (const mqtt::exception& e) {
    std::cerr << "outpost-sim ack-responder: cannot subscribe at " << c.broker.broker << ": "
              << e.what() << "\n";
    stopSender();
    return kExitUnavailable;
  }
  std::cerr << "outpost-sim ack-responder: acking " << prefix << "+/batch on " << c.broker.broker
            << "\n";
  Progress progress(c.quiet);
  const int64_t t0 = monoUs();
  while (!signals::waitForStop(std::chrono::milliseconds(200))) {
    if (*duration > 0 && monoUs() - t0 >= *duration) break;
    const double el = std::max(1e-9, double(monoUs() - t0) / 1e6);
    progress.update(-1, withCommas(acked.load()) + " acks (" +
                            withCommas(static_cast<uint64_t>(double(acked.load()) / el)) + "/s), " +
                            std::to_string(invalid.load()) + " invalid");
  }
  progress.finish();
  stopSender();
  try {
    cli.disconnect(std::chrono::milliseconds(500))->wait_for(std::chrono::seconds(2));
  } catch (const mqtt::exception&) {
  }
  std::cerr << "outpost-sim ack-responder: " << received.load() << " batches received, "
            << acked.load() << " acked, " << invalid.load() << " invalid (not acked), "
            << failures.load() << " ack publishes failed\n";
  return kExitOk;
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
  cmd->add_option("-d,--duration", c->duration, "Stop after this long; 0 = until SIGTERM")
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", c->quiet, "No progress output");
  return {cmd, [c] { return runAckResponder(*c); }};
}

}  // namespace outpost::sim

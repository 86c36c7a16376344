// The MQTT uplink against a real Mosquitto (support/mosquitto.h): QoS 1 publishes of stored
// batches, deletion only on the aggregator's ack, bad acks counted, retained status, reconnect
// with backoff after a broker restart and resend of what was not acknowledged.
#include "outpost/agent/mqtt_uplink.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "outpost/agent/mqtt_client.h"
#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/metrics.h"
#include "support/mosquitto.h"
#include "support/temp_dir.h"
#include "support/wait_for.h"

using namespace outpost;
using namespace outpost::agent;
using namespace std::chrono_literals;

using outpost::testing::waitFor;

namespace {

// What the aggregator would see: every message on the device's topics, and an ack sender.
class Peer {
 public:
  Peer(const std::string& uri, const std::string& id) {
    auto c = makePahoClient({uri, id, 100},
                            {[this](std::string_view t, std::string_view p) {
                               std::lock_guard lock(mu_);
                               messages_.push_back({std::string(t), std::string(p)});
                             },
                             {}});
    REQUIRE(c.has_value());
    client_ = std::move(*c);
    REQUIRE(client_->connect({}).has_value());
    REQUIRE(client_->subscribe("outpost/v1/dev-1/#", 1, 5s).has_value());
  }
  ~Peer() { client_->disconnect(0ms, 2s); }

  // Batch seqs published so far (decoded and verified), in arrival order.
  std::vector<uint64_t> batchSeqs() {
    std::lock_guard lock(mu_);
    std::vector<uint64_t> seqs;
    for (const auto& [topic, payload] : messages_) {
      if (topic != "outpost/v1/dev-1/batch") continue;
      std::vector<uint8_t> buf(payload.begin(), payload.end());
      auto b = codec::verifyBatch(std::span<const uint8_t>(buf), codec::VerifyLimits{});
      REQUIRE(b.has_value());
      seqs.push_back((*b)->seq());
    }
    return seqs;
  }
  std::string lastStatus() {
    std::lock_guard lock(mu_);
    for (auto it = messages_.rbegin(); it != messages_.rend(); ++it) {
      if (it->first == "outpost/v1/dev-1/status") return it->second;
    }
    return "";
  }
  void ack(uint64_t epoch, uint64_t seq, const std::string& device = "dev-1") {
    const auto bytes = codec::encodeAck({device, epoch, seq, wire::AckStatus::Accepted, ""});
    publish(bytes.data(), bytes.size());
  }
  void publish(const void* data, size_t size) {
    REQUIRE(client_->publish("outpost/v1/dev-1/ack", data, size, 1, false, 5s).has_value());
  }

 private:
  std::unique_ptr<MqttClient> client_;
  std::mutex mu_;
  std::vector<std::pair<std::string, std::string>> messages_;
};

struct Rig {
  testing::TempDir dir{"outpost-mqtt-uplink-test"};
  metrics::Registry registry;
  std::unique_ptr<Outbox> box;
  std::unique_ptr<MqttUplink> uplink;

  Rig(const std::string& uri, size_t batches, int64_t ack_timeout_ms = 10000) {
    OutboxOptions o;
    o.path = dir.file("outbox.db");
    box = std::move(*Outbox::open(o, SystemClock::instance()));
    for (size_t i = 0; i < batches; ++i) {
      codec::BatchContent b;
      b.device_id = "dev-1";
      b.created_us = SystemClock::instance().nowUs();
      b.sensors = {{1, "t", "C"}};
      b.readings.emplace_back(b.created_us, static_cast<double>(i), 1, wire::Quality::Good);
      REQUIRE(box->append(b).has_value());
    }
    MqttUplinkOptions mo;
    mo.broker = uri;
    mo.device_id = "dev-1";
    mo.client_id = testing::clientId("uplink");
    mo.ack_timeout_ms = ack_timeout_ms;
    mo.reconnect_min_ms = 50;
    mo.reconnect_max_ms = 400;
    uplink = std::make_unique<MqttUplink>(mo, *box, registry, SystemClock::instance());
  }
  double metric(const std::string& line_prefix) {
    const std::string text = registry.render();
    const auto at = text.find("\n" + line_prefix + " ");
    if (at == std::string::npos) return -1;
    return std::stod(text.substr(at + line_prefix.size() + 2));
  }
};

}  // namespace

TEST_CASE("MqttUplink publishes stored batches and deletes them only on the ack",
          "[agent][uplink][mqtt]") {
  testing::MosquittoBroker broker;
  Peer peer(broker.uri(), testing::clientId("peer"));
  Rig rig(broker.uri(), 3);
  rig.uplink->start();
  REQUIRE(waitFor([&] { return peer.batchSeqs().size() >= 3; }));
  CHECK(peer.batchSeqs() == std::vector<uint64_t>{1, 2, 3});
  CHECK(rig.uplink->connected());
  REQUIRE(waitFor([&] { return rig.uplink->inFlight() == 3; }));
  CHECK(peer.lastStatus().find("\"state\":\"online\"") != std::string::npos);
  CHECK(rig.metric("outpost_agent_mqtt_connected") == 1);
  CHECK(rig.metric("outpost_agent_mqtt_connects_total") == 1);
  std::this_thread::sleep_for(200ms);
  CHECK(rig.box->stats().rows == 3);  // published is not delivered: nothing deleted yet

  // One broker and one uplink for the whole story (each set-up takes ~2 s here: few of them).
  // Malformed acks, acks for another device or epoch: counted, nothing deleted.
  const std::string junk = "not a flatbuffer";
  peer.publish(junk.data(), junk.size());
  peer.ack(rig.box->epoch(), 1, "dev-2");
  peer.ack(rig.box->epoch() + 1, 2);
  REQUIRE(waitFor([&] { return rig.metric("outpost_agent_bad_acks_total") >= 3; }));
  std::this_thread::sleep_for(100ms);
  CHECK(rig.box->stats().rows == 3);

  // Acks delete exactly the acknowledged batches.
  peer.ack(rig.box->epoch(), 1);
  peer.ack(rig.box->epoch(), 3);
  REQUIRE(waitFor([&] { return rig.box->stats().rows == 1 && rig.uplink->inFlight() == 1; }));
  peer.ack(rig.box->epoch(), 2);
  REQUIRE(waitFor([&] { return rig.box->stats().rows == 0 && rig.uplink->inFlight() == 0; }));

  // A clean stop leaves a retained offline status.
  rig.uplink->stop();
  CHECK_FALSE(rig.uplink->connected());
  Peer late(broker.uri(), testing::clientId("late"));  // gets the retained message
  REQUIRE(waitFor([&] { return !late.lastStatus().empty(); }));
  CHECK(late.lastStatus().find("\"state\":\"offline\",\"reason\":\"shutdown\"") !=
        std::string::npos);
}

TEST_CASE("MqttUplink reconnects after a broker restart and sends unacknowledged batches again",
          "[agent][uplink][mqtt]") {
  testing::MosquittoBroker broker;
  Rig rig(broker.uri(), 2, /*ack_timeout_ms=*/300);
  rig.uplink->start();
  REQUIRE(waitFor([&] { return rig.uplink->connected() && rig.uplink->inFlight() == 2; }));
  broker.stop();
  REQUIRE(waitFor([&] { return !rig.uplink->connected(); }));
  // Refused while the broker is down: failures counted, with backoff (min 50 ms, max 400 ms).
  REQUIRE(waitFor([&] { return rig.metric("outpost_agent_mqtt_connect_failures_total") >= 2; }));
  REQUIRE(broker.restart());
  REQUIRE(waitFor([&] { return rig.uplink->connected(); }, 15s));
  CHECK(rig.metric("outpost_agent_mqtt_connects_total") == 2);
  // The broker's sessions died with it; a fresh peer sees the batches again (resent after the
  // ack timeout), acks them, and the outbox empties.
  Peer peer(broker.uri(), testing::clientId("peer"));
  REQUIRE(waitFor([&] {
    const auto s = peer.batchSeqs();
    return std::find(s.begin(), s.end(), 1) != s.end() && std::find(s.begin(), s.end(), 2) != s.end();
  }));
  peer.ack(rig.box->epoch(), 1);
  peer.ack(rig.box->epoch(), 2);
  REQUIRE(waitFor([&] { return rig.box->stats().rows == 0; }));
}

#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_sender.h"
#include "outpost/agent/uplink.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::agent {

struct MqttUplinkOptions {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string client_id;  // default: outpost-agent-<device>
  std::string device_id;
  std::string topic_prefix = "outpost/v1";
  mqttsec::MqttSecurity security;      // TLS, user name, password (never logged)
  size_t max_inflight = 16;            // batches sent and not yet acknowledged
  int64_t ack_timeout_ms = 10000;      // resend a batch not acknowledged within this time
  int keepalive_s = 30;
  int64_t reconnect_min_ms = 500;  // backoff doubles from min to max while the broker is down
  int64_t reconnect_max_ms = 30000;
  DrainSettings drain;  // backlog order and rate after an outage
};

// The MQTT uplink (Paho C through MqttClient, mqtt_client.h: TLS brokers load the TLS module). QoS 1 publishes to {prefix}/{device}/batch; acks arrive on
// {prefix}/{device}/ack; a retained {prefix}/{device}/status says online/offline (last will).
// A batch leaves the outbox only on the aggregator's ack; after a reconnect every un-acknowledged
// batch is sent again (OutboxSender: live batches first, the backlog in the drain order and rate).
// Threads: one sender thread (owns connection management and
// the in-flight table) plus Paho's own threads, which only enqueue acks and connection events.
class MqttUplink final : public Uplink {
 public:
  MqttUplink(MqttUplinkOptions options, Outbox& outbox, metrics::Registry& registry,
             const Clock& clock);
  ~MqttUplink() override;

  void start() override;
  void notify() override;
  void stop() override;
  void setDrain(const DrainSettings& drain) override;
  bool connected() const override { return connected_.load(); }
  size_t inFlight() const override { return inflight_count_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> connected_{false};
  std::atomic<size_t> inflight_count_{0};
};

}  // namespace outpost::agent

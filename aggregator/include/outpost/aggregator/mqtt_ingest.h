#pragma once

#include <atomic>
#include <functional>
#include <string_view>
#include <memory>
#include <string>

#include "outpost/aggregator/ack_sink.h"
#include "outpost/aggregator/intake.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::aggregator {

struct MqttIngestOptions {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string client_id = "outpost-aggregator";
  std::string topic_prefix = "outpost/v1";
  // Non-empty: batches are subscribed as $share/<shared_group>/<prefix>/+/batch, so that the
  // broker hands each message to one of the clients of that group (role ingest). The status
  // topic stays a plain subscription.
  std::string shared_group;
  bool clean_session = false;  // false: the broker queues batches while we restart
  mqttsec::MqttSecurity security;  // TLS, user name, password (never logged)
  int keepalive_s = 30;
  int64_t reconnect_min_ms = 1000;  // Paho's automatic reconnect: first delay, doubling up to
  int64_t reconnect_max_ms = 30000;  // this
};

// Subscribes to {prefix}/+/batch (QoS 1; a shared subscription with shared_group) and hands every
// message to the aggregator; publishes acks to {prefix}/{device}/ack (QoS 1). Paho's callback
// thread calls submit(), which blocks when the workers are behind: back-pressure reaches the broker
// instead of growing a queue.
// Thread-safety: sendAck from any thread; start/stop from one thread.
class MqttIngest final : public AckSink {
 public:
  MqttIngest(MqttIngestOptions options, Intake& intake, metrics::Registry& registry,
             const Clock& clock);
  ~MqttIngest() override;

  // Connects (retrying every second until connected or `stop_requested` returns true) and
  // subscribes. Returns false if it gave up because a stop was requested.
  bool start(const std::function<bool()>& stop_requested);
  void stop();
  bool connected() const;

  bool sendAck(const std::string& device, std::vector<uint8_t> ack) override;

  // Agents' retained status messages ({prefix}/{device}/status): when a handler is set (before
  // start()), that topic is subscribed too and each message is handed to it on Paho's callback
  // thread (`retained`: replayed by the broker at subscribe time). Payloads are untrusted.
  using StatusHandler =
      std::function<void(const std::string& device, std::string_view payload, bool retained)>;
  void setStatusHandler(StatusHandler handler);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::aggregator

#pragma once

// Inside the ZeroMQ module (outpost-agent-zmq.so) only: the executable reaches this through
// zmq_module.h / zmq_module_loader.h and never links libzmq.

#include <atomic>
#include <memory>
#include <string>

#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_sender.h"
#include "outpost/agent/uplink.h"
#include "outpost/agent/zmq_module.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

struct ZmqUplinkOptions {
  std::string endpoint = "tcp://127.0.0.1:7450";
  std::string device_id;
  std::string server_public_key;  // Z85; the aggregator's CURVE public key
  std::string public_key;         // Z85; this device's key pair
  std::string secret_key;         // Z85; never logged
  size_t max_inflight = 16;       // sizes the socket's high-water mark (the window is the sender's)
  int64_t heartbeat_ms = 1000;    // ping interval
  int liveness = 3;               // intervals without a word from the aggregator = dead
  int64_t reconnect_min_ms = 500;  // backoff doubles from min to max while the aggregator is away
  int64_t reconnect_max_ms = 30000;
};

// The executable's counters (zmq_module.h: OutpostZmqHost).
struct ZmqUplinkMetrics {
  metrics::Counter& connects;
  metrics::Counter& heartbeat_timeouts;
  metrics::Counter& disconnects;
  metrics::Counter& handshake_failures;
  metrics::Counter& bad_acks;
};

// The ZeroMQ uplink: a DEALER socket with CURVE (the aggregator's ROUTER authenticates the key;
// zmqproto in common/zmq_protocol.h has the framing). Same contract and the same sending logic
// as the MQTT uplink (OutboxSender): a batch leaves the outbox only on the aggregator's ack, sent
// after Kafka delivery; at most max_inflight batches un-acknowledged; a batch not acked within
// ack_timeout_ms is sent again; live batches first, the backlog in the drain order and rate.
// Heartbeats, Paranoid Pirate style: a ping every heartbeat_ms; when nothing at all has come back
// for `liveness` intervals the socket is closed, a new one is made after a backoff
// (reconnect_min_ms doubling to reconnect_max_ms, with jitter), and every un-acknowledged batch is
// sent again as backlog (the aggregator's dedup drops what it already has).
// Threads: one sender thread owns the socket and drives `sender`; notify/stop from any thread
// (they write an eventfd the sender polls). The sender's drain settings are set by its owner.
class ZmqUplink final : public Uplink {
 public:
  // `sender`, `metrics` and `clock` must outlive the uplink.
  ZmqUplink(ZmqUplinkOptions options, UplinkSender& sender, const ZmqUplinkMetrics& metrics,
            const Clock& clock);
  ~ZmqUplink() override;

  void start() override;
  void notify() override;
  void stop() override;
  bool connected() const override { return connected_.load(); }
  size_t inFlight() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> connected_{false};
};

// Options from the uplink.zmq.* settings; reads the key files (the key pair file must be mode 0600
// or stricter). The error names the setting.
Result<ZmqUplinkOptions> zmqUplinkOptionsFrom(const OutpostZmqSettings& settings);

// Writes <dir>/<name>.key (key pair, 0600) and <dir>/<name>.pub (public key) and returns the
// public key. Refuses to overwrite existing files.
Result<std::string> writeCurveKeyFiles(const std::string& dir, const std::string& name);

}  // namespace outpost::agent

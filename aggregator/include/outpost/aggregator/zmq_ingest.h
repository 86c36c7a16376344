#pragma once

#include <memory>
#include <string>

#include "outpost/aggregator/ack_sink.h"
#include "outpost/aggregator/intake.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/secrets.h"
#include "outpost/common/status.h"

namespace outpost::aggregator {

struct ZmqIngestOptions {
  std::string listen;           // e.g. tcp://0.0.0.0:7450 (port 0 / "*" picks one, see port())
  std::string secret_key_file;  // the aggregator's CURVE key pair file (mode 0600)
  std::string allow_list_file;  // agent public key -> device id (secrets::AllowList)
  int heartbeat_ms = 1000;      // a peer silent for 3 intervals is forgotten
  size_t max_queued_acks = 65536;
};

// The ZeroMQ ingest: a ROUTER socket that only speaks CURVE, with a ZAP handler that admits an
// agent only if its public key is on the allow-list and sets the connection's User-Id to that
// key's device id. Each batch is handed to the aggregator with that device id as its identity
// (codec::checkBatchSemantics then rejects a batch that claims another device). Acks go back on
// the ROUTER to the connection the device last spoke on. There is no way to run it without the
// ZAP handler: CURVE without ZAP encrypts but admits any key.
//
// Threads: one socket thread owns the ROUTER (it alone touches it) and calls Intake::submit;
// one ZAP thread answers authentication requests. sendAck (any thread, e.g. the Kafka poll thread)
// queues the ack and wakes the socket thread through an eventfd. reloadAllowList may be called
// from any thread.
class ZmqIngest final : public AckSink {
 public:
  ZmqIngest(ZmqIngestOptions options, Intake& intake, metrics::Registry& registry,
            const Clock& clock);
  ~ZmqIngest() override;

  // Loads the key pair and the allow-list (refusing loose file permissions), starts the ZAP
  // handler, binds and starts the socket thread.
  Status start();
  void stop();
  // The TCP port bound (after start).
  int port() const;

  // Re-reads the allow-list file (SIGHUP). On error the previous list stays in force. Connections
  // whose key was removed are refused from their next message on.
  Status reloadAllowList();

  bool sendAck(const std::string& device, std::vector<uint8_t> ack) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace outpost::aggregator

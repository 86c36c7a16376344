#pragma once

// Virtual agents speaking the MQTT uplink protocol (docs/simulators.md, "Virtual agents"):
// per device a QoS 1 publish of a FlatBuffers Batch to {prefix}/{device}/batch, a small in-flight
// window matched to Acks on {prefix}/{device}/ack by (device, epoch, seq), resend after the ack
// timeout and after a reconnect, a bounded backlog (oldest dropped and reported in the next
// batch's `dropped`, as the agent's full outbox does), retained status online/offline.
//
// Many devices share a few MQTT connections (--connections): a Paho client per virtual device is
// far too heavy for 10,000 devices, and the broker does not bind topics to clients (no ACLs in
// these setups). Acks for every device arrive through one subscription to {prefix}/+/ack.
//
// The connections are LiteMqtt clients (lite_mqtt.h), driven by pump() and wait() on the caller's
// thread: no I/O threads, no locks.
//
// Thread-safety: every method on one thread (the fleet's).

#include <memory>
#include <string>
#include <vector>

#include "outpost/common/codec.h"
#include "outpost/common/status.h"

namespace outpost::sim {

enum class Transport { kMqtt, kZmq };

struct MqttOptions {
  Transport transport = Transport::kMqtt;
  // ZeroMQ transport (one CURVE DEALER socket per device, the agent's ZeroMQ uplink protocol):
  std::string zmq_endpoint;    // the aggregator's zmq.listen, tcp://host:port
  std::string zmq_server_key;  // its public key, Z85
  uint64_t key_seed = 1;       // device i's key pair is simCurveKeyPair(key_seed, i) (links.h)
  int zmq_heartbeat_ms = 1000;
  std::string broker = "tcp://127.0.0.1:1883";
  std::string topic_prefix = "outpost/v1";
  std::string client_prefix = "outpost-sim";
  std::string username;
  std::string password;  // never logged
  int connections = 0;   // 0 = one per 1000 devices, at most 8
  int inflight = 4;      // batches per device published and not acknowledged
  int64_t ack_timeout_us = 10'000'000;
  size_t backlog = 64;  // batches per device waiting; beyond, the oldest is dropped
  int ack_qos = 1;
  bool ack_per_device = true;  // false: one {prefix}/+/ack subscription on connection 0
  bool status = true;          // retained online/offline per device
};

struct MqttStats {
  uint64_t batches_sent = 0, batches_resent = 0, batches_acked = 0, batches_rejected = 0;
  uint64_t readings_sent = 0, readings_acked = 0;
  uint64_t batches_dropped = 0, readings_dropped = 0;  // backlog overflow
  uint64_t publish_failures = 0, reconnects = 0, foreign_acks = 0, bad_acks = 0;
  uint64_t in_flight = 0, queued = 0;
};

class MqttFleet {
 public:
  MqttFleet(MqttOptions options, std::vector<std::string> devices, std::vector<uint64_t> epochs,
            std::vector<codec::SensorInfo> sensors);
  ~MqttFleet();

  // Connects every client and subscribes to acks. kUnavailable if the broker cannot be reached.
  Status connect();
  // Queues a batch of `device`, to be released (published when its window allows) at
  // `release_mono_us`. Empty reading lists are skipped.
  void enqueue(int device, std::vector<wire::Reading> readings, int64_t created_us,
               int64_t release_mono_us);
  // Handles acks, resends what timed out, publishes what is released and fits the windows,
  // reconnects lost clients. Never blocks for long.
  void pump(int64_t now_mono_us);
  // Sleeps until a connection has something to read or can write, at most `max_us`.
  void wait(int64_t max_us);
  void setOnline(int device, bool online);
  // Batches queued or in flight.
  uint64_t outstanding() const { return stats_.in_flight + stats_.queued; }
  // Readings in batches queued or in flight (not acknowledged).
  uint64_t unackedReadings() const;
  const MqttStats& stats() const { return stats_; }
  // Publish-to-ack time of acknowledged batches (from the last send), ms; nearest rank.
  double ackLatencyMs(double percentile) const;
  // Publishes status offline (if enabled) and disconnects.
  void disconnect();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  MqttStats stats_;
};

}  // namespace outpost::sim

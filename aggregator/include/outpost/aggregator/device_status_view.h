#pragma once

// The device registry as any process instance can serve it (docs/scaling.md, "Operations"): a
// replica of the compacted device-status topic (kafka.device_status_topic), where the ops layer
// of roles all and ingest publishes each device's record at every state change ({"type":
// "device_status", "ts_us", "device": {...}}, key = device id, ops.cc). One Kafka consumer of
// its own, assign-only (no group membership, nothing committed), reads every partition from the
// beginning and then follows it; the latest record per device is kept in a DeviceRegistry
// (bounded by devices.max; a tombstone forgets the device), so /api/devices and
// /api/devices/{id} answer in the same shape as in role all (ops.h).
//
// What differs from role all: a record is the device as its last state change left it (the
// topic carries changes, not every batch), as seen by the instance that published it (with
// several ingest instances each one sees its share of a device's batches): state, reason,
// state_since_us, agent_version, epoch and backlog are meaningful; counts (batches, items, ...)
// and last_seen_us are as of that change.
//
// Thread-safety: start()/stop() from the owning thread; the rest from any thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "outpost/aggregator/device_registry.h"
#include "outpost/aggregator/kafka.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

namespace outpost {
class HttpServer;
}

namespace outpost::aggregator {

// One device-status record (untrusted bytes from the topic) into a DeviceInfo: a JSON object
// whose "device" member has every field of deviceJson() with its type, and whose id is `key` (a
// valid device id). Errors (kInvalidArgument) name the field.
Result<DeviceInfo> parseDeviceStatusRecord(std::string_view key, std::string_view value);

class DeviceStatusView {
 public:
  // `group_id`: librdkafka's assign() needs one; it is never joined, nothing is committed.
  DeviceStatusView(KafkaOptions kafka, std::string topic, std::string group_id,
                   DeviceRegistryOptions devices, metrics::Registry& registry,
                   const Clock& clock);
  ~DeviceStatusView();
  DeviceStatusView(const DeviceStatusView&) = delete;
  DeviceStatusView& operator=(const DeviceStatusView&) = delete;

  // Creates the consumer and starts the reading thread. Throws std::runtime_error on a bad Kafka
  // configuration; a missing topic or an unreachable broker is retried (logged once).
  void start();
  void stop();  // idempotent

  // Every partition read up to the end it had when first assigned.
  bool caughtUp() const { return caught_up_.load(); }
  const DeviceRegistry& devices() const { return devices_; }
  // GET /api/devices and GET /api/devices/{id} (ops.h's shapes).
  void addRoutes(HttpServer& http);

  // One record (the reading thread calls this; exposed for tests). Null value: a tombstone.
  void apply(std::string_view key, const void* value, size_t len);

 private:
  void run();
  bool assign(std::string& why);  // metadata, then every partition from the beginning

  const KafkaOptions kafka_;
  const std::string topic_;
  const std::string group_id_;
  const Clock& clock_;
  DeviceRegistry devices_;
  metrics::CounterVec records_;  // by result
  metrics::Counter& applied_;
  metrics::Counter& invalid_;
  metrics::Counter& forgotten_;
  metrics::Counter& over_max_;
  struct Consumer;
  std::unique_ptr<Consumer> consumer_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> caught_up_{false};
};

}  // namespace outpost::aggregator

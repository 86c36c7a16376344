#pragma once

// The fleet as the aggregator sees it: one record per device (first/last seen, agent version,
// stream epoch, sequence gaps, readings the agent reports dropped, its outbox backlog, online or
// offline), fed by verified batches and by the agents' retained MQTT status messages, and swept
// for silence. State changes are reported through a callback (published on outpost.device-status,
// sent to the alert webhook). Memory only: after an aggregator restart the registry fills again
// from the retained status messages and the next batches.
//
// Thread-safety: every method may be called from any thread (one mutex; work under it is a map
// lookup and a few field updates). The change callback is called without the lock held, from the
// thread whose call caused the change.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/aggregator/ops_hooks.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::aggregator {

struct DeviceRegistryOptions {
  int64_t offline_after_us = 90'000'000;  // online device silent this long -> offline ("silence")
  size_t max_devices = 1'000'000;         // beyond this, unknown devices are not recorded (counted)
};

struct DeviceInfo {
  std::string id;
  int64_t first_seen_us = 0;
  int64_t last_seen_us = 0;  // last batch or live status message; 0: only a retained status
  int64_t last_batch_us = 0;
  std::string agent_version;      // from the status message; empty if the agent never said
  uint64_t epoch = 0;             // current stream epoch (0: no batch yet)
  uint64_t epoch_changes = 0;     // times a new epoch replaced a known one (agent store re-created)
  uint64_t last_seq = 0;          // highest seq seen in the current epoch
  uint64_t seq_gaps = 0;          // seqs skipped and not (yet) arrived, current and earlier epochs
  uint64_t batches = 0;           // distinct batches seen (re-sends excluded)
  uint64_t duplicates = 0;        // re-sent batches seen
  uint64_t items = 0;             // readings + windows in distinct batches
  uint64_t dropped_reported = 0;  // sum of the batches' `dropped` (agent outbox full, ...)
  int64_t backlog_rows = -1;      // agent outbox batches waiting, from its status; -1 unknown
  int64_t backlog_bytes = -1;
  bool online = false;
  std::string reason;  // why the state is what it is: batch, status, last_will, shutdown, silence
  int64_t state_since_us = 0;
  uint64_t window = 0;  // receipt bitmap of seqs last_seq-1 .. last_seq-64 (gap repair)
};

// JSON object of one device (the /api/devices items and the device-status events). `now_us` adds
// last_seen_age_s (null when never seen live). The epoch is a string (64-bit, exact).
std::string deviceJson(const DeviceInfo& d, int64_t now_us);

class DeviceRegistry {
 public:
  // Called after a device went online or offline (or appeared). `d` is a copy taken at the change.
  using ChangeFn = std::function<void(const DeviceInfo& d)>;

  explicit DeviceRegistry(DeviceRegistryOptions options, ChangeFn on_change = {});

  void onBatch(const BatchSeen& b);
  // An MQTT status message: "online"/"offline" or JSON {"state":..., "reason":..., "version":...,
  // "backlog_rows":..., "backlog_bytes":...}. Untrusted: anything else is ignored (returns false).
  // `retained`: replayed by the broker at subscribe time (does not count as seen live).
  bool onStatus(const std::string& device, std::string_view payload, bool retained, int64_t now_us);
  // Marks online devices silent for longer than offline_after as offline. Returns how many.
  size_t sweep(int64_t now_us);
  // Sets a device's record as a whole (a replica of another instance's registry, e.g. read from
  // the device-status topic); no change callback. False when it is new and max_devices are
  // recorded (counted in unrecorded()).
  bool put(const DeviceInfo& d);
  // Forgets a device (true if it was recorded).
  bool erase(std::string_view id);

  std::optional<DeviceInfo> get(const std::string& id) const;
  struct Page {
    size_t total = 0;  // matching devices
    std::vector<DeviceInfo> items;
  };
  // Devices in id order whose id contains `query` (empty: all), filtered by state ("online",
  // "offline", "" = any), from `offset`, at most `limit`.
  Page list(size_t offset, size_t limit, std::string_view query, std::string_view state) const;

  size_t size() const;
  size_t onlineCount() const;
  uint64_t unrecorded() const;  // devices not recorded because of max_devices

 private:
  DeviceInfo* findOrAdd(std::string_view id, int64_t now_us) REQUIRES(mu_);  // null when full
  void setState(DeviceInfo& d, bool online, std::string reason, int64_t now_us,
                std::vector<DeviceInfo>& changes) REQUIRES(mu_);
  void notify(const std::vector<DeviceInfo>& changes);

  const DeviceRegistryOptions opt_;
  const ChangeFn on_change_;
  mutable Mutex mu_;
  std::map<std::string, DeviceInfo, std::less<>> devices_ GUARDED_BY(mu_);
  size_t online_ GUARDED_BY(mu_) = 0;
  uint64_t unrecorded_ GUARDED_BY(mu_) = 0;
};

}  // namespace outpost::aggregator

#include "outpost/aggregator/device_registry.h"

#include "outpost/common/json.h"

namespace outpost::aggregator {
namespace {

constexpr size_t kMaxStatusBytes = 1024;
constexpr uint64_t kWindowBits = 64;

// A version string shown on the dashboard: printable ASCII, bounded.
bool plausibleVersion(std::string_view v) {
  if (v.empty() || v.size() > 64) return false;
  for (unsigned char c : v) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

std::string deviceJson(const DeviceInfo& d, int64_t now_us) {
  std::string o;
  json::Writer w(o);
  w.beginObject()
      .member("id", d.id)
      .member("state", d.online ? "online" : "offline")
      .member("reason", d.reason)
      .member("state_since_us", d.state_since_us)
      .member("first_seen_us", d.first_seen_us)
      .member("last_seen_us", d.last_seen_us)
      .key("last_seen_age_s");
  if (d.last_seen_us > 0) {
    w.number(static_cast<double>(std::max<int64_t>(0, now_us - d.last_seen_us)) / 1e6);
  } else {
    w.null();
  }
  w.member("last_batch_us", d.last_batch_us).key("agent_version");
  if (d.agent_version.empty()) {
    w.null();
  } else {
    w.string(d.agent_version);
  }
  // As a string: epochs are random 64-bit numbers, beyond what a JSON number keeps exactly in
  // JavaScript (2^53).
  w.key("epoch").uintString(d.epoch)
      .member("epoch_changes", d.epoch_changes)
      .member("last_seq", d.last_seq)
      .member("seq_gaps", d.seq_gaps)
      .member("batches", d.batches)
      .member("duplicates", d.duplicates)
      .member("items", d.items)
      .member("dropped_reported", d.dropped_reported)
      .key("backlog_rows");
  if (d.backlog_rows < 0) {
    w.null();
  } else {
    w.integer(d.backlog_rows);
  }
  w.key("backlog_bytes");
  if (d.backlog_bytes < 0) {
    w.null();
  } else {
    w.integer(d.backlog_bytes);
  }
  w.endObject();
  return o;
}

DeviceRegistry::DeviceRegistry(DeviceRegistryOptions options, ChangeFn on_change)
    : opt_(options), on_change_(std::move(on_change)) {}

DeviceInfo* DeviceRegistry::findOrAdd(std::string_view id, int64_t now_us) {
  auto it = devices_.find(id);
  if (it != devices_.end()) return &it->second;
  if (devices_.size() >= opt_.max_devices) {
    ++unrecorded_;
    return nullptr;
  }
  DeviceInfo& d = devices_[std::string(id)];
  d.id = id;
  d.first_seen_us = now_us;
  d.state_since_us = now_us;
  d.reason = "new";
  return &d;
}

void DeviceRegistry::setState(DeviceInfo& d, bool online, std::string reason, int64_t now_us,
                              std::vector<DeviceInfo>& changes) {
  const bool is_new = d.reason == "new";  // just recorded: its first state is a change too
  if (!is_new && d.online == online) return;
  if (online)
    ++online_;
  else if (!is_new)
    --online_;
  d.online = online;
  d.reason = std::move(reason);
  d.state_since_us = now_us;
  changes.push_back(d);
}

void DeviceRegistry::notify(const std::vector<DeviceInfo>& changes) {
  if (!on_change_) return;
  for (const auto& d : changes) on_change_(d);
}

void DeviceRegistry::onBatch(const BatchSeen& b) {
  std::vector<DeviceInfo> changes;
  {
    MutexLock lock(mu_);
    DeviceInfo* d = findOrAdd(b.device, b.now_us);
    if (!d) return;
    d->last_seen_us = b.now_us;
    d->last_batch_us = b.now_us;
    bool fresh = false;
    if (d->epoch != b.epoch) {
      // First batch of a stream this registry has not seen: no gap is counted before it (the
      // aggregator may have restarted mid-stream).
      if (d->epoch != 0) ++d->epoch_changes;
      d->epoch = b.epoch;
      d->last_seq = b.seq;
      d->window = 0;
      fresh = true;
    } else if (b.seq > d->last_seq) {
      const uint64_t step = b.seq - d->last_seq;
      d->seq_gaps += step - 1;
      // Shift the receipt window: bit k = seq last_seq-1-k arrived.
      d->window = step >= kWindowBits ? 0 : (d->window << step) | (uint64_t{1} << (step - 1));
      d->last_seq = b.seq;
      fresh = true;
    } else if (b.seq < d->last_seq) {
      const uint64_t back = d->last_seq - b.seq;  // >= 1
      if (back <= kWindowBits) {
        const uint64_t bit = uint64_t{1} << (back - 1);
        if (!(d->window & bit)) {
          d->window |= bit;  // a skipped seq arrived late (out of order): not a gap after all
          if (d->seq_gaps > 0) --d->seq_gaps;
          fresh = true;
        }
      }
    }
    if (fresh) {
      ++d->batches;
      d->items += b.items;
      d->dropped_reported += b.dropped;
    } else {
      ++d->duplicates;
    }
    setState(*d, true, "batch", b.now_us, changes);
  }
  notify(changes);
}

bool DeviceRegistry::onStatus(const std::string& device, std::string_view payload, bool retained,
                              int64_t now_us) {
  if (payload.size() > kMaxStatusBytes) return false;
  std::string state, reason = "status", version;
  int64_t rows = -1, bytes = -1;
  if (payload == "online" || payload == "offline") {
    state = payload;
  } else {
    json::ParseLimits limits;
    limits.max_bytes = kMaxStatusBytes;
    limits.max_depth = 4;
    auto doc = json::parse(payload, limits);
    if (!doc || !doc->isObject()) return false;
    auto text = [&](std::string_view k) -> const std::string* {
      const json::Value* v = doc->find(k);
      return v ? v->asString() : nullptr;
    };
    // A count the agent reports: a non-negative integer, else unknown (-1).
    auto count = [&](std::string_view k) -> int64_t {
      const json::Value* v = doc->find(k);
      const auto n = v ? v->asInt() : std::nullopt;
      return n && *n >= 0 ? *n : -1;
    };
    if (const std::string* s = text("state")) state = *s;
    if (const std::string* r = text("reason"); r && (*r == "last_will" || *r == "shutdown")) {
      reason = *r;
    }
    if (const std::string* v = text("version"); v && plausibleVersion(*v)) version = *v;
    rows = count("backlog_rows");
    bytes = count("backlog_bytes");
  }
  if (state != "online" && state != "offline") return false;
  std::vector<DeviceInfo> changes;
  {
    MutexLock lock(mu_);
    DeviceInfo* d = findOrAdd(device, now_us);
    if (!d) return false;
    if (!retained) d->last_seen_us = now_us;
    if (!version.empty()) d->agent_version = version;
    if (rows >= 0) d->backlog_rows = rows;
    if (bytes >= 0) d->backlog_bytes = bytes;
    setState(*d, state == "online", reason, now_us, changes);
  }
  notify(changes);
  return true;
}

size_t DeviceRegistry::sweep(int64_t now_us) {
  std::vector<DeviceInfo> changes;
  {
    MutexLock lock(mu_);
    if (online_ == 0) return 0;
    for (auto& [id, d] : devices_) {
      if (!d.online) continue;
      const int64_t last = std::max({d.last_seen_us, d.state_since_us, d.first_seen_us});
      if (now_us - last > opt_.offline_after_us) setState(d, false, "silence", now_us, changes);
    }
  }
  notify(changes);
  return changes.size();
}

std::optional<DeviceInfo> DeviceRegistry::get(const std::string& id) const {
  MutexLock lock(mu_);
  auto it = devices_.find(id);
  if (it == devices_.end()) return std::nullopt;
  return it->second;
}

bool DeviceRegistry::put(const DeviceInfo& d) {
  MutexLock lock(mu_);
  auto it = devices_.find(d.id);
  if (it == devices_.end()) {
    if (devices_.size() >= opt_.max_devices) {
      ++unrecorded_;
      return false;
    }
    it = devices_.emplace(d.id, d).first;
  } else {
    if (it->second.online) --online_;
    it->second = d;
  }
  if (d.online) ++online_;
  return true;
}

bool DeviceRegistry::erase(std::string_view id) {
  MutexLock lock(mu_);
  auto it = devices_.find(id);
  if (it == devices_.end()) return false;
  if (it->second.online) --online_;
  devices_.erase(it);
  return true;
}

DeviceRegistry::Page DeviceRegistry::list(size_t offset, size_t limit, std::string_view query,
                                          std::string_view state) const {
  Page page;
  MutexLock lock(mu_);
  for (const auto& [id, d] : devices_) {
    if (!query.empty() && id.find(query) == std::string::npos) continue;
    if (state == "online" && !d.online) continue;
    if (state == "offline" && d.online) continue;
    if (page.total >= offset && page.items.size() < limit) page.items.push_back(d);
    ++page.total;
  }
  return page;
}

size_t DeviceRegistry::size() const {
  MutexLock lock(mu_);
  return devices_.size();
}

size_t DeviceRegistry::onlineCount() const {
  MutexLock lock(mu_);
  return online_;
}

uint64_t DeviceRegistry::unrecorded() const {
  MutexLock lock(mu_);
  return unrecorded_;
}

}  // namespace outpost::aggregator

#include "outpost/aggregator/device_registry.h"

#include <charconv>

#include "outpost/aggregator/json.h"

namespace outpost::aggregator {
namespace {

constexpr size_t kMaxStatusBytes = 1024;
constexpr uint64_t kWindowBits = 64;

// A flat JSON object of string / number / true / false / null members, the only shape a status
// message has. Nested values, escapes other than \" \\ \/, or any syntax error: nullopt.
using Flat = std::map<std::string, std::string, std::less<>>;

std::optional<Flat> parseFlatObject(std::string_view s) {
  Flat out;
  size_t i = 0;
  auto ws = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  };
  auto str = [&](std::string& v) -> bool {
    if (i >= s.size() || s[i] != '"') return false;
    ++i;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c == '\\') {
        if (i >= s.size()) return false;
        c = s[i++];
        if (c != '"' && c != '\\' && c != '/') return false;
      }
      v += c;
    }
    if (i >= s.size()) return false;
    ++i;
    return true;
  };
  ws();
  if (i >= s.size() || s[i++] != '{') return std::nullopt;
  ws();
  if (i < s.size() && s[i] == '}') return out;
  for (;;) {
    ws();
    std::string key, val;
    if (!str(key)) return std::nullopt;
    ws();
    if (i >= s.size() || s[i++] != ':') return std::nullopt;
    ws();
    if (i < s.size() && s[i] == '"') {
      if (!str(val)) return std::nullopt;
    } else {
      const size_t b = i;
      while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') ++i;
      val.assign(s.substr(b, i - b));
      if (val.empty() || val.front() == '{' || val.front() == '[') return std::nullopt;
    }
    out[key] = std::move(val);
    ws();
    if (i >= s.size()) return std::nullopt;
    if (s[i] == ',') {
      ++i;
      continue;
    }
    if (s[i] == '}') {
      ++i;
      ws();
      return i == s.size() ? std::optional<Flat>(std::move(out)) : std::nullopt;
    }
    return std::nullopt;
  }
}

bool parseInt(std::string_view s, int64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

// A version string shown on the dashboard: printable ASCII, bounded.
bool plausibleVersion(std::string_view v) {
  if (v.empty() || v.size() > 64) return false;
  for (unsigned char c : v) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

void field(std::string& o, const char* name, int64_t v) {
  o += ",\"";
  o += name;
  o += "\":";
  o += std::to_string(v);
}

void fieldU(std::string& o, const char* name, uint64_t v) {
  o += ",\"";
  o += name;
  o += "\":";
  o += std::to_string(v);
}

}  // namespace

std::string deviceJson(const DeviceInfo& d, int64_t now_us) {
  std::string o = "{\"id\":";
  appendJsonString(o, d.id);
  o += ",\"state\":";
  o += d.online ? "\"online\"" : "\"offline\"";
  o += ",\"reason\":";
  appendJsonString(o, d.reason);
  field(o, "state_since_us", d.state_since_us);
  field(o, "first_seen_us", d.first_seen_us);
  field(o, "last_seen_us", d.last_seen_us);
  o += ",\"last_seen_age_s\":";
  if (d.last_seen_us > 0) {
    appendJsonNumber(o, static_cast<double>(std::max<int64_t>(0, now_us - d.last_seen_us)) / 1e6);
  } else {
    o += "null";
  }
  field(o, "last_batch_us", d.last_batch_us);
  o += ",\"agent_version\":";
  if (d.agent_version.empty())
    o += "null";
  else
    appendJsonString(o, d.agent_version);
  // As a string: epochs are random 64-bit numbers, beyond what a JSON number keeps exactly in
  // JavaScript (2^53).
  o += ",\"epoch\":\"" + std::to_string(d.epoch) + "\"";
  fieldU(o, "epoch_changes", d.epoch_changes);
  fieldU(o, "last_seq", d.last_seq);
  fieldU(o, "seq_gaps", d.seq_gaps);
  fieldU(o, "batches", d.batches);
  fieldU(o, "duplicates", d.duplicates);
  fieldU(o, "items", d.items);
  fieldU(o, "dropped_reported", d.dropped_reported);
  o += ",\"backlog_rows\":";
  o += d.backlog_rows < 0 ? "null" : std::to_string(d.backlog_rows);
  o += ",\"backlog_bytes\":";
  o += d.backlog_bytes < 0 ? "null" : std::to_string(d.backlog_bytes);
  o += "}";
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
    auto obj = parseFlatObject(payload);
    if (!obj) return false;
    if (auto it = obj->find("state"); it != obj->end()) state = it->second;
    if (auto it = obj->find("reason"); it != obj->end()) {
      if (it->second == "last_will" || it->second == "shutdown") reason = it->second;
    }
    if (auto it = obj->find("version"); it != obj->end() && plausibleVersion(it->second)) {
      version = it->second;
    }
    if (auto it = obj->find("backlog_rows"); it != obj->end()) {
      if (!parseInt(it->second, rows) || rows < 0) rows = -1;
    }
    if (auto it = obj->find("backlog_bytes"); it != obj->end()) {
      if (!parseInt(it->second, bytes) || bytes < 0) bytes = -1;
    }
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

#include "outpost/aggregator/reorder_buffer.h"

#include <algorithm>

namespace outpost::aggregator {

bool ReorderBuffer::hold(Held h) {
  size_t& n = per_device_[h.device];
  if (n >= max_held_) return false;
  auto& stream = streams_[{h.device, h.epoch}];
  auto [it, added] = stream.try_emplace(h.seq, std::move(h));
  if (!added) return true;  // the same seq is held already: this copy is a duplicate
  ++n;
  ++size_;
  offsets_[it->second.partition].insert(it->second.offset);
  return true;
}

std::vector<ReorderBuffer::Held> ReorderBuffer::takeReady(const std::string& device,
                                                          uint64_t epoch,
                                                          uint64_t next_expected) {
  std::vector<Held> out;
  auto sit = streams_.find({device, epoch});
  if (sit == streams_.end()) return out;
  auto& stream = sit->second;
  while (!stream.empty() && stream.begin()->first <= next_expected) {
    auto node = stream.extract(stream.begin());
    next_expected = std::max(next_expected, node.key() + 1);
    out.push_back(std::move(node.mapped()));
  }
  if (stream.empty()) streams_.erase(sit);
  for (const Held& h : out) {
    auto& offs = offsets_[h.partition];
    offs.erase(offs.find(h.offset));
    --size_;
    if (--per_device_[device] == 0) per_device_.erase(device);
  }
  return out;
}

std::vector<ReorderBuffer::Held> ReorderBuffer::takeStream(const Key& key) {
  std::vector<Held> out;
  auto sit = streams_.find(key);
  if (sit == streams_.end()) return out;
  for (auto& [seq, h] : sit->second) {
    auto& offs = offsets_[h.partition];
    offs.erase(offs.find(h.offset));
    --size_;
    out.push_back(std::move(h));
  }
  streams_.erase(sit);
  auto d = per_device_.find(key.first);
  if (d != per_device_.end()) {
    d->second -= std::min(d->second, out.size());
    if (d->second == 0) per_device_.erase(d);
  }
  return out;
}

std::vector<ReorderBuffer::Held> ReorderBuffer::takeDevice(const std::string& device) {
  std::vector<Key> keys;
  for (const auto& [key, _] : streams_) {
    if (key.first == device) keys.push_back(key);
  }
  std::sort(keys.begin(), keys.end());
  std::vector<Held> out;
  for (const Key& k : keys) {
    for (Held& h : takeStream(k)) out.push_back(std::move(h));
  }
  return out;
}

std::vector<ReorderBuffer::Held> ReorderBuffer::takeExpired(int64_t now_us) {
  std::vector<Key> expired;
  for (const auto& [key, stream] : streams_) {
    for (const auto& [seq, h] : stream) {
      if (now_us - h.held_since_us >= max_wait_us_) {
        expired.push_back(key);
        break;
      }
    }
  }
  std::sort(expired.begin(), expired.end());
  std::vector<Held> out;
  for (const Key& k : expired) {
    for (Held& h : takeStream(k)) out.push_back(std::move(h));
  }
  return out;
}

std::optional<int64_t> ReorderBuffer::lowestHeldOffset(int32_t partition) const {
  auto it = offsets_.find(partition);
  if (it == offsets_.end() || it->second.empty()) return std::nullopt;
  return *it->second.begin();
}

void ReorderBuffer::dropPartition(int32_t partition) {
  std::vector<Key> keys;
  for (const auto& [key, stream] : streams_) {
    if (!stream.empty() && stream.begin()->second.partition == partition) keys.push_back(key);
  }
  for (const Key& k : keys) (void)takeStream(k);  // a device's batches share its partition
  offsets_.erase(partition);
}

}  // namespace outpost::aggregator

#include "outpost/aggregator/device_state.h"

#include <flatbuffers/flatbuffers.h>

#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "dedup/seq_intervals.h"
#include "outpost/common/codec.h"
#include "outpost/wire/state_generated.h"

namespace outpost::aggregator {

// --- DeviceDedup ---

bool DeviceDedup::contains(uint64_t epoch, uint64_t seq) const {
  auto it = epochs_.find(epoch);
  return it != epochs_.end() && intervalsContain(it->second, seq);
}

void DeviceDedup::add(uint64_t epoch, uint64_t seq) {
  auto it = epochs_.find(epoch);
  if (it == epochs_.end()) {
    if (epochs_.size() >= kMaxEpochs) {
      // Keep the highest epochs: a lower one than all kept is not recorded (treated as new).
      if (epoch < epochs_.begin()->first) return;
      epochs_.erase(epochs_.begin());
    }
    it = epochs_.emplace(epoch, Intervals{}).first;
  }
  Intervals& ranges = it->second;
  if (!intervalsAdd(ranges, seq)) return;
  if (ranges.size() > kMaxIntervals) {
    // Fill the oldest gap: the two lowest intervals become one (see the header).
    auto first = ranges.begin();
    auto second = std::next(first);
    first->second = second->second;
    ranges.erase(second);
  }
}

size_t DeviceDedup::intervals() const {
  size_t n = 0;
  for (const auto& [epoch, ranges] : epochs_) n += ranges.size();
  return n;
}

namespace {

// Why `epochs` is not a valid DeviceDedup content; empty if it is.
std::string invalidIntervals(const std::map<uint64_t, DeviceDedup::Intervals>& epochs) {
  if (epochs.size() > DeviceDedup::kMaxEpochs) {
    return std::to_string(epochs.size()) + " epochs, at most " +
           std::to_string(DeviceDedup::kMaxEpochs);
  }
  for (const auto& [epoch, ranges] : epochs) {
    const std::string where = "epoch " + std::to_string(epoch);
    if (ranges.empty()) return where + " has no intervals";
    if (ranges.size() > DeviceDedup::kMaxIntervals) {
      return where + " has " + std::to_string(ranges.size()) + " intervals, at most " +
             std::to_string(DeviceDedup::kMaxIntervals);
    }
    bool have_prev = false;
    uint64_t prev_hi = 0;
    for (const auto& [lo, hi] : ranges) {
      if (lo > hi) {
        return where + ": interval " + std::to_string(lo) + ".." + std::to_string(hi) +
               " has lo > hi";
      }
      if (have_prev && (prev_hi == UINT64_MAX || lo <= prev_hi + 1)) {
        return where + ": interval " + std::to_string(lo) + ".." + std::to_string(hi) +
               " overlaps or touches the one before (ending at " + std::to_string(prev_hi) + ")";
      }
      have_prev = true;
      prev_hi = hi;
    }
  }
  return {};
}

}  // namespace

Status DeviceDedup::assign(std::map<uint64_t, Intervals> epochs) {
  if (std::string why = invalidIntervals(epochs); !why.empty()) {
    return fail(ErrorCode::kInvalidArgument, "dedup intervals: " + why);
  }
  epochs_ = std::move(epochs);
  return {};
}

// --- outpost.state value ---

std::string encodeDeviceState(const DeviceStateRecord& r) {
  flatbuffers::FlatBufferBuilder fbb(256 + r.detectors.size() + 16 * r.dedup.intervals());
  fbb.ForceDefaults(true);  // format_version is written even when it equals the default
  std::vector<flatbuffers::Offset<wire::EpochIntervals>> epochs;
  std::vector<wire::SeqInterval> iv;
  for (const auto& [epoch, ranges] : r.dedup.epochs()) {
    iv.clear();
    for (const auto& [lo, hi] : ranges) iv.emplace_back(lo, hi);
    epochs.push_back(wire::CreateEpochIntervals(fbb, epoch, fbb.CreateVectorOfStructs(iv)));
  }
  const auto device = fbb.CreateString(r.device);
  const auto epochs_vec = fbb.CreateVector(epochs);
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> det;
  if (!r.detectors.empty()) {
    det = fbb.CreateVector(reinterpret_cast<const uint8_t*>(r.detectors.data()),
                           r.detectors.size());
  }
  wire::StateRecordBuilder b(fbb);
  b.add_format_version(kDeviceStateFormat);
  b.add_device_id(device);
  b.add_updated_us(r.updated_us);
  b.add_epochs(epochs_vec);
  if (!r.detectors.empty()) b.add_detectors(det);
  wire::FinishStateRecordBuffer(fbb, b.Finish());
  return std::string(reinterpret_cast<const char*>(fbb.GetBufferPointer()), fbb.GetSize());
}

Result<DeviceStateRecord> decodeDeviceState(std::span<const uint8_t> bytes) {
  auto corrupt = [](std::string why) {
    return fail(ErrorCode::kCorrupt, "outpost.state record: " + why);
  };
  if (bytes.size() > kMaxDeviceStateBytes) {
    return corrupt(std::to_string(bytes.size()) + " bytes, at most " +
                   std::to_string(kMaxDeviceStateBytes));
  }
  // Depth and table-count limits bound the Verifier's own work on hostile input.
  flatbuffers::Verifier::Options opts;
  opts.max_depth = 8;
  opts.max_tables = 64;
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), opts);
  if (!wire::VerifyStateRecordBuffer(verifier)) {
    return corrupt("FlatBuffers verifier rejected the buffer (not a StateRecord, identifier OPS1)");
  }
  const wire::StateRecord* rec = wire::GetStateRecord(bytes.data());
  if (rec->format_version() != kDeviceStateFormat) {
    return fail(ErrorCode::kInvalidArgument,
                "outpost.state record: format_version " + std::to_string(rec->format_version()) +
                    " is not supported (this build reads version " +
                    std::to_string(kDeviceStateFormat) + ")");
  }
  DeviceStateRecord out;
  out.device = rec->device_id()->str();
  if (!codec::isValidDeviceId(out.device)) {
    return fail(ErrorCode::kInvalidArgument,
                "outpost.state record: invalid device id (1..64 characters of [A-Za-z0-9._-], "
                "not starting with '.')");
  }
  out.updated_us = rec->updated_us();
  std::map<uint64_t, DeviceDedup::Intervals> epochs;
  if (const auto* ev = rec->epochs()) {
    if (ev->size() > DeviceDedup::kMaxEpochs) {
      return corrupt(std::to_string(ev->size()) + " epochs, at most " +
                     std::to_string(DeviceDedup::kMaxEpochs));
    }
    bool have_prev = false;
    uint64_t prev_epoch = 0;
    for (const wire::EpochIntervals* e : *ev) {
      if (have_prev && e->epoch() <= prev_epoch) {
        return corrupt("epochs not in ascending order (" + std::to_string(e->epoch()) + " after " +
                       std::to_string(prev_epoch) + ")");
      }
      have_prev = true;
      prev_epoch = e->epoch();
      const auto* iv = e->intervals();
      const size_t n = iv ? iv->size() : 0;
      if (n > DeviceDedup::kMaxIntervals) {
        return corrupt("epoch " + std::to_string(e->epoch()) + " has " + std::to_string(n) +
                       " intervals, at most " + std::to_string(DeviceDedup::kMaxIntervals));
      }
      // The Verifier checks the vector's length field, not the 8-byte alignment of its structs.
      if (n > 0 && (reinterpret_cast<const uint8_t*>(iv->Data()) - bytes.data()) % 8 != 0) {
        return corrupt("misaligned intervals of epoch " + std::to_string(e->epoch()));
      }
      auto& ranges = epochs[e->epoch()];
      for (size_t i = 0; i < n; ++i) {
        const wire::SeqInterval* s = iv->Get(static_cast<flatbuffers::uoffset_t>(i));
        if (!ranges.empty() && s->lo() <= std::prev(ranges.end())->second) {
          return corrupt("epoch " + std::to_string(e->epoch()) +
                         ": intervals not in ascending order or overlapping at " +
                         std::to_string(s->lo()) + ".." + std::to_string(s->hi()));
        }
        ranges.emplace_hint(ranges.end(), s->lo(), s->hi());
      }
    }
  }
  if (auto st = out.dedup.assign(std::move(epochs)); !st) {
    return corrupt(st.error().message());
  }
  if (const auto* d = rec->detectors()) out.detectors.assign(d->begin(), d->end());
  return out;
}

}  // namespace outpost::aggregator

// The consumer protocol's member assignment (cluster_view.h), parsed from untrusted bytes. Kept
// apart from the Kafka client code so that the fuzz target (tests/fuzz/member_assignment_fuzz.cc)
// compiles it alone.
#include <string>
#include <vector>

#include "outpost/aggregator/cluster_view.h"

namespace outpost::aggregator {
namespace {

// A bounds-checked big-endian reader over untrusted bytes.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  size_t pos() const { return pos_; }
  size_t left() const { return b_.size() - pos_; }
  bool i16(int16_t& v) {
    if (left() < 2) return false;
    v = static_cast<int16_t>((b_[pos_] << 8) | b_[pos_ + 1]);
    pos_ += 2;
    return true;
  }
  bool i32(int32_t& v) {
    if (left() < 4) return false;
    v = static_cast<int32_t>((uint32_t{b_[pos_]} << 24) | (uint32_t{b_[pos_ + 1]} << 16) |
                             (uint32_t{b_[pos_ + 2]} << 8) | uint32_t{b_[pos_ + 3]});
    pos_ += 4;
    return true;
  }
  bool bytes(size_t n, std::string_view& out) {
    if (left() < n) return false;
    out = std::string_view(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return true;
  }

 private:
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
};

std::unexpected<Error> corrupt(const Reader& r, const std::string& what) {
  return fail(ErrorCode::kCorrupt,
              "member assignment: " + what + " at byte " + std::to_string(r.pos()));
}

}  // namespace

Result<std::vector<AssignedTopic>> parseMemberAssignment(std::span<const uint8_t> bytes) {
  std::vector<AssignedTopic> out;
  if (bytes.empty()) return out;
  Reader r(bytes);
  int16_t version = 0;
  if (!r.i16(version)) return corrupt(r, "truncated version");
  if (version < 0) return corrupt(r, "negative version " + std::to_string(version));
  int32_t topics = 0;
  if (!r.i32(topics)) return corrupt(r, "truncated topic count");
  if (topics < -1) return corrupt(r, "topic count " + std::to_string(topics));
  // A topic takes at least 6 bytes (name length, partition count): a count the rest cannot hold
  // is rejected before anything is reserved.
  if (topics > 0 && static_cast<size_t>(topics) > r.left() / 6) {
    return corrupt(r, "topic count " + std::to_string(topics) + " beyond the " +
                          std::to_string(r.left()) + " bytes left");
  }
  for (int32_t t = 0; t < topics; ++t) {
    int16_t name_len = 0;
    if (!r.i16(name_len)) return corrupt(r, "truncated topic name length");
    if (name_len < 0) return corrupt(r, "topic name length " + std::to_string(name_len));
    std::string_view name;
    if (!r.bytes(static_cast<size_t>(name_len), name)) {
      return corrupt(r, "topic name of " + std::to_string(name_len) + " bytes past the end");
    }
    int32_t parts = 0;
    if (!r.i32(parts)) return corrupt(r, "truncated partition count");
    if (parts < -1) return corrupt(r, "partition count " + std::to_string(parts));
    if (parts > 0 && static_cast<size_t>(parts) > r.left() / 4) {
      return corrupt(r, "partition count " + std::to_string(parts) + " beyond the " +
                            std::to_string(r.left()) + " bytes left");
    }
    AssignedTopic& at = out.emplace_back();
    at.topic.assign(name);
    at.partitions.reserve(parts > 0 ? static_cast<size_t>(parts) : 0);
    for (int32_t i = 0; i < parts; ++i) {
      int32_t p = 0;
      r.i32(p);  // cannot fail: counted above
      if (p < 0) return corrupt(r, "negative partition " + std::to_string(p));
      at.partitions.push_back(p);
    }
  }
  // User data (bytes, -1 = null); absent in a few old encodings, so only checked when present.
  if (r.left() > 0) {
    int32_t n = 0;
    if (!r.i32(n)) return corrupt(r, "truncated user data length");
    if (n < -1) return corrupt(r, "user data length " + std::to_string(n));
    std::string_view ud;
    if (n > 0 && !r.bytes(static_cast<size_t>(n), ud)) {
      return corrupt(r, "user data of " + std::to_string(n) + " bytes past the end");
    }
  }
  return out;
}

}  // namespace outpost::aggregator

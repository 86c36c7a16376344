// Fuzz target for the consumer protocol's member assignment (parseMemberAssignment,
// aggregator/src/serve/member_assignment.cc): the bytes each member of the process role's group
// carries in a DescribeGroups answer, from the network (docs/scaling.md, "Operations"). Every
// input must parse or be rejected with a kCorrupt error; no crash, no read past the end (ASan),
// no signed overflow (UBSan), and what parses is no bigger than the bytes could hold.
//
// Built like the other targets: a libFuzzer binary with OUTPOST_BUILD_FUZZERS (clang), and with
// replay_main.cc as a plain program that runs the committed corpus in every build.

#include <cstdint>
#include <cstdlib>
#include <span>

#include "outpost/aggregator/cluster_view.h"

namespace {
void check(bool ok) {
  if (!ok) std::abort();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = outpost::aggregator::parseMemberAssignment(std::span<const uint8_t>(data, size));
  if (!r) {
    check(r.error().code() == outpost::ErrorCode::kCorrupt);
    check(r.error().message().rfind("member assignment: ", 0) == 0);
    return 0;
  }
  size_t partitions = 0, name_bytes = 0;
  for (const auto& t : *r) {
    for (int32_t p : t.partitions) check(p >= 0);
    partitions += t.partitions.size();
    name_bytes += t.topic.size();
  }
  // 2 (version) + 4 (count) + per topic 6 + its name + 4 per partition.
  check(size == 0 || 6 + r->size() * 6 + name_bytes + partitions * 4 <= size);
  return 0;
}

// The process role's per-device seq order (reorder_buffer.h).
#include <catch2/catch.hpp>

#include "outpost/aggregator/reorder_buffer.h"

namespace agg = outpost::aggregator;
using Held = agg::ReorderBuffer::Held;

namespace {

Held held(const std::string& device, uint64_t seq, int64_t offset, int64_t since_us = 0,
          uint64_t epoch = 7, int32_t partition = 0) {
  return Held{device, epoch, seq, partition, offset, "bytes-" + std::to_string(seq), 0, since_us};
}

std::vector<uint64_t> seqs(const std::vector<Held>& v) {
  std::vector<uint64_t> out;
  for (const Held& h : v) out.push_back(h.seq);
  return out;
}

}  // namespace

TEST_CASE("ReorderBuffer: a seq beyond the next expected waits for the missing one",
          "[aggregator][process]") {
  agg::ReorderBuffer buf(1'000'000, 64);
  CHECK(agg::ReorderBuffer::inOrder(5, 0));  // unknown stream: anything goes on
  CHECK(agg::ReorderBuffer::inOrder(5, 5));
  CHECK(agg::ReorderBuffer::inOrder(3, 5));  // late: goes on (dedup decides)
  CHECK_FALSE(agg::ReorderBuffer::inOrder(6, 5));

  // 5 processed, next expected 6; 8 and 7 arrive first.
  REQUIRE(buf.hold(held("d", 8, 108)));
  REQUIRE(buf.hold(held("d", 7, 107)));
  CHECK(buf.size() == 2);
  CHECK(buf.lowestHeldOffset(0) == 107);
  CHECK(buf.takeReady("d", 7, 6).empty());  // 6 still missing
  // 6 arrives and is processed: 7 and 8 follow, in order.
  CHECK(seqs(buf.takeReady("d", 7, 7)) == std::vector<uint64_t>{7, 8});
  CHECK(buf.size() == 0);
  CHECK_FALSE(buf.lowestHeldOffset(0).has_value());
}

TEST_CASE("ReorderBuffer: a chain stops at the next gap", "[aggregator][process]") {
  agg::ReorderBuffer buf(1'000'000, 64);
  for (uint64_t s : {12, 10, 11, 14}) REQUIRE(buf.hold(held("d", s, 100 + s)));
  CHECK(seqs(buf.takeReady("d", 7, 10)) == std::vector<uint64_t>{10, 11, 12});
  CHECK(buf.size() == 1);
  CHECK(buf.lowestHeldOffset(0) == 114);
}

TEST_CASE("ReorderBuffer: a gap that stays open ends after the wait, in seq order",
          "[aggregator][process]") {
  agg::ReorderBuffer buf(1'000'000, 64);
  REQUIRE(buf.hold(held("d", 9, 109, /*since=*/100)));
  REQUIRE(buf.hold(held("d", 8, 108, /*since=*/500'000)));
  REQUIRE(buf.hold(held("e", 3, 203, /*since=*/900'000, 1, 1)));
  CHECK(buf.takeExpired(1'000'099).empty());
  // d's first held batch has waited a second: d's stream goes on whole, in seq order; e waits.
  CHECK(seqs(buf.takeExpired(1'000'100)) == std::vector<uint64_t>{8, 9});
  CHECK(buf.size() == 1);
  CHECK_FALSE(buf.lowestHeldOffset(0).has_value());
  CHECK(buf.lowestHeldOffset(1) == 203);
}

TEST_CASE("ReorderBuffer: a device holds at most max_held batches", "[aggregator][process]") {
  agg::ReorderBuffer buf(1'000'000, 3);
  REQUIRE(buf.hold(held("d", 10, 110)));
  REQUIRE(buf.hold(held("d", 12, 112)));
  REQUIRE(buf.hold(held("d", 11, 111)));
  CHECK_FALSE(buf.hold(held("d", 13, 113)));  // full: the caller releases the device first
  CHECK(buf.hold(held("x", 13, 113)));        // another device is not limited by d
  CHECK(seqs(buf.takeDevice("d")) == std::vector<uint64_t>{10, 11, 12});
  CHECK(buf.size() == 1);
  // A copy of a held seq (an ingest forwarded it twice) is not held twice.
  REQUIRE(buf.hold(held("d", 20, 120)));
  REQUIRE(buf.hold(held("d", 20, 121)));
  CHECK(buf.size() == 2);
  CHECK(buf.takeDevice("d").size() == 1);
}

TEST_CASE("ReorderBuffer: epochs are separate streams; a revoked partition's batches go",
          "[aggregator][process]") {
  agg::ReorderBuffer buf(1'000'000, 64);
  REQUIRE(buf.hold(held("d", 5, 105, 0, /*epoch=*/1, /*partition=*/2)));
  REQUIRE(buf.hold(held("d", 3, 106, 0, /*epoch=*/2, /*partition=*/2)));
  CHECK(buf.takeReady("d", 2, 2).empty());
  CHECK(seqs(buf.takeReady("d", 2, 3)) == std::vector<uint64_t>{3});
  REQUIRE(buf.hold(held("f", 9, 300, 0, 1, /*partition=*/3)));
  buf.dropPartition(2);
  CHECK(buf.size() == 1);
  CHECK_FALSE(buf.lowestHeldOffset(2).has_value());
  CHECK(buf.lowestHeldOffset(3) == 300);
  CHECK(buf.takeDevice("d").empty());
}

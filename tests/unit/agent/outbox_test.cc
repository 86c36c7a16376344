#include "support/temp_dir.h"
#include "outpost/agent/outbox.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/status.h"

namespace codec = outpost::codec;
namespace fs = std::filesystem;
namespace wire = outpost::wire;
using outpost::ErrorCode;
using outpost::agent::Outbox;
using outpost::agent::OutboxOptions;
using outpost::agent::StoredBatch;

namespace {

// 2023-11-14T22:13:20Z.
constexpr int64_t kNow = 1'700'000'000'000'000;
constexpr int64_t kSecond = 1'000'000;

class FakeClock final : public outpost::Clock {
 public:
  int64_t wall_us = kNow;
  int64_t mono_us = 1'000;
  int64_t nowUs() const override { return wall_us; }
  int64_t monotonicUs() const override { return mono_us; }
};

class TempDir : public outpost::testing::TempDir {
 public:
  TempDir() : outpost::testing::TempDir("outpost-outbox-test") {}
};

// `n` readings of sensor 1 (and every third of sensor 2), timestamps from `first_ts`.
codec::BatchContent makeBatch(size_t n, int64_t first_ts = kNow - 60 * kSecond,
                              int64_t created_us = kNow) {
  codec::BatchContent b;
  b.device_id = "dev-01";
  b.created_us = created_us;
  b.sensors = {{1, "temp", "C"}, {2, "humidity", "%"}};
  for (size_t i = 0; i < n; ++i) {
    const uint16_t sensor = (i % 3 == 2) ? 2 : 1;
    b.readings.emplace_back(first_ts + static_cast<int64_t>(i) * 1000, 20.0 + 0.5 * i, sensor,
                            wire::Quality::Good);
  }
  return b;
}

codec::BatchContent decode(const std::vector<uint8_t>& payload) {
  auto verified = codec::verifyBatch(std::span<const uint8_t>(payload), codec::VerifyLimits{});
  REQUIRE(verified.has_value());
  return codec::toContent(**verified);
}

void requireSameReadings(const std::vector<wire::Reading>& a, const std::vector<wire::Reading>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].ts_us() == b[i].ts_us());
    CHECK(a[i].value() == b[i].value());
    CHECK(a[i].sensor() == b[i].sensor());
    CHECK(a[i].quality() == b[i].quality());
  }
}

std::unique_ptr<Outbox> openBox(const OutboxOptions& options, const outpost::Clock& clock) {
  auto box = Outbox::open(options, clock);
  if (!box) FAIL("open failed: " << box.error().toString());
  return std::move(*box);
}

OutboxOptions optionsFor(const TempDir& dir, uint64_t max_bytes = 256ull << 20) {
  OutboxOptions o;
  o.path = dir.file("outbox.db");
  o.max_bytes = max_bytes;
  return o;
}

std::vector<StoredBatch> readAll(Outbox& box) {
  auto r = box.readAfter(0, 1000);
  REQUIRE(r.has_value());
  return std::move(*r);
}

std::vector<uint64_t> seqsOf(const std::vector<StoredBatch>& batches) {
  std::vector<uint64_t> out;
  for (const auto& b : batches) out.push_back(b.seq);
  return out;
}

}  // namespace

TEST_CASE("Outbox append assigns epoch and consecutive seqs", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto box = openBox(optionsFor(dir), clock);
  REQUIRE(box->epoch() != 0);

  for (uint64_t expected = 1; expected <= 3; ++expected) {
    auto batch = makeBatch(5);
    auto seq = box->append(batch);
    REQUIRE(seq.has_value());
    CHECK(*seq == expected);
    CHECK(batch.seq == expected);
    CHECK(batch.epoch == box->epoch());
    CHECK(batch.dropped == 0);
  }
  const auto st = box->stats();
  CHECK(st.rows == 3);
  CHECK(st.accepted_batches_total == 3);
  CHECK(st.write_errors_total == 0);
}

TEST_CASE("Outbox stores a verifiable payload with the readings", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto box = openBox(optionsFor(dir), clock);

  auto batch = makeBatch(10);
  const auto original = batch;
  auto seq = box->append(batch);
  REQUIRE(seq.has_value());

  auto stored = readAll(*box);
  REQUIRE(stored.size() == 1);
  CHECK(stored[0].seq == *seq);
  CHECK(stored[0].readings == 10);

  auto verified =
      codec::verifyBatch(std::span<const uint8_t>(stored[0].payload), codec::VerifyLimits{});
  REQUIRE(verified.has_value());
  auto semantics = codec::checkBatchSemantics(**verified, codec::VerifyLimits{}, kNow, "dev-01");
  CHECK(semantics.has_value());

  const auto content = codec::toContent(**verified);
  CHECK(content.device_id == original.device_id);
  CHECK(content.epoch == box->epoch());
  CHECK(content.seq == *seq);
  CHECK(content.dropped == 0);
  CHECK(content.created_us == original.created_us);
  REQUIRE(content.sensors.size() == original.sensors.size());
  for (size_t i = 0; i < content.sensors.size(); ++i) {
    CHECK(content.sensors[i].id == original.sensors[i].id);
    CHECK(content.sensors[i].name == original.sensors[i].name);
    CHECK(content.sensors[i].unit == original.sensors[i].unit);
  }
  requireSameReadings(content.readings, original.readings);
  CHECK(content.windows.empty());
}

TEST_CASE("Outbox readAfter returns batches in order", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto box = openBox(optionsFor(dir), clock);
  for (int i = 0; i < 5; ++i) {
    auto b = makeBatch(static_cast<size_t>(i + 1));
    REQUIRE(box->append(b).has_value());
  }

  SECTION("everything, oldest first") {
    auto all = readAll(*box);
    CHECK(seqsOf(all) == std::vector<uint64_t>{1, 2, 3, 4, 5});
    for (const auto& b : all) {
      CHECK(b.readings == b.seq);
      CHECK(decode(b.payload).seq == b.seq);
    }
  }
  SECTION("after_seq is exclusive") {
    auto r = box->readAfter(2, 100);
    REQUIRE(r.has_value());
    CHECK(seqsOf(*r) == std::vector<uint64_t>{3, 4, 5});
  }
  SECTION("limit") {
    auto r = box->readAfter(0, 2);
    REQUIRE(r.has_value());
    CHECK(seqsOf(*r) == std::vector<uint64_t>{1, 2});
    auto r2 = box->readAfter(1, 3);
    REQUIRE(r2.has_value());
    CHECK(seqsOf(*r2) == std::vector<uint64_t>{2, 3, 4});
  }
  SECTION("nothing after the last") {
    auto r = box->readAfter(5, 100);
    REQUIRE(r.has_value());
    CHECK(r->empty());
  }
  SECTION("skips acked batches") {
    REQUIRE(box->ack(2).has_value());
    REQUIRE(box->ack(4).has_value());
    CHECK(seqsOf(readAll(*box)) == std::vector<uint64_t>{1, 3, 5});
    auto r = box->readAfter(1, 1);
    REQUIRE(r.has_value());
    CHECK(seqsOf(*r) == std::vector<uint64_t>{3});
  }
}

TEST_CASE("Outbox ack deletes and stats track rows and bytes", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto box = openBox(optionsFor(dir), clock);

  CHECK(box->stats().rows == 0);
  CHECK(box->stats().bytes == 0);
  CHECK(box->stats().oldest_created_us == 0);

  for (int i = 0; i < 3; ++i) {
    auto b = makeBatch(10 * static_cast<size_t>(i + 1), kNow - 60 * kSecond, kNow + i * kSecond);
    REQUIRE(box->append(b).has_value());
  }
  auto stored = readAll(*box);
  REQUIRE(stored.size() == 3);
  uint64_t total = 0;
  for (const auto& b : stored) total += b.payload.size();

  auto st = box->stats();
  CHECK(st.rows == 3);
  CHECK(st.bytes == total);
  CHECK(st.oldest_created_us == kNow);

  REQUIRE(box->ack(1).has_value());
  st = box->stats();
  CHECK(st.rows == 2);
  CHECK(st.bytes == total - stored[0].payload.size());
  CHECK(st.acked_batches_total == 1);
  CHECK(st.oldest_created_us == kNow + kSecond);
  CHECK(seqsOf(readAll(*box)) == std::vector<uint64_t>{2, 3});

  SECTION("acking an unknown or already acked seq is OK and changes nothing") {
    CHECK(box->ack(1).has_value());
    CHECK(box->ack(99).has_value());
    const auto st2 = box->stats();
    CHECK(st2.rows == 2);
    CHECK(st2.bytes == total - stored[0].payload.size());
    CHECK(st2.acked_batches_total == 1);
  }
  SECTION("acking everything empties the store") {
    REQUIRE(box->ack(3).has_value());
    REQUIRE(box->ack(2).has_value());
    const auto st2 = box->stats();
    CHECK(st2.rows == 0);
    CHECK(st2.bytes == 0);
    CHECK(st2.oldest_created_us == 0);
    CHECK(st2.acked_batches_total == 3);
    CHECK(readAll(*box).empty());
  }
}

TEST_CASE("Outbox survives a restart", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  const auto options = optionsFor(dir);
  uint64_t epoch = 0;

  SECTION("pending batches stay and seq continues") {
    std::vector<std::vector<uint8_t>> payloads;
    {
      auto box = openBox(options, clock);
      epoch = box->epoch();
      for (int i = 0; i < 3; ++i) {
        auto b = makeBatch(7);
        REQUIRE(box->append(b).has_value());
      }
      REQUIRE(box->ack(1).has_value());
      for (const auto& b : readAll(*box)) payloads.push_back(b.payload);
    }
    auto box = openBox(options, clock);
    CHECK(box->epoch() == epoch);
    auto stored = readAll(*box);
    CHECK(seqsOf(stored) == std::vector<uint64_t>{2, 3});
    REQUIRE(stored.size() == 2);
    CHECK(stored[0].payload == payloads[0]);
    CHECK(stored[1].payload == payloads[1]);
    CHECK(stored[0].readings == 7);
    const auto st = box->stats();
    CHECK(st.rows == 2);
    CHECK(st.bytes == payloads[0].size() + payloads[1].size());
    CHECK(st.oldest_created_us == kNow);

    auto b = makeBatch(7);
    auto seq = box->append(b);
    REQUIRE(seq.has_value());
    CHECK(*seq == 4);
    CHECK(b.epoch == epoch);
  }

  SECTION("seq never repeats even when every batch was acked") {
    {
      auto box = openBox(options, clock);
      epoch = box->epoch();
      for (int i = 0; i < 3; ++i) {
        auto b = makeBatch(7);
        REQUIRE(box->append(b).has_value());
      }
      for (uint64_t s = 1; s <= 3; ++s) REQUIRE(box->ack(s).has_value());
      CHECK(box->stats().rows == 0);
    }
    auto box = openBox(options, clock);
    CHECK(box->epoch() == epoch);
    CHECK(box->stats().rows == 0);
    CHECK(box->stats().bytes == 0);
    auto b = makeBatch(7);
    auto seq = box->append(b);
    REQUIRE(seq.has_value());
    CHECK(*seq == 4);
    CHECK(decode(readAll(*box).at(0).payload).seq == 4);
  }

  SECTION("several restarts in a row") {
    for (uint64_t round = 1; round <= 3; ++round) {
      auto box = openBox(options, clock);
      if (round == 1) epoch = box->epoch();
      CHECK(box->epoch() == epoch);
      auto b = makeBatch(2);
      auto seq = box->append(b);
      REQUIRE(seq.has_value());
      CHECK(*seq == round);
      REQUIRE(box->ack(*seq).has_value());
    }
  }
}

TEST_CASE("Outbox byte limit evicts the oldest batches and reports them", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  constexpr uint64_t kLimit = 65536;
  constexpr size_t kReadings = 400;  // 24 bytes each: a payload of ~10 KB
  const auto options = optionsFor(dir, kLimit);

  const uint64_t batch_bytes = codec::encodeBatch(makeBatch(kReadings)).size();
  REQUIRE(batch_bytes > 9000);
  const uint64_t fit = kLimit / batch_bytes;  // batches that fit
  REQUIRE(fit >= 3);

  auto box = openBox(options, clock);
  for (uint64_t i = 0; i < fit; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
    CHECK(b.dropped == 0);
  }
  auto st = box->stats();
  CHECK(st.rows == fit);
  CHECK(st.bytes == fit * batch_bytes);
  CHECK(st.dropped_readings_total == 0);
  CHECK(st.dropped_batches_total == 0);

  // One more does not fit: the oldest (seq 1) goes.
  auto over = makeBatch(kReadings);
  auto seq = box->append(over);
  REQUIRE(seq.has_value());
  CHECK(*seq == fit + 1);
  CHECK(over.dropped == kReadings);

  st = box->stats();
  CHECK(st.rows == fit);
  CHECK(st.bytes == fit * batch_bytes);
  CHECK(st.bytes <= kLimit);
  CHECK(st.dropped_readings_total == kReadings);
  CHECK(st.dropped_batches_total == 1);

  auto stored = readAll(*box);
  REQUIRE(stored.size() == fit);
  CHECK(stored.front().seq == 2);
  CHECK(stored.back().seq == fit + 1);
  // The batch stored after the eviction reports the evicted readings ...
  CHECK(decode(stored.back().payload).dropped == kReadings);
  CHECK(decode(stored.back().payload).seq == fit + 1);
  // ... and the batches before it reported nothing.
  CHECK(decode(stored.front().payload).dropped == 0);

  SECTION("the batch after that reports 0") {
    REQUIRE(box->ack(2).has_value());  // make room: no eviction this time
    auto next = makeBatch(kReadings);
    REQUIRE(box->append(next).has_value());
    CHECK(next.dropped == 0);
    CHECK(decode(readAll(*box).back().payload).dropped == 0);
    CHECK(box->stats().dropped_batches_total == 1);
    CHECK(box->stats().dropped_readings_total == kReadings);
  }

  SECTION("a batch that needs two evictions reports both") {
    auto big = makeBatch(2 * kReadings);
    REQUIRE(box->append(big).has_value());
    CHECK(big.dropped == 2 * kReadings);
    st = box->stats();
    CHECK(st.dropped_batches_total == 3);
    CHECK(st.dropped_readings_total == 3 * kReadings);
    CHECK(st.bytes <= kLimit);
    CHECK(readAll(*box).front().seq == 4);
  }

  SECTION("dropped totals survive a restart") {
    box.reset();
    box = openBox(options, clock);
    st = box->stats();
    CHECK(st.dropped_readings_total == kReadings);
    CHECK(st.dropped_batches_total == 1);
    CHECK(st.rows == fit);
    CHECK(st.bytes == fit * batch_bytes);
    // Already reported in the batch that evicted: nothing pending.
    REQUIRE(box->ack(2).has_value());
    auto next = makeBatch(kReadings);
    REQUIRE(box->append(next).has_value());
    CHECK(next.dropped == 0);
  }
}

TEST_CASE("Outbox reports pending dropped readings after a restart", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  const auto options = optionsFor(dir);
  {
    auto box = openBox(options, clock);
    box->addDropped(5);
    box->addDropped(6);
    CHECK(box->stats().dropped_readings_total == 11);
  }
  auto box = openBox(options, clock);
  CHECK(box->stats().dropped_readings_total == 11);
  auto b = makeBatch(3);
  REQUIRE(box->append(b).has_value());
  CHECK(b.dropped == 11);
  CHECK(decode(readAll(*box).back().payload).dropped == 11);
}

TEST_CASE("Outbox addDropped is reported in the next batch only", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto box = openBox(optionsFor(dir), clock);

  box->addDropped(17);
  CHECK(box->stats().dropped_readings_total == 17);
  auto first = makeBatch(4);
  REQUIRE(box->append(first).has_value());
  CHECK(first.dropped == 17);
  auto second = makeBatch(4);
  REQUIRE(box->append(second).has_value());
  CHECK(second.dropped == 0);

  auto stored = readAll(*box);
  REQUIRE(stored.size() == 2);
  CHECK(decode(stored[0].payload).dropped == 17);
  CHECK(decode(stored[1].payload).dropped == 0);

  // Nothing pending survives a restart once it has been reported.
  box.reset();
  box = openBox(optionsFor(dir), clock);
  auto third = makeBatch(4);
  REQUIRE(box->append(third).has_value());
  CHECK(third.dropped == 0);
}

TEST_CASE("Outbox refuses a batch larger than the whole limit", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  constexpr uint64_t kLimit = 65536;
  const auto options = optionsFor(dir, kLimit);
  auto box = openBox(options, clock);

  auto small = makeBatch(10);
  REQUIRE(box->append(small).has_value());
  const auto bytes_before = box->stats().bytes;

  auto huge = makeBatch(3000);  // ~72 KB
  REQUIRE(codec::encodeBatch(huge).size() > kLimit);
  auto r = box->append(huge);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code() == ErrorCode::kResourceExhausted);
  // kResourceExhausted is classified retriable, although the same batch can never fit.
  CHECK(r.error().retriable());

  auto st = box->stats();
  CHECK(st.rows == 1);  // nothing stored, nothing evicted
  CHECK(st.bytes == bytes_before);
  CHECK(st.dropped_readings_total == 3000);
  CHECK(st.dropped_batches_total == 0);
  CHECK(st.write_errors_total == 0);  // refused by policy, not a failed write
  CHECK(st.dropped_by_reason[static_cast<size_t>(outpost::agent::DropReason::kTooLarge)] == 3000);
  CHECK(st.accepted_batches_total == 1);
  CHECK(seqsOf(readAll(*box)) == std::vector<uint64_t>{1});

  SECTION("the refused readings are reported in the next batch, which gets the next seq") {
    auto next = makeBatch(10);
    auto seq = box->append(next);
    REQUIRE(seq.has_value());
    CHECK(*seq == 2);
    CHECK(next.dropped == 3000);
    CHECK(decode(readAll(*box).back().payload).dropped == 3000);
  }
  SECTION("the refused readings are still reported after a restart") {
    box.reset();
    box = openBox(options, clock);
    CHECK(box->stats().dropped_readings_total == 3000);
    auto next = makeBatch(10);
    auto seq = box->append(next);
    REQUIRE(seq.has_value());
    CHECK(*seq == 2);
    CHECK(next.dropped == 3000);
  }
}

// Regression: an evicted batch's own `dropped` count used to be lost with it, so the cloud never
// learned about the readings that batch was reporting.
TEST_CASE("Outbox eviction carries the evicted batch's dropped count forward", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  constexpr uint64_t kLimit = 65536;
  constexpr size_t kReadings = 400;
  auto box = openBox(optionsFor(dir, kLimit), clock);
  const uint64_t fit = kLimit / codec::encodeBatch(makeBatch(kReadings)).size();

  box->addDropped(9);
  for (uint64_t i = 0; i < fit; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
    CHECK(b.dropped == (i == 0 ? 9u : 0u));
  }
  // Evicts seq 1, which carried dropped = 9.
  auto over = makeBatch(kReadings);
  REQUIRE(box->append(over).has_value());
  CHECK(over.dropped == kReadings + 9);
  CHECK(decode(readAll(*box).back().payload).dropped == kReadings + 9);
  // The 9 were counted once, when they were dropped.
  CHECK(box->stats().dropped_readings_total == kReadings + 9);
  CHECK(box->stats().dropped_batches_total == 1);
}

TEST_CASE("Outbox moves a corrupt store aside and starts a new epoch", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  const auto options = optionsFor(dir);

  uint64_t old_epoch = 0;
  {
    auto box = openBox(options, clock);
    old_epoch = box->epoch();
    auto b = makeBatch(3);
    REQUIRE(box->append(b).has_value());
  }
  // Overwrite the store (and drop its WAL side files) with garbage.
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(options.path + suffix);
  {
    std::ofstream out(options.path, std::ios::binary | std::ios::trunc);
    const std::string garbage(8192, static_cast<char>(0xAB));
    out.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    REQUIRE(out.good());
  }

  clock.wall_us = kNow + 42 * kSecond;
  auto box = openBox(options, clock);
  CHECK(box->epoch() != 0);
  CHECK(box->epoch() != old_epoch);
  CHECK(box->stats().rows == 0);
  CHECK(readAll(*box).empty());

  const std::string aside = options.path + ".corrupt-" + std::to_string((kNow / kSecond) + 42);
  REQUIRE(fs::exists(aside));
  CHECK(fs::file_size(aside) == 8192);
  {
    std::ifstream in(aside, std::ios::binary);
    std::vector<char> bytes(8192);
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    CHECK(std::all_of(bytes.begin(), bytes.end(),
                      [](char c) { return static_cast<unsigned char>(c) == 0xAB; }));
  }

  // The fresh store works and starts at seq 1.
  auto b = makeBatch(3);
  auto seq = box->append(b);
  REQUIRE(seq.has_value());
  CHECK(*seq == 1);
  CHECK(b.epoch == box->epoch());

  // And reopening it keeps the new epoch.
  const uint64_t new_epoch = box->epoch();
  box.reset();
  box = openBox(options, clock);
  CHECK(box->epoch() == new_epoch);
  CHECK(box->stats().rows == 1);
}

TEST_CASE("Outbox synchronous option", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto options = optionsFor(dir);

  SECTION("normal works") {
    options.synchronous = "normal";
    auto box = openBox(options, clock);
    auto b = makeBatch(5);
    auto seq = box->append(b);
    REQUIRE(seq.has_value());
    CHECK(*seq == 1);
    auto stored = readAll(*box);
    REQUIRE(stored.size() == 1);
    requireSameReadings(decode(stored[0].payload).readings, b.readings);
    REQUIRE(box->ack(1).has_value());
    CHECK(box->stats().rows == 0);
  }
  SECTION("an unknown value is rejected") {
    for (const char* value : {"fast", "FULL", "", "off"}) {
      options.synchronous = value;
      auto box = Outbox::open(options, clock);
      REQUIRE_FALSE(box.has_value());
      CHECK(box.error().code() == ErrorCode::kInvalidArgument);
      CHECK_FALSE(box.error().retriable());
    }
    CHECK_FALSE(fs::exists(options.path));
  }
}

TEST_CASE("Outbox appendMany commits a group with consecutive seqs", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto options = optionsFor(dir);
  for (const char* sync : {"full", "normal"}) {
    DYNAMIC_SECTION("synchronous=" << sync) {
      options.synchronous = sync;
      auto box = openBox(options, clock);
      box->addDropped(4);
      std::vector<codec::BatchContent> group;
      for (size_t i = 0; i < 5; ++i) group.push_back(makeBatch(10 + i));
      auto out = box->appendMany(group);
      REQUIRE(out.has_value());
      CHECK(out->stored == 5);
      CHECK(out->consumed == 5);
      CHECK(out->stored_readings == 10 + 11 + 12 + 13 + 14);
      CHECK(out->dropped_readings == 0);
      CHECK_FALSE(out->blocked);
      auto stored = readAll(*box);
      CHECK(seqsOf(stored) == std::vector<uint64_t>{1, 2, 3, 4, 5});
      for (size_t i = 0; i < stored.size(); ++i) {
        const auto c = decode(stored[i].payload);
        CHECK(c.seq == i + 1);
        CHECK(c.epoch == box->epoch());
        // The pending drop is reported by the first batch of the group only.
        CHECK(c.dropped == (i == 0 ? 4u : 0u));
        requireSameReadings(c.readings, group[i].readings);
      }
      const auto st = box->stats();
      CHECK(st.rows == 5);
      CHECK(st.accepted_batches_total == 5);
      CHECK(st.accepted_readings_total == out->stored_readings);
      CHECK(st.last_seq == 5);

      SECTION("an empty group is a no-op") {
        std::vector<codec::BatchContent> none;
        auto r = box->appendMany(none);
        REQUIRE(r.has_value());
        CHECK(r->stored == 0);
        CHECK(box->stats().rows == 5);
      }
      SECTION("the group survives a restart and seq continues") {
        box.reset();
        box = openBox(options, clock);
        CHECK(box->stats().rows == 5);
        auto b = makeBatch(1);
        auto seq = box->append(b);
        REQUIRE(seq.has_value());
        CHECK(*seq == 6);
      }
    }
  }
}

TEST_CASE("Outbox ackMany deletes several batches at once", "[agent][outbox]") {
  TempDir dir;
  FakeClock clock;
  auto box = openBox(optionsFor(dir), clock);
  std::vector<codec::BatchContent> group;
  for (size_t i = 0; i < 6; ++i) group.push_back(makeBatch(3));
  REQUIRE(box->appendMany(group).has_value());
  const std::vector<uint64_t> acks{2, 4, 5, 99};
  REQUIRE(box->ackMany(acks).has_value());
  CHECK(seqsOf(readAll(*box)) == std::vector<uint64_t>{1, 3, 6});
  CHECK(box->stats().rows == 3);
  CHECK(box->stats().acked_batches_total == 3);
}

// Full policies, max age, grouped writes and disk-full recovery of the SQLite outbox.
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "support/temp_dir.h"

namespace codec = outpost::codec;
namespace fs = std::filesystem;
namespace wire = outpost::wire;
using outpost::agent::AppendOutcome;
using outpost::agent::DropReason;
using outpost::agent::FullPolicy;
using outpost::agent::Outbox;
using outpost::agent::OutboxOptions;

namespace {

constexpr int64_t kNow = 1'700'000'000'000'000;
constexpr int64_t kSecond = 1'000'000;

class FakeClock final : public outpost::Clock {
 public:
  int64_t wall_us = kNow;
  int64_t mono_us = 1'000;
  int64_t nowUs() const override { return wall_us; }
  int64_t monotonicUs() const override { return mono_us; }
};

codec::BatchContent makeBatch(size_t n, int64_t created_us = kNow, double first = 0) {
  codec::BatchContent b;
  b.device_id = "dev-01";
  b.created_us = created_us;
  b.sensors = {{1, "temp", "C"}};
  for (size_t i = 0; i < n; ++i) {
    b.readings.emplace_back(kNow + static_cast<int64_t>(i), first + static_cast<double>(i), 1,
                            wire::Quality::Good);
  }
  return b;
}

codec::BatchContent decode(const std::vector<uint8_t>& payload) {
  auto v = codec::verifyBatch(std::span<const uint8_t>(payload), codec::VerifyLimits{});
  REQUIRE(v.has_value());
  return codec::toContent(**v);
}

std::unique_ptr<Outbox> openBox(const OutboxOptions& o, const outpost::Clock& clock) {
  auto box = Outbox::open(o, clock);
  if (!box) FAIL("open failed: " << box.error().toString());
  return std::move(*box);
}

uint64_t dropped(const outpost::agent::OutboxStats& st, DropReason r) {
  return st.dropped_by_reason[static_cast<size_t>(r)];
}

constexpr uint64_t kLimit = 65536;
constexpr size_t kReadings = 400;  // ~10 KB per batch: 6 fit under kLimit

struct Fixture {
  outpost::testing::TempDir dir{"outpost-policy-test"};
  FakeClock clock;
  OutboxOptions options;
  uint64_t fit = 0;
  Fixture(FullPolicy policy, uint64_t limit = kLimit) {
    options.path = dir.file("outbox.db");
    options.max_bytes = limit;
    options.full_policy = policy;
    fit = limit / codec::encodeBatch(makeBatch(kReadings)).size();
  }
};

}  // namespace

TEST_CASE("Full policy names parse and round-trip", "[agent][outbox][policy]") {
  for (auto p : {FullPolicy::kDropOldest, FullPolicy::kDropNewest, FullPolicy::kBlock}) {
    auto parsed = outpost::agent::parseFullPolicy(outpost::agent::fullPolicyName(p));
    REQUIRE(parsed.has_value());
    CHECK(*parsed == p);
  }
  auto bad = outpost::agent::parseFullPolicy("drop_random");
  REQUIRE_FALSE(bad.has_value());
  CHECK_THAT(bad.error().message(), Catch::Contains("drop_oldest, drop_newest, block"));
}

TEST_CASE("drop_newest refuses new batches when full and reports them", "[agent][outbox][policy]") {
  Fixture f(FullPolicy::kDropNewest);
  auto box = openBox(f.options, f.clock);
  for (uint64_t i = 0; i < f.fit; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
  }
  std::vector<codec::BatchContent> group{makeBatch(kReadings), makeBatch(kReadings)};
  auto out = box->appendMany(group);
  REQUIRE(out.has_value());
  CHECK(out->stored == 0);
  CHECK(out->consumed == 2);
  CHECK(out->dropped_readings == 2 * kReadings);
  CHECK_FALSE(out->blocked);
  auto st = box->stats();
  CHECK(st.rows == f.fit);
  CHECK(st.dropped_batches_total == 0);  // nothing stored was evicted
  CHECK(dropped(st, DropReason::kOutboxFull) == 2 * kReadings);
  CHECK(st.dropped_readings_total == 2 * kReadings);
  // The oldest batches are untouched.
  auto stored = box->readAfter(0, 100);
  REQUIRE(stored.has_value());
  CHECK(stored->front().seq == 1);
  // Refused batches get no seq: the next stored batch takes the next one and reports the drop.
  REQUIRE(box->ack(1).has_value());
  auto next = makeBatch(kReadings);
  auto seq = box->append(next);
  REQUIRE(seq.has_value());
  CHECK(*seq == f.fit + 1);
  CHECK(next.dropped == 2 * kReadings);
  CHECK(decode(box->readAfter(f.fit, 1)->front().payload).dropped == 2 * kReadings);
}

TEST_CASE("block keeps the batches for the caller and stores them once there is room",
          "[agent][outbox][policy]") {
  Fixture f(FullPolicy::kBlock);
  auto box = openBox(f.options, f.clock);
  std::vector<codec::BatchContent> group;
  for (uint64_t i = 0; i < f.fit + 3; ++i) group.push_back(makeBatch(kReadings));
  auto out = box->appendMany(group);
  REQUIRE(out.has_value());
  CHECK(out->blocked);
  CHECK(out->stored == f.fit);
  CHECK(out->consumed == f.fit);  // the caller keeps group[fit..]
  auto st = box->stats();
  CHECK(st.dropped_readings_total == 0);  // blocking drops nothing
  CHECK(st.rows == f.fit);

  // Still full: nothing moves, nothing is counted.
  std::vector<codec::BatchContent> rest(group.begin() + static_cast<long>(f.fit), group.end());
  auto again = box->appendMany(rest);
  REQUIRE(again.has_value());
  CHECK(again->blocked);
  CHECK(again->consumed == 0);
  auto one = makeBatch(kReadings);
  auto r = box->append(one);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().code() == outpost::ErrorCode::kResourceExhausted);
  CHECK(box->stats().dropped_readings_total == 0);

  // Acks make room: the waiting batches go in, in order, with the next seqs.
  REQUIRE(box->ack(1).has_value());
  REQUIRE(box->ack(2).has_value());
  auto after = box->appendMany(rest);
  REQUIRE(after.has_value());
  CHECK(after->stored == 2);
  CHECK(after->blocked);
  CHECK(rest[0].seq == f.fit + 1);
  CHECK(rest[1].seq == f.fit + 2);
  CHECK(box->stats().dropped_readings_total == 0);
}

TEST_CASE("drop_oldest inside one group evicts and reports in order", "[agent][outbox][policy]") {
  Fixture f(FullPolicy::kDropOldest);
  auto box = openBox(f.options, f.clock);
  std::vector<codec::BatchContent> group;
  for (uint64_t i = 0; i < f.fit + 2; ++i) group.push_back(makeBatch(kReadings));
  auto out = box->appendMany(group);
  REQUIRE(out.has_value());
  CHECK(out->stored == f.fit + 2);
  const auto st = box->stats();
  CHECK(st.rows == f.fit);
  CHECK(st.dropped_batches_total == 2);
  CHECK(dropped(st, DropReason::kOutboxFull) == 2 * kReadings);
  // Each evicting batch reports the batch it evicted.
  CHECK(group[f.fit].dropped == kReadings);
  CHECK(group[f.fit + 1].dropped == kReadings);
  auto stored = box->readAfter(0, 100);
  REQUIRE(stored.has_value());
  CHECK(stored->front().seq == 3);
}

TEST_CASE("max_age drops old batches, counted and reported", "[agent][outbox][policy]") {
  Fixture f(FullPolicy::kDropOldest, 1ull << 30);
  f.options.max_age_s = 60;
  auto box = openBox(f.options, f.clock);
  for (int i = 0; i < 3; ++i) {
    auto b = makeBatch(10, kNow + i * 10 * kSecond);
    REQUIRE(box->append(b).has_value());
  }
  f.clock.wall_us = kNow + 75 * kSecond;  // batches 1 (t=0) and 2 (t=10) are older than 60 s
  auto expectExpired = [&] {
    auto st = box->stats();
    CHECK(dropped(st, DropReason::kMaxAge) == 20);
    CHECK(st.dropped_batches_total == 2);
    CHECK(st.oldest_created_us == kNow + 20 * kSecond);
    CHECK(box->readAfter(0, 10)->front().seq == 3);
  };
  SECTION("expire()") {
    auto n = box->expire();
    REQUIRE(n.has_value());
    CHECK(*n == 20);
    expectExpired();
    auto b = makeBatch(10, f.clock.wall_us);  // reported by the next batch
    REQUIRE(box->append(b).has_value());
    CHECK(b.dropped == 20);
  }
  SECTION("the next append") {
    auto b = makeBatch(10, f.clock.wall_us);
    REQUIRE(box->append(b).has_value());
    CHECK(b.dropped == 20);
    expectExpired();
  }
  SECTION("0 disables the age limit") {
    box->setLimits({1ull << 30, 0, FullPolicy::kDropOldest});
    f.clock.wall_us += 3600 * kSecond;
    CHECK(*box->expire() == 0);
    CHECK(box->stats().rows == 3);
  }
}

TEST_CASE("setLimits applies a lower byte limit at the next append", "[agent][outbox][policy]") {
  Fixture f(FullPolicy::kDropOldest, 1ull << 30);
  auto box = openBox(f.options, f.clock);
  for (uint64_t i = 0; i < 10; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
  }
  box->setLimits({kLimit, 0, FullPolicy::kDropOldest});
  CHECK(box->limits().max_bytes == kLimit);
  auto b = makeBatch(kReadings);
  REQUIRE(box->append(b).has_value());
  CHECK(box->stats().bytes <= kLimit);
  const uint64_t fit = kLimit / codec::encodeBatch(makeBatch(kReadings)).size();
  CHECK(box->stats().dropped_batches_total == 11 - fit);
}

// Disk full, for real: the store lives on a small tmpfs mounted in a private mount namespace of
// this test process (needs root, like the rest of the suite; CI runs as root).
namespace {

class SmallTmpfs {
 public:
  explicit SmallTmpfs(const std::string& dir, const char* size) : dir_(dir) {
    if (::unshare(CLONE_NEWNS) != 0) FAIL("unshare(CLONE_NEWNS): " << std::strerror(errno));
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      FAIL("make / private: " << std::strerror(errno));
    }
    const std::string opts = std::string("size=") + size;
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
      FAIL("mount tmpfs on " << dir << ": " << std::strerror(errno));
    }
  }
  ~SmallTmpfs() { ::umount2(dir_.c_str(), MNT_DETACH); }

 private:
  std::string dir_;
};

// Fills the file system with a ballast file, leaving about `leave` bytes free.
void writeBallast(const std::string& path, uint64_t leave) {
  const auto space = fs::space(fs::path(path).parent_path());
  const uint64_t n = space.available > leave ? space.available - leave : 0;
  std::ofstream out(path, std::ios::binary);
  const std::string chunk(4096, 'x');
  for (uint64_t w = 0; w + chunk.size() <= n; w += chunk.size()) out.write(chunk.data(), 4096);
}

}  // namespace

TEST_CASE("Disk full: the policy applies and writes recover when space returns",
          "[agent][outbox][policy][diskfull]") {
  outpost::testing::TempDir dir("outpost-diskfull-test");
  const std::string mnt = dir.file("mnt");
  fs::create_directory(mnt);
  SmallTmpfs tmpfs(mnt, "16m");
  FakeClock clock;
  OutboxOptions o;
  o.path = mnt + "/outbox.db";
  o.max_bytes = 1ull << 30;  // never the limit: the disk is
  const std::string ballast = mnt + "/ballast";

  SECTION("drop_newest: failed batches are counted, reported once writes succeed again") {
    o.full_policy = FullPolicy::kDropNewest;
    auto box = openBox(o, clock);
    writeBallast(ballast, 256 * 1024);
    uint64_t failed_readings = 0;
    int failures = 0, appended = 0;
    for (int i = 0; i < 200 && failures < 5; ++i) {
      auto b = makeBatch(kReadings);
      auto r = box->append(b);
      if (r) {
        ++appended;
      } else {
        CHECK(r.error().code() == outpost::ErrorCode::kIoError);
        failed_readings += kReadings;
        ++failures;
      }
    }
    REQUIRE(failures == 5);  // the disk did fill
    CHECK(appended > 0);
    auto st = box->stats();
    CHECK(dropped(st, DropReason::kWriteError) == failed_readings);
    CHECK(st.write_errors_total == 5);
    CHECK(st.rows == static_cast<uint64_t>(appended));

    fs::remove(ballast);  // space returns
    auto b = makeBatch(kReadings);
    auto seq = box->append(b);
    REQUIRE(seq.has_value());
    CHECK(*seq == static_cast<uint64_t>(appended) + 1);
    CHECK(b.dropped == failed_readings);
    st = box->stats();
    CHECK(st.recoveries_total == 1);
    // And the store is intact after a restart.
    box.reset();
    box = openBox(o, clock);
    CHECK(box->stats().rows == static_cast<uint64_t>(appended) + 1);
    CHECK(box->stats().dropped_readings_total == failed_readings);
  }

  SECTION("drop_oldest: the oldest batches make room, writes keep succeeding, then recover") {
    o.full_policy = FullPolicy::kDropOldest;
    auto box = openBox(o, clock);
    REQUIRE(fs::exists(o.path + "-reserve"));  // the room SQLite needs to evict on a full disk
    writeBallast(ballast, 2 << 20);
    int failures = 0;
    for (int i = 0; i < 600; ++i) {
      auto b = makeBatch(kReadings);
      if (!box->append(b)) ++failures;
    }
    auto st = box->stats();
    CHECK(st.dropped_batches_total > 0);  // evicted because the disk was full ...
    CHECK(st.bytes < o.max_bytes);        // ... not because of the byte limit
    CHECK(dropped(st, DropReason::kOutboxFull) == st.dropped_batches_total * kReadings);
    CHECK(failures <= 2);  // eviction keeps (nearly) every new batch
    CHECK(dropped(st, DropReason::kWriteError) == static_cast<uint64_t>(failures) * kReadings);
    CHECK(st.dropped_readings_total + st.rows * kReadings == 600 * kReadings);
    // Space returns: within 64 appends the outbox notices, takes its reserve again and stops
    // evicting.
    fs::remove(ballast);
    for (int i = 0; i < 64; ++i) {
      auto b = makeBatch(kReadings);
      REQUIRE(box->append(b).has_value());
    }
    CHECK(fs::exists(o.path + "-reserve"));
    const uint64_t evicted = box->stats().dropped_batches_total;
    for (int i = 0; i < 10; ++i) {
      auto b = makeBatch(kReadings);
      REQUIRE(box->append(b).has_value());
    }
    CHECK(box->stats().dropped_batches_total == evicted);
  }

  SECTION("block: nothing is counted, the caller retries until space returns") {
    o.full_policy = FullPolicy::kBlock;
    auto box = openBox(o, clock);
    writeBallast(ballast, 256 * 1024);
    std::vector<codec::BatchContent> waiting;
    for (int i = 0; i < 200 && waiting.empty(); ++i) {
      auto b = makeBatch(kReadings);
      if (!box->append(b)) waiting.push_back(std::move(b));
    }
    REQUIRE(waiting.size() == 1);
    CHECK(box->stats().dropped_readings_total == 0);
    CHECK_FALSE(box->appendMany(waiting).has_value());  // still full
    fs::remove(ballast);
    auto out = box->appendMany(waiting);
    REQUIRE(out.has_value());
    CHECK(out->stored == 1);
    CHECK(box->stats().dropped_readings_total == 0);
    CHECK(box->stats().recoveries_total == 1);
  }
}

// A disk smaller than the 5 MB reserve (issue 16's torture suite found this): the WAL used to grow
// until it filled the disk, after which not even the deletion of acknowledged batches could be
// written, and the outbox never drained. The reserve now shrinks to the file system and the WAL
// is kept within half of it.
TEST_CASE("Disk smaller than the reserve: acknowledged batches are still deleted",
          "[agent][outbox][policy][diskfull]") {
  outpost::testing::TempDir dir("outpost-tinydisk-test");
  const std::string mnt = dir.file("mnt");
  fs::create_directory(mnt);
  SmallTmpfs tmpfs(mnt, "400k");
  FakeClock clock;
  OutboxOptions o;
  o.path = mnt + "/outbox.db";
  o.max_bytes = 1ull << 30;  // never the limit: the disk is
  o.full_policy = FullPolicy::kDropNewest;  // no eviction: only acks can make room
  auto box = openBox(o, clock);
  CHECK(fs::file_size(o.path + "-reserve") < (5u << 20));  // shrunk to fit the small disk
  int failures = 0;
  for (int i = 0; i < 2000 && failures < 3; ++i) {
    auto b = makeBatch(kReadings);
    if (!box->append(b)) ++failures;
  }
  REQUIRE(failures == 3);  // the disk did fill
  const uint64_t stored = box->stats().rows;
  REQUIRE(stored > 0);
  // The uplink delivers everything: every acknowledged batch is deleted.
  std::vector<uint64_t> seqs;
  auto all = box->readAfter(0, 100000);
  REQUIRE(all.has_value());
  for (const auto& sb : *all) seqs.push_back(sb.seq);
  REQUIRE(seqs.size() == stored);
  for (size_t i = 0; i < seqs.size(); i += 8) {
    const size_t n = std::min<size_t>(8, seqs.size() - i);
    REQUIRE(box->ackMany(std::span<const uint64_t>(seqs.data() + i, n)).has_value());
  }
  CHECK(box->stats().rows == 0);
  // And new batches are stored again.
  for (int i = 0; i < 10; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
  }
}

// A store whose header is intact but whose pages are damaged (e.g. a torn write on a bad card):
// open() must not fail over and over (a crash loop under systemd); it moves the file aside.
TEST_CASE("A store with damaged pages is moved aside at open", "[agent][outbox][corrupt]") {
  outpost::testing::TempDir dir("outpost-corrupt-test");
  FakeClock clock;
  OutboxOptions o;
  o.path = dir.file("outbox.db");
  uint64_t old_epoch = 0;
  {
    auto box = openBox(o, clock);
    old_epoch = box->epoch();
    std::vector<codec::BatchContent> g;
    for (int i = 0; i < 50; ++i) g.push_back(makeBatch(kReadings));
    REQUIRE(box->appendMany(g).has_value());
  }
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(o.path + suffix);
  const auto size = fs::file_size(o.path);
  REQUIRE(size > 16 * 4096);
  {
    // Keep page 1 (header and schema), damage everything after it.
    std::fstream f(o.path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096);
    const std::string garbage(size - 4096, static_cast<char>(0x5A));
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    REQUIRE(f.good());
  }
  auto box = Outbox::open(o, clock);
  REQUIRE(box.has_value());
  CHECK((*box)->epoch() != old_epoch);
  CHECK((*box)->stats().rows == 0);
  bool aside = false;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    aside = aside || e.path().filename().string().starts_with("outbox.db.corrupt-");
  }
  CHECK(aside);
  auto b = makeBatch(3);
  REQUIRE((*box)->append(b).has_value());
}

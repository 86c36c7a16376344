// Salvage of a damaged outbox store: the waiting batches of a store that is unreadable at start-up
// are read back from the moved copy and counted as dropped (store_damaged), exactly where their
// pages survived; where nothing survived the store itself is counted. The agent starts every time.
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_salvage.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "support/faulty_vfs.h"
#include "support/temp_dir.h"

namespace codec = outpost::codec;
namespace fs = std::filesystem;
namespace wire = outpost::wire;
using outpost::agent::DropReason;
using outpost::agent::Outbox;
using outpost::agent::OutboxOptions;
using outpost::agent::SalvageLimits;
using outpost::agent::SalvageResult;
using outpost::agent::salvageStore;

namespace {

constexpr int64_t kNow = 1'700'000'000'000'000;
constexpr size_t kBatches = 40;
constexpr size_t kReadings = 300;  // ~5 KB per batch: each row spills into overflow pages
constexpr uint64_t kCarried = 5;   // dropped before the first batch: batch 1 reports it
constexpr uint64_t kPending = 7;   // dropped after the last batch: pending in meta

class FakeClock final : public outpost::Clock {
 public:
  int64_t nowUs() const override { return kNow; }
  int64_t monotonicUs() const override { return 1000; }
};

codec::BatchContent makeBatch(size_t n) {
  codec::BatchContent b;
  b.device_id = "dev-01";
  b.created_us = kNow;
  b.sensors = {{1, "temp", "C"}};
  for (size_t i = 0; i < n; ++i) {
    b.readings.emplace_back(kNow + static_cast<int64_t>(i), static_cast<double>(i) * 0.37, 1,
                            wire::Quality::Good);
  }
  return b;
}

std::unique_ptr<Outbox> openBox(const OutboxOptions& o, const outpost::Clock& clock) {
  auto box = Outbox::open(o, clock);
  if (!box) FAIL("open failed: " << box.error().toString());
  return std::move(*box);
}

// A store with kBatches waiting batches (seq 2 and 3 acknowledged, so the seqs have a gap),
// closed cleanly (the WAL checkpointed into the file). Returns the readings waiting.
uint64_t buildStore(const OutboxOptions& o, const outpost::Clock& clock) {
  auto box = openBox(o, clock);
  box->addDropped(kCarried);
  std::vector<codec::BatchContent> g;
  for (size_t i = 0; i < kBatches + 2; ++i) g.push_back(makeBatch(kReadings));
  REQUIRE(box->appendMany(g).has_value());
  const uint64_t acked[] = {2, 3};
  REQUIRE(box->ackMany(acked).has_value());
  box->addDropped(kPending);
  REQUIRE(box->stats().rows == kBatches);
  return kBatches * kReadings;
}

// The pages of one b-tree (table or index, with its overflow pages), from SQLite's dbstat.
std::vector<int64_t> pagesOf(const std::string& path, const char* name, const char* type = "%") {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  const char* q = "SELECT pageno FROM dbstat WHERE name = ?1 AND pagetype LIKE ?2 ORDER BY path";
  REQUIRE(sqlite3_prepare_v2(db, q, -1, &s, nullptr) == SQLITE_OK);
  sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, type, -1, SQLITE_STATIC);
  std::vector<int64_t> pages;
  while (sqlite3_step(s) == SQLITE_ROW) pages.push_back(sqlite3_column_int64(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(db);
  REQUIRE(!pages.empty());
  return pages;
}

void overwrite(const std::string& path, uint64_t offset, size_t n, char byte) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(offset));
  const std::string bytes(n, byte);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

void damagePages(const std::string& path, const std::vector<int64_t>& pages) {
  for (const int64_t p : pages) overwrite(path, static_cast<uint64_t>(p - 1) * 4096, 4096, 0x5A);
}

std::string asideOf(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.starts_with("outbox.db.corrupt-") && n.find("-wal") == std::string::npos &&
        n.find("-shm") == std::string::npos) {
      return e.path().string();
    }
  }
  return {};
}

uint64_t storeDamaged(const Outbox& box) {
  return box.stats().dropped_by_reason[static_cast<size_t>(DropReason::kStoreDamaged)];
}
uint64_t damagedStores(const Outbox& box, SalvageResult::Found f) {
  return box.stats().damaged_stores[static_cast<size_t>(f)];
}

// The first batch stored after the damage reports everything salvaged.
uint64_t firstDropped(Outbox& box) {
  auto b = makeBatch(3);
  auto seq = box.append(b);
  REQUIRE(seq.has_value());
  CHECK(*seq == 1);  // a fresh store
  return b.dropped;
}

}  // namespace

TEST_CASE("A damaged store's waiting batches are salvaged and counted",
          "[agent][outbox][salvage]") {
  outpost::testing::TempDir dir("outpost-salvage-test");
  FakeClock clock;
  OutboxOptions o;
  o.path = dir.file("outbox.db");
  const uint64_t waiting = buildStore(o, clock);
  REQUIRE(!fs::exists(o.path + "-wal"));  // checkpointed at close: every page in the file

  SECTION("table pages damaged, the covering index intact: exact readings") {
    damagePages(o.path, pagesOf(o.path, "batches"));
    auto box = openBox(o, clock);
    CHECK(storeDamaged(*box) == waiting);
    CHECK(damagedStores(*box, SalvageResult::Found::kComplete) == 1);
    // The carried `dropped` lived in the table: lost (logged), the pending count survived.
    CHECK(box->pendingDropped() == waiting + kPending);
    CHECK(firstDropped(*box) == waiting + kPending);
    const auto r = salvageStore(asideOf(dir.path().string()));
    CHECK(r.found == SalvageResult::Found::kComplete);
    CHECK(r.index_complete);
    CHECK_FALSE(r.table_complete);
    CHECK(r.batches == kBatches);
    CHECK(r.carried_unknown == kBatches);
    CHECK(r.seqs == "1,4-" + std::to_string(kBatches + 2));  // 2 and 3 were acknowledged
  }
  SECTION("index pages damaged, the table intact: exact readings and carried drops") {
    damagePages(o.path, pagesOf(o.path, "batches_sizes"));
    auto box = openBox(o, clock);
    CHECK(storeDamaged(*box) == waiting);
    CHECK(damagedStores(*box, SalvageResult::Found::kComplete) == 1);
    CHECK(firstDropped(*box) == waiting + kCarried + kPending);
    const auto r = salvageStore(asideOf(dir.path().string()));
    CHECK(r.table_complete);
    CHECK_FALSE(r.index_complete);
    CHECK(r.batches == kBatches);
    CHECK(r.carried == kCarried);
    CHECK(r.carried_unknown == 0);
    CHECK(r.pending == kPending);
  }
  SECTION("some table leaves and the index damaged: the readable rows, exactly, and 'partial'") {
    // The second half of the table's leaf pages (the interior page that leads to them intact),
    // and all of the index.
    const auto leaves = pagesOf(o.path, "batches", "leaf");
    REQUIRE(leaves.size() >= 4);
    damagePages(o.path, std::vector<int64_t>(leaves.begin() + leaves.size() / 2, leaves.end()));
    damagePages(o.path, pagesOf(o.path, "batches_sizes"));
    auto box = openBox(o, clock);
    const auto r = salvageStore(asideOf(dir.path().string()));
    CHECK(r.found == SalvageResult::Found::kPartial);
    CHECK(r.batches > 0);
    CHECK(r.batches < kBatches);
    // What was read back is exact: whole batches of kReadings each, and what was counted.
    CHECK(r.readings % kReadings == 0);
    CHECK(r.readings <= waiting);
    CHECK(storeDamaged(*box) == r.readings);
    CHECK(box->pendingDropped() == r.toReport());
    CHECK(damagedStores(*box, r.found) == 1);
  }
  SECTION("the meta table damaged: the epoch is read from a stored payload") {
    uint64_t epoch = 0;
    {
      auto probe = salvageStore(o.path);
      epoch = static_cast<uint64_t>(probe.epoch);
      REQUIRE(epoch != 0);
    }
    damagePages(o.path, pagesOf(o.path, "meta"));
    auto box = openBox(o, clock);
    CHECK(box->epoch() != epoch);
    CHECK(storeDamaged(*box) == waiting);
    const auto r = salvageStore(asideOf(dir.path().string()));
    CHECK(r.found == SalvageResult::Found::kComplete);
    CHECK(static_cast<uint64_t>(r.epoch) == epoch);
    CHECK_FALSE(r.pending_known);  // the pending count lived there: lost (logged)
    CHECK(firstDropped(*box) == waiting + kCarried);
  }
  SECTION("the header zeroed: nothing readable, the store itself is counted") {
    overwrite(o.path, 0, 100, 0);
    auto box = openBox(o, clock);
    CHECK(storeDamaged(*box) == 0);
    CHECK(damagedStores(*box, SalvageResult::Found::kNothing) == 1);
    CHECK(firstDropped(*box) == 0);
    const auto aside = asideOf(dir.path().string());
    REQUIRE(!aside.empty());
    const auto r = salvageStore(aside);
    CHECK(r.found == SalvageResult::Found::kNothing);
    CHECK(r.batches == 0);
    CHECK(!r.detail.empty());
    // The moved copy is evidence: the salvage never writes it.
    std::ifstream in(aside, std::ios::binary);
    std::vector<char> head(100);
    in.read(head.data(), 100);
    CHECK(std::all_of(head.begin(), head.end(), [](char c) { return c == 0; }));
  }
  SECTION("truncated inside the table: the agent starts and counts what it could read") {
    const auto table = pagesOf(o.path, "batches");
    const int64_t cut = table[table.size() / 2];
    fs::resize_file(o.path, static_cast<uintmax_t>(cut - 1) * 4096);
    auto box = Outbox::open(o, clock);
    REQUIRE(box.has_value());
    const uint64_t counted = storeDamaged(**box);
    // The rows before the cut are read back (a file shorter than its header is read to its end).
    CHECK(counted > 0);
    CHECK(counted % kReadings == 0);
    CHECK(counted <= waiting);
    auto b = makeBatch(3);
    REQUIRE((*box)->append(b).has_value());
    CHECK(b.dropped >= counted);
  }
  SECTION("the work is capped: a huge store stops at the row limit, 'partial'") {
    damagePages(o.path, pagesOf(o.path, "batches_sizes"));
    // Not opened by the Outbox: the salvage itself, with a limit below the waiting rows.
    SalvageLimits limits;
    limits.max_rows = 10;
    const auto r = salvageStore(o.path, limits);
    CHECK(r.capped);
    CHECK(r.found == SalvageResult::Found::kPartial);
    CHECK(r.batches == 10);
    CHECK(r.readings == 10 * kReadings);
  }
  SECTION("an implausible readings count is not counted: 'partial'") {
    {
      sqlite3* db = nullptr;
      REQUIRE(sqlite3_open(o.path.c_str(), &db) == SQLITE_OK);
      REQUIRE(sqlite3_exec(db, "UPDATE batches SET readings = 1000000000000 WHERE seq = 1", nullptr,
                           nullptr, nullptr) == SQLITE_OK);
      sqlite3_close(db);
    }
    REQUIRE(!fs::exists(o.path + "-wal"));
    damagePages(o.path, pagesOf(o.path, "batches"));
    auto box = openBox(o, clock);
    CHECK(storeDamaged(*box) == waiting - kReadings);
    CHECK(damagedStores(*box, SalvageResult::Found::kPartial) == 1);
  }
  SECTION("a missing file: nothing, no crash") {
    const auto r = salvageStore(dir.file("no-such.db"));
    CHECK(r.found == SalvageResult::Found::kNothing);
    CHECK(r.detail == "no such file");
  }
}

TEST_CASE("A store damaged again after a salvage keeps the count", "[agent][outbox][salvage]") {
  // The salvaged count is pending in the fresh store's meta until a batch reports it; a second
  // damage before that batch carries it on (the fresh store's pending count is salvaged in turn).
  outpost::testing::TempDir dir("outpost-salvage2-test");
  FakeClock clock;
  OutboxOptions o;
  o.path = dir.file("outbox.db");
  const uint64_t waiting = buildStore(o, clock);
  damagePages(o.path, pagesOf(o.path, "batches_sizes"));
  uint64_t pending = 0;
  {
    auto box = openBox(o, clock);
    pending = box->pendingDropped();
    CHECK(pending == waiting + kCarried + kPending);
  }
  REQUIRE(!fs::exists(o.path + "-wal"));
  // Damage the fresh store's index (it has none of its own rows, but its meta survives).
  fs::rename(asideOf(dir.path().string()), dir.file("first-aside.db"));
  damagePages(o.path, pagesOf(o.path, "batches_sizes"));
  auto box = openBox(o, clock);
  CHECK(box->pendingDropped() == pending);
  CHECK(firstDropped(*box) == pending);
}

// ---- Damage to the WAL alone (docs/reliability.md, "Damage to the WAL") -----------------------
// SQLite's recovery stops at the first WAL frame that fails and silently drops every commit after
// it; the agent reads the WAL itself before SQLite opens the store and treats such a log like a
// corrupt store (moved aside, a new epoch), so that a seq is never given out twice in an epoch.

using outpost::agent::checkWal;
using outpost::agent::WalCheck;

namespace {

constexpr size_t kWalBatches = 16;
constexpr uint64_t kFrameBytes = 24 + 4096;

uint32_t readBe32(const std::vector<char>& b, uint64_t at) {
  auto u = [&](uint64_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(b[i])); };
  return (u(at) << 24) | (u(at + 1) << 16) | (u(at + 2) << 8) | u(at + 3);
}

std::vector<char> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void spit(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

// The files of a store as a SIGKILL leaves them: copied while the store is open (the WAL not
// checkpointed, the -shm as the last writer left it).
void snapshot(const std::string& from, const std::string& to, bool with_shm = true) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    if (!with_shm && std::string(suffix) == "-shm") continue;
    fs::copy_file(from + suffix, to + suffix, fs::copy_options::overwrite_existing);
  }
}

// The 1-based numbers of the WAL's commit frames.
std::vector<uint64_t> commitFrames(const std::vector<char>& wal) {
  std::vector<uint64_t> commits;
  for (uint64_t i = 1; 32 + i * kFrameBytes <= wal.size(); ++i) {
    if (readBe32(wal, 32 + (i - 1) * kFrameBytes + 4) != 0) commits.push_back(i);
  }
  return commits;
}

uint64_t frameOffset(uint64_t frame) { return 32 + (frame - 1) * kFrameBytes; }

// A directory on /dev/shm where there is one: these tests create many small stores, and on a
// shared disk their fsyncs (synchronous = full), not the checks, took the time.
class ShmTempDir {
 public:
  explicit ShmTempDir(const std::string& prefix) {
    std::error_code ec;
    if (fs::is_directory("/dev/shm", ec)) {
      std::string tmpl = "/dev/shm/" + prefix + "-XXXXXX";
      if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
    }
    if (path_.empty()) {
      fallback_ = std::make_unique<outpost::testing::TempDir>(prefix);
      path_ = fallback_->path();
    }
  }
  ~ShmTempDir() {
    std::error_code ec;
    if (!fallback_) fs::remove_all(path_, ec);
  }
  ShmTempDir(const ShmTempDir&) = delete;
  ShmTempDir& operator=(const ShmTempDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::unique_ptr<outpost::testing::TempDir> fallback_;
  fs::path path_;
};

struct WalStore {
  uint64_t epoch = 0;
  uint64_t last_seq = 0;
};

// kWalBatches batches, one commit each, none acknowledged; the files as after a kill in `killed`.
WalStore buildWalStore(const std::string& live, const std::string& killed,
                       const outpost::Clock& clock) {
  OutboxOptions o;
  o.path = live;
  auto box = openBox(o, clock);
  for (size_t i = 0; i < kWalBatches; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
  }
  snapshot(live, killed);
  return {box->epoch(), box->stats().last_seq};
}

}  // namespace

TEST_CASE("A damaged WAL is taken for a damaged store, never for fewer commits",
          "[agent][outbox][salvage][wal]") {
  ShmTempDir dir("outpost-wal-test");
  FakeClock clock;
  const WalStore before = buildWalStore(dir.file("live.db"), dir.file("outbox.db"), clock);
  REQUIRE(before.last_seq == kWalBatches);
  OutboxOptions o;
  o.path = dir.file("outbox.db");
  const std::vector<char> wal = slurp(o.path + "-wal");
  const auto all_commits = commitFrames(wal);
  // No checkpoint: every batch's commit is in the WAL, after those of the store's creation.
  REQUIRE(all_commits.size() >= kWalBatches);
  const std::vector<uint64_t> commits(all_commits.end() - kWalBatches, all_commits.end());
  {
    const WalCheck clean = checkWal(o.path);
    CHECK_FALSE(clean.damaged);
    CHECK(clean.header_valid);
    CHECK(clean.recovered == commits.back());
    CHECK(clean.first_bad == 0);
    CHECK(clean.shm_committed == commits.back());
  }
  // The first frame of the 11th commit: batches 1..10 before it, the rest after.
  const uint64_t frame = commits[9] + 1;

  SECTION("a page damaged in the middle: moved aside, a new epoch, the batches after it counted") {
    std::vector<char> bad = wal;
    for (int i = 0; i < 40; ++i) bad[frameOffset(frame) + 24 + 1000 + i] ^= 0x5A;
    spit(o.path + "-wal", bad);
    const WalCheck c = checkWal(o.path);
    CHECK(c.damaged);
    CHECK(c.first_bad == frame);
    CHECK(c.recovered == commits[9]);
    CHECK(c.commits_after == kWalBatches - 10);
    auto box = openBox(o, clock);
    CHECK(box->epoch() != before.epoch);
    const auto aside = asideOf(dir.path().string());
    REQUIRE(!aside.empty());
    CHECK(fs::exists(aside + "-wal"));
    CHECK(slurp(aside + "-wal") == bad);  // kept as found, for the operator
    CHECK_FALSE(fs::exists(aside + ".walfix"));
    // Known-damaged content is read, so never "complete"; SQLite alone would have given back 10.
    CHECK(damagedStores(*box, SalvageResult::Found::kPartial) == 1);
    const uint64_t counted = storeDamaged(*box);
    CHECK(counted % kReadings == 0);
    CHECK(counted > 10 * kReadings);
    CHECK(counted <= kWalBatches * kReadings);
    CHECK(firstDropped(*box) == counted);  // reported in the fresh store's first batch (seq 1)
  }
  SECTION("only a frame's salts damaged: the content is proven, the salvage is complete") {
    std::vector<char> bad = wal;
    bad[frameOffset(frame) + 9] ^= 0x01;
    spit(o.path + "-wal", bad);
    CHECK(checkWal(o.path).damaged);
    auto box = openBox(o, clock);
    CHECK(box->epoch() != before.epoch);
    CHECK(damagedStores(*box, SalvageResult::Found::kComplete) == 1);
    CHECK(storeDamaged(*box) == kWalBatches * kReadings);
  }
  SECTION("the WAL header damaged: SQLite would ignore the whole log") {
    std::vector<char> bad = wal;
    bad[17] ^= 0x10;  // salt-1: the header checksum fails
    spit(o.path + "-wal", bad);
    const WalCheck c = checkWal(o.path);
    CHECK(c.damaged);
    CHECK_FALSE(c.header_valid);
    CHECK(c.commits_after == all_commits.size());
    auto box = openBox(o, clock);
    CHECK(box->epoch() != before.epoch);
    CHECK(damagedStores(*box, SalvageResult::Found::kComplete) == 1);
    CHECK(storeDamaged(*box) == kWalBatches * kReadings);
  }
  SECTION("the WAL cut short, the -shm of the last writer intact: damaged") {
    std::vector<char> cut(wal.begin(), wal.begin() + static_cast<long>(frameOffset(frame) + 100));
    spit(o.path + "-wal", cut);
    const WalCheck c = checkWal(o.path);
    CHECK(c.damaged);
    CHECK(c.shm_committed == commits.back());
    auto box = openBox(o, clock);
    CHECK(box->epoch() != before.epoch);
    CHECK(damagedStores(*box, SalvageResult::Found::kPartial) == 1);
    CHECK(storeDamaged(*box) == 10 * kReadings);  // what is left, and honestly "partial"
  }
  SECTION("a torn last commit (a kill while it was written) is not damage") {
    // The files after the next-to-last commit (its -shm says so), with half of the last written.
    const uint64_t end_prev = frameOffset(commits[kWalBatches - 2] + 1);
    const uint64_t torn = end_prev + (frameOffset(commits.back() + 1) - end_prev) / 2;
    std::vector<char> tail(wal.begin(), wal.begin() + static_cast<long>(torn));
    spit(o.path + "-wal", tail);
    {
      // The -shm as it was after commit 23: SQLite rebuilds it from the WAL cut there.
      const std::string probe = dir.file("probe.db");
      fs::copy_file(o.path, probe);
      spit(probe + "-wal",
           std::vector<char>(wal.begin(), wal.begin() + static_cast<long>(end_prev)));
      sqlite3* db = nullptr;
      REQUIRE(sqlite3_open(probe.c_str(), &db) == SQLITE_OK);
      sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
      REQUIRE(sqlite3_exec(db, "SELECT COUNT(*) FROM batches", nullptr, nullptr, nullptr) ==
              SQLITE_OK);
      fs::copy_file(probe + "-shm", o.path + "-shm", fs::copy_options::overwrite_existing);
      sqlite3_close(db);
    }
    const WalCheck c = checkWal(o.path);
    CHECK_FALSE(c.damaged);
    CHECK(c.shm_committed == commits[kWalBatches - 2]);
    auto box = openBox(o, clock);
    CHECK(box->epoch() == before.epoch);
    CHECK(box->stats().last_seq == kWalBatches - 1);  // the last seq was never committed
    CHECK(asideOf(dir.path().string()).empty());
  }
  SECTION("a short last frame without a -shm is an uncommitted tail, not damage") {
    std::vector<char> tail(wal.begin(), wal.end() - 1000);
    spit(o.path + "-wal", tail);
    fs::remove(o.path + "-shm");
    CHECK_FALSE(checkWal(o.path).damaged);
    auto box = openBox(o, clock);
    CHECK(box->epoch() == before.epoch);
    CHECK(asideOf(dir.path().string()).empty());
  }
}

TEST_CASE("Frames of an older WAL generation after the current ones are not damage",
          "[agent][outbox][salvage][wal]") {
  ShmTempDir dir("outpost-walgen-test");
  FakeClock clock;
  OutboxOptions o;
  o.path = dir.file("live.db");
  auto box = openBox(o, clock);
  for (size_t i = 0; i < 20; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
  }
  const uint64_t epoch = box->epoch();
  const auto old_wal = slurp(o.path + "-wal");
  // A second connection keeps the WAL when the store closes, then checkpoints every frame into
  // the database: the next writer restarts the log from frame 1 with new salts, over the old
  // frames (what wal_autocheckpoint does every 1000 pages).
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(o.path.c_str(), &db) == SQLITE_OK);
  // (a read makes it hold the database's shared lock, so the close below is not the last one)
  REQUIRE(sqlite3_exec(db, "SELECT COUNT(*) FROM meta", nullptr, nullptr, nullptr) == SQLITE_OK);
  box.reset();
  int log = -1, done = -1;
  REQUIRE(sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &done) ==
          SQLITE_OK);
  REQUIRE(log == done);
  box = openBox(o, clock);
  for (size_t i = 0; i < 3; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
  }
  const std::string killed = dir.file("outbox.db");
  snapshot(o.path, killed);
  box.reset();
  sqlite3_close(db);
  const auto wal = slurp(killed + "-wal");
  REQUIRE(wal.size() == old_wal.size());  // the old generation's frames are still there
  REQUIRE(!std::equal(wal.begin() + 16, wal.begin() + 24, old_wal.begin() + 16));  // new salts
  const WalCheck c = checkWal(killed);
  CHECK_FALSE(c.damaged);
  CHECK(c.first_bad > 0);  // recovery stops at the first frame of the old generation: normal
  CHECK(c.frames > c.recovered);
  o.path = killed;
  auto reopened = openBox(o, clock);
  CHECK(reopened->epoch() == epoch);
  CHECK(reopened->stats().last_seq == 23);
  CHECK(reopened->stats().rows == 23);
}

TEST_CASE("Random single-byte damage anywhere in the WAL never reuses a seq in an epoch",
          "[agent][outbox][salvage][wal]") {
  ShmTempDir dir("outpost-walfuzz-test");
  FakeClock clock;
  const std::string pristine = dir.file("pristine.db");
  const WalStore before = buildWalStore(dir.file("live.db"), pristine, clock);
  const std::vector<char> wal = slurp(pristine + "-wal");
  const std::string work = dir.file("work");
  fs::create_directory(work);
  OutboxOptions o;
  o.path = work + "/outbox.db";
  std::mt19937 rng(16804);
  size_t damaged = 0, intact = 0;
  for (int iter = 0; iter < 80; ++iter) {
    // Every part of the log: the header, frame headers, pages, the last commit frame.
    // The header; then each field of the last (commit) frame's header and its page, which only
    // the -shm's committed count tells from a torn commit; then random offsets.
    const uint64_t last = wal.size() - kFrameBytes;
    constexpr std::array<uint64_t, 8> kLastFrame{0, 4, 8, 12, 16, 20, 24, kFrameBytes - 1};
    std::uniform_int_distribution<uint64_t> anywhere(32, wal.size() - 1);
    const uint64_t at = iter < 32   ? static_cast<uint64_t>(iter)
                        : iter < 40 ? last + kLastFrame[static_cast<size_t>(iter - 32)]
                                    : anywhere(rng);
    for (const auto& e : fs::directory_iterator(work)) {
      if (!e.path().string().ends_with("-reserve")) fs::remove(e.path());  // keep the 5 MB file
    }
    snapshot(pristine, o.path);
    std::vector<char> bad = wal;
    bad[at] = static_cast<char>(bad[at] ^ std::uniform_int_distribution<int>(1, 255)(rng));
    spit(o.path + "-wal", bad);
    INFO("damaged byte at WAL offset " << at);
    auto box = Outbox::open(o, clock);
    REQUIRE(box.has_value());
    if ((*box)->epoch() == before.epoch) {
      // Same epoch: every committed batch is still there, so the next seq is a new one.
      CHECK((*box)->stats().last_seq == before.last_seq);
      ++intact;
    } else {
      CHECK((*box)->stats().last_seq == 0);
      CHECK(!asideOf(work).empty());
      ++damaged;
    }
  }
  // Every byte of this WAL is covered by a checksum and every frame is committed: each flip is
  // noticed.
  CHECK(damaged == 80);
  CHECK(intact == 0);
  // A log of random bytes (no evidence of anything: the -shm names other salts) and the same
  // bytes behind the real header: the agent starts every time.
  for (int iter = 0; iter < 8; ++iter) {
    for (const auto& e : fs::directory_iterator(work)) {
      if (!e.path().string().ends_with("-reserve")) fs::remove(e.path());
    }
    snapshot(pristine, o.path);
    std::vector<char> junk(std::uniform_int_distribution<size_t>(0, 3 * kFrameBytes)(rng));
    for (char& c : junk) c = static_cast<char>(rng());
    if (iter % 2 == 1) {
      if (junk.size() < 32) junk.resize(32);
      std::copy(wal.begin(), wal.begin() + 32, junk.begin());
    }
    spit(o.path + "-wal", junk);
    INFO("a WAL of " << junk.size() << " random bytes");
    CHECK(Outbox::open(o, clock).has_value());
  }
}

TEST_CASE("A failed fsync and a kill right after it are not a damaged WAL",
          "[agent][outbox][salvage][wal]") {
  // Found by the io-error-kill torture scenario: every store was moved aside (a new epoch, its
  // waiting batches counted as dropped though already sent) when the agent was killed while
  // fsyncs failed. The batches' transaction left its frames, commit frame included, in the WAL;
  // the shorter transaction writing the drop count went over their start and failed too, leaving
  // a checksum break followed by the batches' stale commit frame — after the last commit the
  // writer finished, per its -shm.
  ShmTempDir dir("outpost-walfsync-test");
  FakeClock clock;
  outpost::testing::FaultyVfs vfs;  // SQLite's default VFS while it exists: outlives the stores
  OutboxOptions o;
  o.path = dir.file("live.db");
  auto box = openBox(o, clock);
  for (size_t i = 0; i < 5; ++i) {
    auto b = makeBatch(kReadings);
    REQUIRE(box->append(b).has_value());
  }
  const uint64_t epoch = box->epoch();
  const uint64_t dropped_before = box->stats().dropped_readings_total;
  vfs.failSyncs(-1);
  std::vector<codec::BatchContent> g{makeBatch(kReadings), makeBatch(kReadings)};
  REQUIRE_FALSE(box->appendMany(g).has_value());  // tried twice, counted as dropped
  const std::string killed = dir.file("outbox.db");
  snapshot(o.path, killed);  // the kill: the WAL and -shm as the process left them
  vfs.failSyncs(0);
  box.reset();

  const WalCheck c = checkWal(killed);
  REQUIRE(c.shm_this_boot);
  CHECK(c.first_bad > c.shm_committed);  // a break after the last finished commit...
  CHECK(c.frames > c.first_bad);         // ...with stale frames after it
  CHECK(c.uncommitted_tail);
  CHECK_FALSE(c.damaged);
  o.path = killed;
  auto reopened = openBox(o, clock);
  CHECK(reopened->epoch() == epoch);
  CHECK(asideOf(dir.path().string()).empty());
  // SQLite may replay the last failed transaction: the batches (their drop count was only in
  // memory) or the drop count (the batches overwritten), never both, and no seq given twice.
  // (Here: the pending count, the first of the counters' separate writes.)
  const auto st = reopened->stats();  // a copy: append below changes it
  const uint64_t stored = st.rows - 5;
  const uint64_t counted = reopened->pendingDropped();
  CHECK(st.dropped_readings_total - dropped_before <= counted);
  CHECK((stored == 0 || counted == 0));
  CHECK(stored * kReadings + counted <= 2 * kReadings);
  CHECK(st.last_seq == st.rows);
  auto next = makeBatch(3);
  auto seq = reopened->append(next);
  REQUIRE(seq.has_value());
  CHECK(*seq == st.last_seq + 1);  // the next seq follows what is stored
}

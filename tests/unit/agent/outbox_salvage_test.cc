// Salvage of a damaged outbox store: the waiting batches of a store that is unreadable at start-up
// are read back from the moved copy and counted as dropped (store_damaged), exactly where their
// pages survived; where nothing survived the store itself is counted. The agent starts every time.
#include <sqlite3.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_salvage.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
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

#include "support/temp_dir.h"
#include "outpost/aggregator/dedup_store.h"

#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace agg = outpost::aggregator;
using agg::BatchKey;
using agg::DedupStore;
using agg::TopicPartition;
using State = DedupStore::State;

namespace {

class TempDir : public outpost::testing::TempDir {
 public:
  TempDir() : outpost::testing::TempDir("outpost-dedup-test") {}
};

std::unique_ptr<DedupStore> openStore(const std::string& path) {
  auto store = DedupStore::open(path);
  if (!store) FAIL("DedupStore::open(" << path << "): " << store.error().toString());
  REQUIRE(*store);
  return std::move(*store);
}

void requireFlush(DedupStore& store) {
  auto st = store.flush();
  if (!st) FAIL("flush: " << st.error().toString());
}

// Number of maximal runs of consecutive values in `s`.
uint64_t countRuns(const std::set<uint64_t>& s) {
  uint64_t runs = 0;
  uint64_t prev = 0;
  bool first = true;
  for (uint64_t v : s) {
    if (first || v != prev + 1) ++runs;
    prev = v;
    first = false;
  }
  return runs;
}

const TopicPartition kP0{"outpost.readings", 0};
const TopicPartition kP1{"outpost.readings", 1};
const TopicPartition kDead{"outpost.deadletter", 0};

int64_t checkpointOf(const DedupStore& store, const TopicPartition& tp) {
  const auto cps = store.checkpoints();
  auto it = cps.find(tp);
  if (it == cps.end()) FAIL("no checkpoint for " << tp.topic << "/" << tp.partition);
  return it->second;
}

bool hasCheckpoint(const DedupStore& store, const TopicPartition& tp) {
  return store.checkpoints().count(tp) != 0;
}

}  // namespace

TEST_CASE("DedupStore: begin/complete/abort state machine", "[aggregator][dedup]") {
  TempDir dir;
  auto store = openStore(dir.file("dedup.db"));
  const BatchKey key{"dev-01", 7, 42};

  SECTION("kNew, then kInProgress until complete, then kDone") {
    CHECK(store->begin(key) == State::kNew);
    CHECK(store->begin(key) == State::kInProgress);
    CHECK(store->begin(key) == State::kInProgress);
    CHECK_FALSE(store->isDone(key));
    CHECK(store->stats().in_progress == 1);
    store->complete(key, {});
    CHECK(store->isDone(key));
    CHECK(store->begin(key) == State::kDone);
    CHECK(store->begin(key) == State::kDone);
    CHECK(store->stats().in_progress == 0);
    CHECK(store->stats().intervals == 1);
  }

  SECTION("abort forgets the claim: the resend is kNew again") {
    CHECK(store->begin(key) == State::kNew);
    CHECK(store->begin(key) == State::kInProgress);
    store->abort(key, {});
    CHECK_FALSE(store->isDone(key));
    CHECK(store->stats().in_progress == 0);
    CHECK(store->begin(key) == State::kNew);
    CHECK(store->begin(key) == State::kInProgress);
    store->complete(key, {});
    CHECK(store->begin(key) == State::kDone);
  }

  SECTION("claims are per key: other seqs, epochs and devices are independent") {
    CHECK(store->begin(key) == State::kNew);
    CHECK(store->begin({"dev-01", 7, 43}) == State::kNew);
    CHECK(store->begin({"dev-01", 8, 42}) == State::kNew);
    CHECK(store->begin({"dev-02", 7, 42}) == State::kNew);
    CHECK(store->stats().in_progress == 4);
    store->complete(key, {});
    CHECK(store->begin(key) == State::kDone);
    CHECK(store->begin({"dev-01", 7, 43}) == State::kInProgress);
    CHECK(store->begin({"dev-01", 8, 42}) == State::kInProgress);
    CHECK(store->begin({"dev-02", 7, 42}) == State::kInProgress);
    CHECK_FALSE(store->isDone({"dev-01", 8, 42}));
    CHECK_FALSE(store->isDone({"dev-02", 7, 42}));
  }

  SECTION("markDone works without begin") {
    store->markDone(key);
    CHECK(store->isDone(key));
    CHECK(store->begin(key) == State::kDone);
    CHECK(store->stats().in_progress == 0);
    // Idempotent.
    store->markDone(key);
    CHECK(store->stats().intervals == 1);
  }

  SECTION("markDone of a batch in progress makes later begins kDone") {
    CHECK(store->begin(key) == State::kNew);
    store->markDone(key);
    CHECK(store->begin(key) == State::kDone);
    store->complete(key, {});
    CHECK(store->begin(key) == State::kDone);
    CHECK(store->stats().in_progress == 0);
  }

  SECTION("a fresh store knows nothing") {
    CHECK_FALSE(store->isDone(key));
    CHECK(store->stats().intervals == 0);
    CHECK(store->stats().in_progress == 0);
    CHECK(store->checkpoints().empty());
  }
}

TEST_CASE("DedupStore: completed seqs merge into maximal intervals", "[aggregator][dedup]") {
  TempDir dir;
  auto store = openStore(dir.file("dedup.db"));

  SECTION("scrambled completion of 1..1000 with gaps") {
    std::set<uint64_t> done;
    for (uint64_t s = 1; s <= 1000; ++s) {
      if (s % 97 == 0) continue;               // isolated gaps
      if (s >= 500 && s <= 510) continue;      // a longer gap
      if (s == 2 || s == 999) continue;        // gaps next to the ends
      done.insert(s);
    }
    std::mt19937_64 rng(20240611);
    // A few random extra gaps.
    for (int i = 0; i < 25; ++i) done.erase(1 + rng() % 1000);
    std::vector<uint64_t> order(done.begin(), done.end());
    std::shuffle(order.begin(), order.end(), rng);

    std::set<uint64_t> so_far;
    for (size_t i = 0; i < order.size(); ++i) {
      const BatchKey k{"dev-a", 1, order[i]};
      // Alternate the two ways a batch becomes done.
      if (i % 3 == 0) {
        store->markDone(k);
      } else {
        REQUIRE(store->begin(k) == State::kNew);
        store->complete(k, {});
      }
      so_far.insert(order[i]);
      // The interval count is the number of maximal runs after every single insertion.
      REQUIRE(store->stats().intervals == countRuns(so_far));
    }
    for (uint64_t s = 0; s <= 1002; ++s) {
      INFO("seq " << s);
      CHECK(store->isDone({"dev-a", 1, s}) == (done.count(s) == 1));
    }
    CHECK(store->stats().intervals == countRuns(done));
    CHECK(store->stats().in_progress == 0);
    // Re-completing everything changes nothing.
    for (uint64_t s : order) store->markDone({"dev-a", 1, s});
    CHECK(store->stats().intervals == countRuns(done));
    // Filling every gap leaves one interval.
    for (uint64_t s = 1; s <= 1000; ++s) store->markDone({"dev-a", 1, s});
    CHECK(store->stats().intervals == 1);
    CHECK_FALSE(store->isDone({"dev-a", 1, 0}));
    CHECK_FALSE(store->isDone({"dev-a", 1, 1001}));
  }

  SECTION("merging a seq between two intervals, and next to each end") {
    for (uint64_t s : {10, 11, 13, 14}) store->markDone({"d", 1, s});
    CHECK(store->stats().intervals == 2);
    store->markDone({"d", 1, 12});
    CHECK(store->stats().intervals == 1);
    store->markDone({"d", 1, 9});
    store->markDone({"d", 1, 15});
    CHECK(store->stats().intervals == 1);
    for (uint64_t s = 9; s <= 15; ++s) CHECK(store->isDone({"d", 1, s}));
    CHECK_FALSE(store->isDone({"d", 1, 8}));
    CHECK_FALSE(store->isDone({"d", 1, 16}));
  }

  SECTION("seqs at the ends of the 64-bit range") {
    constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
    store->markDone({"d", 1, kMax});
    store->markDone({"d", 1, 0});
    CHECK(store->stats().intervals == 2);
    store->markDone({"d", 1, kMax - 1});
    store->markDone({"d", 1, 1});
    CHECK(store->stats().intervals == 2);
    CHECK(store->isDone({"d", 1, kMax}));
    CHECK(store->isDone({"d", 1, kMax - 1}));
    CHECK_FALSE(store->isDone({"d", 1, kMax - 2}));
    CHECK(store->isDone({"d", 1, 0}));
    CHECK(store->isDone({"d", 1, 1}));
    CHECK_FALSE(store->isDone({"d", 1, 2}));
  }

  SECTION("streams are separate: same seqs in two epochs and two devices") {
    for (uint64_t s = 1; s <= 10; ++s) store->markDone({"dev-a", 1, s});
    for (uint64_t s = 1; s <= 10; s += 2) store->markDone({"dev-a", 2, s});
    CHECK(store->stats().intervals == 1 + 5);
    for (uint64_t s = 1; s <= 10; ++s) {
      CHECK(store->isDone({"dev-a", 1, s}));
      CHECK(store->isDone({"dev-a", 2, s}) == (s % 2 == 1));
      CHECK_FALSE(store->isDone({"dev-b", 1, s}));
      CHECK_FALSE(store->isDone({"dev-a", 3, s}));
    }
  }
}

TEST_CASE("DedupStore: completed batches survive a restart", "[aggregator][dedup]") {
  TempDir dir;
  const std::string path = dir.file("dedup.db");
  constexpr uint64_t kBigEpoch = (uint64_t{1} << 63) + 5;  // does not fit in int64
  constexpr uint64_t kMaxSeq = std::numeric_limits<uint64_t>::max();

  std::vector<BatchKey> probes;
  for (const std::string dev : {"dev-a", "dev-b", "dev.c_1"}) {
    for (uint64_t epoch : {uint64_t{1}, uint64_t{2}, kBigEpoch}) {
      for (uint64_t s = 0; s <= 40; ++s) probes.push_back({dev, epoch, s});
      probes.push_back({dev, epoch, kMaxSeq});
      probes.push_back({dev, epoch, kMaxSeq - 1});
    }
  }
  probes.push_back({"dev-unknown", 1, 1});

  std::mt19937_64 rng(7);
  std::set<BatchKey> expected;
  {
    auto store = openStore(path);
    for (const auto& k : probes) {
      if (k.device == "dev-unknown") continue;
      if (rng() % 3 == 0) continue;
      if (rng() % 2) {
        REQUIRE(store->begin(k) == State::kNew);
        store->complete(k, {});
      } else {
        store->markDone(k);
      }
      expected.insert(k);
    }
    // Same device, epoch 2 has an entry epoch 1 does not, and vice versa.
    store->markDone({"dev-a", 1, 1000});
    store->markDone({"dev-a", 2, 2000});
    expected.insert({"dev-a", 1, 1000});
    expected.insert({"dev-a", 2, 2000});
    probes.push_back({"dev-a", 1, 2000});
    probes.push_back({"dev-a", 2, 1000});
    probes.push_back({"dev-a", 1, 1000});
    probes.push_back({"dev-a", 2, 2000});
    // A batch still in progress at shutdown is not done after the restart.
    REQUIRE(store->begin({"dev-b", 1, 5000}) == State::kNew);
    probes.push_back({"dev-b", 1, 5000});
    for (const auto& k : probes) REQUIRE(store->isDone(k) == (expected.count(k) == 1));
    requireFlush(*store);
  }
  const auto expectedRuns = [&] {
    std::map<std::pair<std::string, uint64_t>, std::set<uint64_t>> streams;
    for (const auto& k : expected) streams[{k.device, k.epoch}].insert(k.seq);
    uint64_t runs = 0;
    for (const auto& [stream, seqs] : streams) runs += countRuns(seqs);
    return runs;
  };
  const auto check = [&](DedupStore& store) {
    for (const auto& k : probes) {
      INFO(k.device << "/" << k.epoch << "/" << k.seq);
      CHECK(store.isDone(k) == (expected.count(k) == 1));
      CHECK(store.begin(k) == (expected.count(k) ? State::kDone : State::kNew));
    }
    CHECK(store.stats().intervals == expectedRuns());
  };

  SECTION("flush, destroy, reopen: the same answers") {
    auto store = openStore(path);
    CHECK(store->stats().in_progress == 0);
    check(*store);
  }

  SECTION("changes after a reopen merge with what was loaded, and persist") {
    {
      auto store = openStore(path);
      // Fill dev-a/1 0..40 and dev-b/2 0..40 completely: their intervals merge.
      for (uint64_t s = 0; s <= 40; ++s) {
        store->markDone({"dev-a", 1, s});
        store->markDone({"dev-b", 2, s});
        expected.insert({"dev-a", 1, s});
        expected.insert({"dev-b", 2, s});
      }
      store->markDone({"dev-new", 9, 1});
      expected.insert({"dev-new", 9, 1});
      probes.push_back({"dev-new", 9, 1});
      probes.push_back({"dev-new", 9, 2});
      CHECK(store->stats().intervals == expectedRuns());
      requireFlush(*store);
    }
    auto store = openStore(path);
    check(*store);
  }

  SECTION("a second restart without changes keeps everything") {
    { auto store = openStore(path); }
    { auto store = openStore(path); requireFlush(*store); }
    auto store = openStore(path);
    check(*store);
  }
}

TEST_CASE("DedupStore: destruction without an explicit flush persists", "[aggregator][dedup]") {
  TempDir dir;
  const std::string path = dir.file("dedup.db");
  {
    auto store = openStore(path);
    store->markDone({"dev", 3, 9});
    store->delivered(kP0, 4);
    REQUIRE(store->begin({"dev", 3, 10}) == State::kNew);
    store->complete({"dev", 3, 10}, {{kP0, 4}});
  }
  auto store = openStore(path);
  CHECK(store->isDone({"dev", 3, 9}));
  CHECK(store->isDone({"dev", 3, 10}));
  CHECK_FALSE(store->isDone({"dev", 3, 11}));
  CHECK(checkpointOf(*store, kP0) == 4);
}

TEST_CASE("DedupStore: a flush with nothing new is harmless", "[aggregator][dedup]") {
  TempDir dir;
  const std::string path = dir.file("dedup.db");
  auto store = openStore(path);
  requireFlush(*store);
  store->markDone({"dev", 1, 1});
  requireFlush(*store);
  requireFlush(*store);
  store->markDone({"dev", 1, 2});
  requireFlush(*store);
  store.reset();
  store = openStore(path);
  CHECK(store->isDone({"dev", 1, 1}));
  CHECK(store->isDone({"dev", 1, 2}));
  CHECK(store->stats().intervals == 1);
}

TEST_CASE("DedupStore: per-partition checkpoints", "[aggregator][dedup]") {
  TempDir dir;
  const std::string path = dir.file("dedup.db");
  auto store = openStore(path);
  const BatchKey a{"dev-a", 1, 1};
  const BatchKey b{"dev-b", 1, 1};
  const BatchKey c{"dev-c", 1, 1};

  SECTION("delivered + complete advance the checkpoint") {
    REQUIRE(store->begin(a) == State::kNew);
    store->delivered(kP0, 0);
    CHECK_FALSE(hasCheckpoint(*store, kP0));  // delivered alone records nothing
    store->complete(a, {{kP0, 0}});
    CHECK(checkpointOf(*store, kP0) == 0);
    REQUIRE(store->begin(b) == State::kNew);
    for (int64_t off : {1, 2, 3}) store->delivered(kP0, off);
    store->complete(b, {{kP0, 1}, {kP0, 2}, {kP0, 3}});
    CHECK(checkpointOf(*store, kP0) == 3);
    CHECK_FALSE(hasCheckpoint(*store, kP1));
  }

  SECTION("an open batch holds the checkpoint below its lowest delivered offset") {
    REQUIRE(store->begin(a) == State::kNew);
    REQUIRE(store->begin(b) == State::kNew);
    store->delivered(kP0, 10);
    store->delivered(kP0, 11);
    store->delivered(kP0, 12);
    store->complete(b, {{kP0, 12}});
    CHECK(store->isDone(b));
    CHECK(checkpointOf(*store, kP0) == 9);
    requireFlush(*store);  // writing it does not release the hold
    CHECK(checkpointOf(*store, kP0) == 9);
    store->complete(a, {{kP0, 10}, {kP0, 11}});
    CHECK(checkpointOf(*store, kP0) == 12);
  }

  SECTION("the hold is per partition") {
    REQUIRE(store->begin(a) == State::kNew);
    REQUIRE(store->begin(b) == State::kNew);
    store->delivered(kP0, 10);           // a, part 1 on partition 0 (open)
    store->delivered(kP1, 20);           // b on partition 1
    store->complete(b, {{kP1, 20}});
    CHECK(checkpointOf(*store, kP1) == 20);
    CHECK_FALSE(hasCheckpoint(*store, kP0));
    store->delivered(kP1, 21);           // a, part 2 on partition 1
    store->complete(a, {{kP0, 10}, {kP1, 21}});
    CHECK(checkpointOf(*store, kP0) == 10);
    CHECK(checkpointOf(*store, kP1) == 21);
  }

  SECTION("abort with delivered parts releases the hold") {
    REQUIRE(store->begin(a) == State::kNew);
    REQUIRE(store->begin(b) == State::kNew);
    store->delivered(kP0, 10);
    store->delivered(kP0, 11);
    store->delivered(kP0, 12);
    store->complete(b, {{kP0, 12}});
    CHECK(checkpointOf(*store, kP0) == 9);
    store->abort(a, {{kP0, 10}, {kP0, 11}});
    CHECK(checkpointOf(*store, kP0) == 12);
    CHECK_FALSE(store->isDone(a));
    // The resend of `a` is produced again.
    CHECK(store->begin(a) == State::kNew);
    store->delivered(kP0, 13);
    store->complete(a, {{kP0, 13}});
    CHECK(store->isDone(a));
    CHECK(checkpointOf(*store, kP0) == 13);
  }

  SECTION("two open batches: the checkpoint follows the lowest one still open") {
    REQUIRE(store->begin(a) == State::kNew);
    REQUIRE(store->begin(b) == State::kNew);
    REQUIRE(store->begin(c) == State::kNew);
    store->delivered(kP0, 5);   // a
    store->delivered(kP0, 6);   // b
    store->delivered(kP0, 7);   // c
    store->complete(c, {{kP0, 7}});
    CHECK(checkpointOf(*store, kP0) == 4);
    store->complete(a, {{kP0, 5}});
    CHECK(checkpointOf(*store, kP0) == 5);
    store->complete(b, {{kP0, 6}});
    CHECK(checkpointOf(*store, kP0) == 7);
  }

  SECTION("the checkpoint never moves backwards") {
    REQUIRE(store->begin(a) == State::kNew);
    store->delivered(kP0, 100);
    store->complete(a, {{kP0, 100}});
    CHECK(checkpointOf(*store, kP0) == 100);
    // A later batch opened at 101 and another completing: the candidate (100) is not below.
    REQUIRE(store->begin(b) == State::kNew);
    REQUIRE(store->begin(c) == State::kNew);
    store->delivered(kP0, 101);
    store->delivered(kP0, 102);
    store->complete(c, {{kP0, 102}});
    CHECK(checkpointOf(*store, kP0) == 100);
    store->complete(b, {{kP0, 101}});
    CHECK(checkpointOf(*store, kP0) == 102);
  }

  SECTION("checkpoints survive a restart") {
    REQUIRE(store->begin(a) == State::kNew);
    REQUIRE(store->begin(b) == State::kNew);
    store->delivered(kP0, 40);
    store->complete(a, {{kP0, 40}});
    store->delivered(kP1, 7);
    store->delivered(kDead, 3);
    store->complete(b, {{kP1, 7}, {kDead, 3}});
    // An open batch holding partition 1 back at the time of the flush.
    REQUIRE(store->begin(c) == State::kNew);
    store->delivered(kP1, 8);
    REQUIRE(store->begin({"dev-d", 1, 1}) == State::kNew);
    store->delivered(kP1, 9);
    store->complete({"dev-d", 1, 1}, {{kP1, 9}});
    const std::map<TopicPartition, int64_t> want = {{kP0, 40}, {kP1, 7}, {kDead, 3}};
    CHECK(store->checkpoints() == want);
    requireFlush(*store);
    store.reset();
    store = openStore(path);
    CHECK(store->checkpoints() == want);
    CHECK(store->isDone(a));
    CHECK(store->isDone(b));
    CHECK_FALSE(store->isDone(c));  // it was open
    CHECK(store->isDone({"dev-d", 1, 1}));
    // Progress after the restart is persisted too (and only ever upwards).
    CHECK(store->begin(c) == State::kNew);
    store->delivered(kP1, 10);
    store->complete(c, {{kP1, 10}});
    CHECK(checkpointOf(*store, kP1) == 10);
    requireFlush(*store);
    store.reset();
    store = openStore(path);
    CHECK(checkpointOf(*store, kP1) == 10);
    CHECK(checkpointOf(*store, kP0) == 40);
  }
}

TEST_CASE("DedupStore: concurrent begin on one key yields exactly one kNew",
          "[aggregator][dedup]") {
  TempDir dir;
  auto store = openStore(dir.file("dedup.db"));
  constexpr int kThreads = 4;
  constexpr uint64_t kKeys = 300;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::vector<State>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      for (uint64_t s = 1; s <= kKeys; ++s) results[t].push_back(store->begin({"dev", 1, s}));
    });
  }
  while (ready.load() < kThreads) std::this_thread::yield();
  go.store(true);
  for (auto& th : threads) th.join();

  for (uint64_t s = 1; s <= kKeys; ++s) {
    int news = 0, in_progress = 0;
    for (int t = 0; t < kThreads; ++t) {
      const State st = results[t][s - 1];
      news += st == State::kNew;
      in_progress += st == State::kInProgress;
    }
    INFO("seq " << s);
    CHECK(news == 1);
    CHECK(in_progress == kThreads - 1);
  }
  CHECK(store->stats().in_progress == kKeys);
}

// Regression: begin() used to check isDone() and claim the key under two separate locks, so a
// complete() landing in between (delivery thread vs. the worker handling a resend) made the resend
// kNew again and it was produced twice.
TEST_CASE("DedupStore: begin racing with complete never yields a second kNew",
          "[aggregator][dedup]") {
  TempDir dir;
  auto store = openStore(dir.file("dedup.db"));
  constexpr int kBeginners = 3;
  constexpr uint64_t kKeys = 2000;
  for (uint64_t s = 1; s <= kKeys; ++s) REQUIRE(store->begin({"dev", 1, s}) == State::kNew);

  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<uint64_t> second_new{0};
  std::atomic<uint64_t> completed_upto{0};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    ready.fetch_add(1);
    while (!go.load()) std::this_thread::yield();
    for (uint64_t s = 1; s <= kKeys; ++s) {
      store->complete({"dev", 1, s}, {});
      completed_upto.store(s);
    }
  });
  for (int t = 0; t < kBeginners; ++t) {
    threads.emplace_back([&] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      for (uint64_t s = 1; s <= kKeys; ++s) {
        // Hammer this key until its completion is visible.
        for (;;) {
          const bool was_completed = completed_upto.load() >= s;
          const State st = store->begin({"dev", 1, s});
          if (st == State::kNew) second_new.fetch_add(1);
          if (st == State::kDone || st == State::kNew || was_completed) break;
        }
      }
    });
  }
  while (ready.load() < kBeginners + 1) std::this_thread::yield();
  go.store(true);
  for (auto& th : threads) th.join();

  CHECK(second_new.load() == 0);
  CHECK(store->stats().in_progress == 0);
  for (uint64_t s = 1; s <= kKeys; ++s) REQUIRE(store->begin({"dev", 1, s}) == State::kDone);
}

#include "outpost/aggregator/dedup_store.h"

#include <spdlog/spdlog.h>

#include "dedup_sql.h"
#include "seq_intervals.h"
#include "outpost/common/sqlite.h"

namespace outpost::aggregator {

using sqlite::Stmt;

Result<std::unique_ptr<DedupStore>> DedupStore::open(const std::string& path) {
  auto opened = sqlite::open(path, "dedup store");
  if (!opened) return std::unexpected(opened.error());
  sqlite3* db = *opened;
  std::unique_ptr<DedupStore> store(new DedupStore(db));
  // NORMAL in WAL mode: a process crash loses nothing; a power loss may lose the last flushes,
  // which the Kafka tail scan at start-up recovers.
  if (auto st = sqlite::exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                             "dedup store");
      !st) {
    return std::unexpected(st.error());
  }
  if (auto st = sqlite::exec(db, sql::kSchema, "dedup store schema"); !st) {
    return std::unexpected(st.error());
  }
  if (auto st = store->load(); !st) return std::unexpected(st.error());
  return store;
}

DedupStore::~DedupStore() {
  (void)flush();
  sqlite3_close_v2(db_);
}

Status DedupStore::load() {
  MutexLock lock(mu_);
  Stmt r(db_, sql::kLoadRanges);
  if (!r.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "dedup: load");
  int rc;
  size_t n = 0;
  while ((rc = r.step()) == SQLITE_ROW) {
    done_[{r.text(0), static_cast<uint64_t>(r.col(1))}][static_cast<uint64_t>(r.col(2))] =
        static_cast<uint64_t>(r.col(3));
    ++n;
  }
  if (rc != SQLITE_DONE) return sqlite::failure(db_, rc, "dedup: load");
  Stmt o(db_, sql::kLoadOffsets);
  if (!o.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "dedup: load offsets");
  while ((rc = o.step()) == SQLITE_ROW) {
    offsets_[{o.text(0), static_cast<int32_t>(o.col(1))}] = o.col(2);
  }
  if (rc != SQLITE_DONE) return sqlite::failure(db_, rc, "dedup: load offsets");
  spdlog::info("dedup store: {} streams, {} ranges, {} partition checkpoints", done_.size(), n,
               offsets_.size());
  return {};
}

void DedupStore::addDone(const BatchKey& key) {
  const Stream stream{key.device, key.epoch};
  if (intervalsAdd(done_[stream], key.seq)) dirty_.insert(stream);
}

bool DedupStore::isDone(const BatchKey& key) const {
  MutexLock lock(mu_);
  auto it = done_.find({key.device, key.epoch});
  return it != done_.end() && intervalsContain(it->second, key.seq);
}

DedupStore::State DedupStore::begin(const BatchKey& key) {
  // The done check and the claim under one lock: a complete() between them would otherwise
  // make a resend kNew again and it would be produced twice.
  MutexLock lock(mu_);
  if (auto it = done_.find({key.device, key.epoch});
      it != done_.end() && intervalsContain(it->second, key.seq)) {
    return State::kDone;
  }
  if (!in_progress_.insert(key).second) return State::kInProgress;
  return State::kNew;
}

void DedupStore::delivered(const TopicPartition& tp, int64_t offset) {
  MutexLock lock(mu_);
  open_[tp].insert(offset);
  auto& m = max_delivered_[tp];
  m = std::max(m, offset);
}

void DedupStore::advanceCheckpoint(const TopicPartition& tp) {
  // Every message at or below the checkpoint belongs to a recorded batch: stop below the lowest
  // message whose batch is still open.
  const auto& open = open_[tp];
  const int64_t candidate = open.empty() ? max_delivered_[tp] : *open.begin() - 1;
  auto [it, inserted] = offsets_.try_emplace(tp, candidate);
  if (inserted || candidate > it->second) {
    it->second = candidate;
    offsets_dirty_ = true;
  }
}

void DedupStore::complete(const BatchKey& key, const Parts& parts) {
  MutexLock lock(mu_);
  in_progress_.erase(key);
  addDone(key);
  for (const auto& [tp, off] : parts) {
    auto& open = open_[tp];
    if (auto it = open.find(off); it != open.end()) open.erase(it);
  }
  for (const auto& [tp, off] : parts) advanceCheckpoint(tp);
}

void DedupStore::abort(const BatchKey& key, const Parts& parts) {
  MutexLock lock(mu_);
  in_progress_.erase(key);
  for (const auto& [tp, off] : parts) {
    auto& open = open_[tp];
    if (auto it = open.find(off); it != open.end()) open.erase(it);
  }
  for (const auto& [tp, off] : parts) advanceCheckpoint(tp);
}

void DedupStore::markDone(const BatchKey& key) {
  MutexLock lock(mu_);
  addDone(key);
}

void DedupStore::raiseCheckpoint(const TopicPartition& tp, int64_t offset) {
  MutexLock lock(mu_);
  auto [it, inserted] = offsets_.try_emplace(tp, offset);
  if (inserted || offset > it->second) {
    it->second = offset;
    offsets_dirty_ = true;
  }
}

Status DedupStore::flush() {
  MutexLock flush_lock(flush_mu_);
  // Snapshot under the lock, write without it: ingest never waits for the disk.
  std::vector<std::pair<Stream, std::map<uint64_t, uint64_t>>> streams;
  std::map<TopicPartition, int64_t> offsets;
  {
    MutexLock lock(mu_);
    if (dirty_.empty() && !offsets_dirty_) return {};
    for (const auto& s : dirty_) streams.emplace_back(s, done_[s]);
    dirty_.clear();
    if (offsets_dirty_) offsets = offsets_;
    offsets_dirty_ = false;
  }
  auto restore = [&] {
    MutexLock lock(mu_);
    for (const auto& [s, r] : streams) dirty_.insert(s);
    if (!offsets.empty()) offsets_dirty_ = true;
  };
  sqlite::Transaction tx(db_);
  if (tx.begun() != SQLITE_OK) {
    restore();
    return sqlite::failure(db_, tx.begun(), "dedup: begin");
  }
  Stmt del(db_, sql::kDeleteStream);
  Stmt ins(db_, sql::kInsertRange);
  Stmt up(db_, sql::kUpsertOffset);
  if (!del.ok() || !ins.ok() || !up.ok()) {
    restore();
    return sqlite::failure(db_, sqlite3_errcode(db_), "dedup: prepare");
  }
  for (const auto& [stream, ranges] : streams) {
    del.reset();
    del.bind(1, stream.first);
    del.bind(2, static_cast<int64_t>(stream.second));
    if (int rc = del.step(); rc != SQLITE_DONE) {
      restore();
      return sqlite::failure(db_, rc, "dedup: write");
    }
    for (const auto& [lo, hi] : ranges) {
      ins.reset();
      ins.bind(1, stream.first);
      ins.bind(2, static_cast<int64_t>(stream.second));
      ins.bind(3, static_cast<int64_t>(lo));
      ins.bind(4, static_cast<int64_t>(hi));
      if (int rc = ins.step(); rc != SQLITE_DONE) {
        restore();
        return sqlite::failure(db_, rc, "dedup: write");
      }
    }
  }
  for (const auto& [tp, off] : offsets) {
    up.reset();
    up.bind(1, tp.topic);
    up.bind(2, static_cast<int64_t>(tp.partition));
    up.bind(3, off);
    if (int rc = up.step(); rc != SQLITE_DONE) {
      restore();
      return sqlite::failure(db_, rc, "dedup: write offsets");
    }
  }
  if (int rc = tx.commit(); rc != SQLITE_OK) {
    restore();
    return sqlite::failure(db_, rc, "dedup: commit");
  }
  return {};
}

std::map<TopicPartition, int64_t> DedupStore::checkpoints() const {
  MutexLock lock(mu_);
  return offsets_;
}

DedupStore::Stats DedupStore::stats() const {
  MutexLock lock(mu_);
  Stats s;
  s.devices = done_.size();
  for (const auto& [k, r] : done_) s.intervals += r.size();
  s.in_progress = in_progress_.size();
  return s;
}

}  // namespace outpost::aggregator

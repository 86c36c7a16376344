#include <sqlite3.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>

#include <spdlog/spdlog.h>

#include "outbox_sql.h"
#include "outpost/agent/outbox.h"
#include "outpost/common/sqlite.h"

namespace outpost::agent {
namespace {

using sqlite::Stmt;
using sqlite::Transaction;

// The `dropped` count carried by the oldest stored batch. When that batch is evicted, the readings
// it was reporting must be reported again by the batch that replaces it. 0 if it cannot be read.
uint64_t droppedCarriedByOldest(sqlite3* db) {
  Stmt s(db, sql::kReadAfter);
  if (!s.ok()) return 0;
  s.bind(1, int64_t{0});
  s.bind(2, int64_t{1});
  if (s.step() != SQLITE_ROW) return 0;
  const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s.get(), 2));
  const int n = sqlite3_column_bytes(s.get(), 2);
  if (p == nullptr || n <= 0) return 0;
  const std::vector<uint8_t> payload(p, p + n);  // heap copy: aligned for FlatBuffers
  codec::VerifyLimits limits;
  limits.max_bytes = payload.size();
  limits.max_sensors = 65536;
  auto batch = codec::verifyBatch(payload, limits);
  return batch ? (*batch)->dropped() : 0;
}

}  // namespace

Outbox::Outbox(sqlite3* db, OutboxOptions options, const Clock& clock)
    : db_(db), options_(std::move(options)), clock_(clock) {}

Outbox::~Outbox() { sqlite3_close_v2(db_); }

Result<std::unique_ptr<Outbox>> Outbox::open(const OutboxOptions& options, const Clock& clock) {
  if (options.synchronous != "full" && options.synchronous != "normal") {
    return fail(ErrorCode::kInvalidArgument, "outbox synchronous must be full or normal");
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto db = sqlite::open(options.path, "outbox");
    if (!db) return std::unexpected(db.error());
    std::unique_ptr<Outbox> box(new Outbox(*db, options, clock));
    Status st = box->init();
    if (st) return box;
    if (st.error().code() != ErrorCode::kCorrupt || attempt > 0) return std::unexpected(st.error());
    box.reset();
    const std::string aside =
        options.path + ".corrupt-" + std::to_string(clock.nowUs() / 1000000);
    std::error_code ec;
    std::filesystem::rename(options.path, aside, ec);
    for (const char* suffix : {"-wal", "-shm"}) {
      std::filesystem::rename(options.path + suffix, aside + suffix, ec);
    }
    spdlog::error("outbox {} is not a readable SQLite database ({}); moved it to {} and starting "
                  "a fresh store with a new epoch",
                  options.path, st.error().message(), aside);
  }
  return fail(ErrorCode::kInternal, "unreachable");
}

Status Outbox::init() {
  const std::string pragmas = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
                              (options_.synchronous == "full" ? "FULL" : "NORMAL") + ";";
  if (auto st = sqlite::exec(db_, pragmas.c_str(), "outbox"); !st) return st;
  if (auto st = sqlite::exec(db_, sql::kSchema, "outbox schema"); !st) return st;

  auto epoch = getMeta(sql::kMetaEpoch, 0);
  if (!epoch) return std::unexpected(epoch.error());
  if (*epoch == 0) {
    std::random_device rd;
    std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ clock_.nowUs());
    uint64_t e = 0;
    while (e == 0) e = gen() & 0x7fffffffffffffffULL;  // positive in SQLite and JSON
    if (auto st = setMeta(sql::kMetaEpoch, static_cast<int64_t>(e)); !st) return st;
    spdlog::info("outbox {}: new store, epoch {}", options_.path, e);
    epoch_ = e;
  } else {
    epoch_ = static_cast<uint64_t>(*epoch);
  }

  {
    Stmt s(db_, sql::kLastSeq);
    if (!s.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: last seq");
    const int rc = s.step();
    if (rc == SQLITE_ROW) next_seq_ = static_cast<uint64_t>(s.col(0)) + 1;
    else if (rc != SQLITE_DONE) return sqlite::failure(db_, rc, "outbox: last seq");
  }
  {
    Stmt s(db_, sql::kTotals);
    if (!s.ok() || s.step() != SQLITE_ROW) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: totals");
    stats_.rows = static_cast<uint64_t>(s.col(0));
    stats_.bytes = static_cast<uint64_t>(s.col(1));
  }
  {
    Stmt s(db_, sql::kOldest);
    if (!s.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: oldest");
    if (s.step() == SQLITE_ROW) stats_.oldest_created_us = s.col(3);
  }
  auto pending = getMeta(sql::kMetaPendingDropped, 0);
  auto dropped = getMeta(sql::kMetaDroppedTotal, 0);
  auto dropped_batches = getMeta(sql::kMetaDroppedBatches, 0);
  if (!pending || !dropped || !dropped_batches) {
    return fail(ErrorCode::kCorrupt, "outbox: cannot read counters");
  }
  pending_dropped_ = static_cast<uint64_t>(*pending);
  stats_.dropped_readings_total = static_cast<uint64_t>(*dropped);
  stats_.dropped_batches_total = static_cast<uint64_t>(*dropped_batches);
  spdlog::info("outbox {}: epoch {}, {} batches ({} bytes) waiting, next seq {}", options_.path,
               epoch_, stats_.rows, stats_.bytes, next_seq_);
  return {};
}

Result<int64_t> Outbox::getMeta(const char* key, int64_t fallback) {
  Stmt s(db_, sql::kGetMeta);
  if (!s.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: read meta");
  s.bind(1, key);
  const int rc = s.step();
  if (rc == SQLITE_ROW) return s.col(0);
  if (rc == SQLITE_DONE) return fallback;
  return sqlite::failure(db_, rc, "outbox: read meta");
}

Status Outbox::setMeta(const char* key, int64_t value) {
  Stmt s(db_, sql::kSetMeta);
  if (!s.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: write meta");
  s.bind(1, key);
  s.bind(2, value);
  const int rc = s.step();
  if (rc != SQLITE_DONE) return sqlite::failure(db_, rc, "outbox: write meta");
  return {};
}

Status Outbox::evictOldest(uint64_t& freed_bytes, uint64_t& dropped_readings) {
  Stmt s(db_, sql::kOldest);
  if (!s.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: oldest");
  const int rc = s.step();
  if (rc != SQLITE_ROW) return sqlite::failure(db_, rc, "outbox: nothing to evict");
  const int64_t seq = s.col(0);
  dropped_readings += static_cast<uint64_t>(s.col(1));
  Stmt d(db_, sql::kDelete);
  d.bind(1, seq);
  const int drc = d.step();
  if (drc != SQLITE_ROW) return sqlite::failure(db_, drc, "outbox: evict");
  freed_bytes += static_cast<uint64_t>(d.col(0));
  if (d.step() != SQLITE_DONE) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: evict");
  return {};
}

Result<uint64_t> Outbox::append(codec::BatchContent& batch) {
  std::lock_guard lock(mu_);
  const uint64_t n_readings = batch.readings.size() + batch.windows.size();
  std::optional<Transaction> tx;
  auto count_failure = [&](const Error& e) -> std::unexpected<Error> {
    tx.reset();  // roll back first, so that the counters below are not rolled back with it
    ++stats_.write_errors_total;
    pending_dropped_ += n_readings;
    stats_.dropped_readings_total += n_readings;
    // Best effort (the disk may be what failed): the count must survive a restart.
    (void)setMeta(sql::kMetaPendingDropped, static_cast<int64_t>(pending_dropped_));
    (void)setMeta(sql::kMetaDroppedTotal, static_cast<int64_t>(stats_.dropped_readings_total));
    return std::unexpected(e);
  };

  batch.epoch = epoch_;
  batch.seq = next_seq_;
  batch.dropped = pending_dropped_;
  std::vector<uint8_t> payload = codec::encodeBatch(batch);
  if (payload.size() > options_.max_bytes) {
    return count_failure(Error(ErrorCode::kResourceExhausted,
                               "batch of " + std::to_string(payload.size()) +
                                   " bytes exceeds the outbox limit"));
  }

  tx.emplace(db_);
  if (const int rc = tx->begun(); rc != SQLITE_OK) {
    return count_failure(sqlite::failure(db_, rc, "outbox: begin").error());
  }

  uint64_t bytes = stats_.bytes, rows = stats_.rows;
  uint64_t evicted_readings = 0, evicted_batches = 0;
  uint64_t evicted_reports = 0;  // `dropped` the evicted batches carried, never delivered now
  while (bytes + payload.size() > options_.max_bytes && rows > 0) {
    uint64_t freed = 0;
    evicted_reports += droppedCarriedByOldest(db_);
    if (auto st = evictOldest(freed, evicted_readings); !st) return count_failure(st.error());
    bytes -= freed;
    --rows;
    ++evicted_batches;
  }
  if (evicted_batches > 0) {
    // Same size: scalars are always encoded (force_defaults).
    batch.dropped = pending_dropped_ + evicted_readings + evicted_reports;
    payload = codec::encodeBatch(batch);
  }

  Stmt ins(db_, sql::kInsert);
  if (!ins.ok()) return count_failure(sqlite::failure(db_, sqlite3_errcode(db_), "outbox: insert").error());
  ins.bind(1, static_cast<int64_t>(batch.seq));
  ins.bind(2, batch.created_us);
  ins.bind(3, static_cast<int64_t>(n_readings));
  ins.bind(4, static_cast<int64_t>(payload.size()));
  ins.bindBlob(5, payload.data(), payload.size());
  if (int rc = ins.step(); rc != SQLITE_DONE) {
    return count_failure(sqlite::failure(db_, rc, "outbox: insert").error());
  }
  // The batch reports everything pending; nothing is pending after it.
  if (auto st = setMeta(sql::kMetaPendingDropped, 0); !st) return count_failure(st.error());
  if (evicted_readings > 0) {
    if (auto st = setMeta(sql::kMetaDroppedTotal,
                          static_cast<int64_t>(stats_.dropped_readings_total + evicted_readings));
        !st) {
      return count_failure(st.error());
    }
    if (auto st = setMeta(sql::kMetaDroppedBatches,
                          static_cast<int64_t>(stats_.dropped_batches_total + evicted_batches));
        !st) {
      return count_failure(st.error());
    }
  }
  if (int rc = tx->commit(); rc != SQLITE_OK) {
    return count_failure(sqlite::failure(db_, rc, "outbox: commit").error());
  }

  if (evicted_batches > 0) {
    spdlog::warn("outbox full ({} bytes limit): dropped the {} oldest batches ({} readings)",
                 options_.max_bytes, evicted_batches, evicted_readings);
  }
  stats_.bytes = bytes + payload.size();
  stats_.rows = rows + 1;
  stats_.dropped_readings_total += evicted_readings;
  stats_.dropped_batches_total += evicted_batches;
  ++stats_.accepted_batches_total;
  pending_dropped_ = 0;
  if (stats_.rows == 1 || evicted_batches > 0) {
    Stmt s(db_, sql::kOldest);
    if (s.ok() && s.step() == SQLITE_ROW) stats_.oldest_created_us = s.col(3);
  }
  return next_seq_++;
}

Result<std::vector<StoredBatch>> Outbox::readAfter(uint64_t after_seq, size_t limit) {
  std::lock_guard lock(mu_);
  Stmt s(db_, sql::kReadAfter);
  if (!s.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: read");
  s.bind(1, static_cast<int64_t>(after_seq));
  s.bind(2, static_cast<int64_t>(limit));
  std::vector<StoredBatch> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    StoredBatch b;
    b.seq = static_cast<uint64_t>(s.col(0));
    b.readings = static_cast<uint64_t>(s.col(1));
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s.get(), 2));
    const int n = sqlite3_column_bytes(s.get(), 2);
    b.payload.assign(p, p + n);
    out.push_back(std::move(b));
  }
  if (rc != SQLITE_DONE) return sqlite::failure(db_, rc, "outbox: read");
  return out;
}

Status Outbox::ack(uint64_t seq) {
  std::lock_guard lock(mu_);
  Stmt d(db_, sql::kDelete);
  if (!d.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: ack");
  d.bind(1, static_cast<int64_t>(seq));
  const int rc = d.step();
  if (rc == SQLITE_DONE) return {};  // unknown seq: already gone
  if (rc != SQLITE_ROW) return sqlite::failure(db_, rc, "outbox: ack");
  const uint64_t freed = static_cast<uint64_t>(d.col(0));
  if (d.step() != SQLITE_DONE) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: ack");
  stats_.bytes -= std::min(stats_.bytes, freed);
  stats_.rows -= std::min<uint64_t>(stats_.rows, 1);
  ++stats_.acked_batches_total;
  if (stats_.rows == 0) {
    stats_.oldest_created_us = 0;
  } else {
    Stmt s(db_, sql::kOldest);
    if (s.ok() && s.step() == SQLITE_ROW) stats_.oldest_created_us = s.col(3);
  }
  return {};
}

void Outbox::addDropped(uint64_t readings) {
  std::lock_guard lock(mu_);
  pending_dropped_ += readings;
  stats_.dropped_readings_total += readings;
  (void)setMeta(sql::kMetaPendingDropped, static_cast<int64_t>(pending_dropped_));
  (void)setMeta(sql::kMetaDroppedTotal, static_cast<int64_t>(stats_.dropped_readings_total));
}

OutboxStats Outbox::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace outpost::agent

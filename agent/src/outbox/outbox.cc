#include <spdlog/spdlog.h>
#include <sqlite3.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <random>

#include "outbox_sql.h"
#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_salvage.h"
#include "outpost/common/sqlite.h"

namespace outpost::agent {
namespace {

using sqlite::Stmt;
using sqlite::Transaction;

// Resets a cached statement when the scope that used it ends (releases its read snapshot).
class Used {
 public:
  explicit Used(Stmt& s) : s_(s) {}
  ~Used() { s_.reset(); }
  Used(const Used&) = delete;
  Used& operator=(const Used&) = delete;

 private:
  Stmt& s_;
};

bool isDiskError(const Error& e) { return e.code() == ErrorCode::kIoError; }

// The reserve file beside the store (see takeReserve).
constexpr uint64_t kReserveBytes = 5ull << 20;  // > the largest WAL (1000 pages of 4 KB) + margin
// On a small file system (a 400 KB tmpfs, a tiny SD-card partition) 5 MB does not fit, and with no
// reserve a full disk blocks the deletion of acknowledged batches for good: take a sixteenth of
// the file system instead, at least 32 pages (the WAL is then kept to half of it, see init).
constexpr uint64_t kMinReserveBytes = 128ull << 10;
constexpr uint64_t kPageBytes = 4096;  // SQLite's default page size, which the store uses

// Renames a damaged store and its -wal and -shm to "<path>.corrupt-<unix time>[-wal|-shm]" and
// returns the new name. Fails (and the store must not be opened) when the database or its WAL
// stays in place: a fresh database beside the old WAL would read the old log's frames.
Result<std::string> moveAside(const std::string& path, const Clock& clock) {
  const std::string aside = path + ".corrupt-" + std::to_string(clock.nowUs() / 1000000);
  std::error_code ec, side_ec;
  // A WAL without its database (deleted by hand) is moved alone.
  if (std::filesystem::exists(path, side_ec)) std::filesystem::rename(path, aside, ec);
  for (const char* suffix : {"-wal", "-shm"}) {
    std::filesystem::rename(path + suffix, aside + suffix, side_ec);
  }
  if (ec || std::filesystem::exists(path + "-wal", side_ec)) {
    return fail(ErrorCode::kIoError, "outbox: cannot move the damaged store " + path + " to " +
                                         aside + (ec ? ": " + ec.message() : ""));
  }
  return aside;
}

}  // namespace

const config::EnumNames<FullPolicy>& fullPolicyNames() {
  static const config::EnumNames<FullPolicy> names{{FullPolicy::kDropOldest, "drop_oldest"},
                                                   {FullPolicy::kDropNewest, "drop_newest"},
                                                   {FullPolicy::kBlock, "block"}};
  return names;
}

Result<FullPolicy> parseFullPolicy(const std::string& s) {
  if (auto p = fullPolicyNames().find(s)) return *p;
  return fail(ErrorCode::kInvalidArgument,
              "full policy \"" + s + "\"; allowed: " + fullPolicyNames().joinedNames());
}

const char* fullPolicyName(FullPolicy p) { return fullPolicyNames().name(p); }

const char* dropReasonName(DropReason r) {
  switch (r) {
    case DropReason::kOutboxFull:
      return "outbox_full";
    case DropReason::kMaxAge:
      return "max_age";
    case DropReason::kWriteError:
      return "write_error";
    case DropReason::kTooLarge:
      return "too_large";
    case DropReason::kUpstream:
      return "upstream";
    case DropReason::kStoreDamaged:
      return "store_damaged";
    case DropReason::kCount:
      break;
  }
  return "?";
}

// Statements prepared once per connection (SQLITE_PREPARE_PERSISTENT): the append path of a
// 500-reading batch is dominated by SQLite's page writes, not by parsing SQL.
struct Outbox::Stmts {
  explicit Stmts(sqlite3* db)
      : insert(db, sql::kInsert),
        del(db, sql::kDelete),
        oldest(db, sql::kOldest),
        set_meta(db, sql::kSetMeta),
        read_asc(db, sql::kReadAsc),
        read_desc(db, sql::kReadDesc) {}
  bool ok() const {
    return insert.ok() && del.ok() && oldest.ok() && set_meta.ok() && read_asc.ok() &&
           read_desc.ok();
  }
  Stmt insert, del, oldest, set_meta, read_asc, read_desc;
};

Outbox::Outbox(sqlite3* db, OutboxOptions options, const Clock& clock)
    : db_(db), options_(std::move(options)), clock_(clock) {}

Outbox::~Outbox() {
  stmts_.reset();  // finalize before closing
  sqlite3_close_v2(db_);
}

Result<std::unique_ptr<Outbox>> Outbox::open(const OutboxOptions& options, const Clock& clock) {
  if (options.synchronous != "full" && options.synchronous != "normal") {
    return fail(ErrorCode::kInvalidArgument, "outbox synchronous must be full or normal");
  }
  std::optional<SalvageResult> salvaged;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (attempt == 0) {
      // Before SQLite opens the store (its recovery would drop, silently, every commit after a
      // damaged WAL frame, and the next checkpoint would make that final): a WAL with evidence of
      // lost commits is treated like a corrupt store, so that the seq counter never goes back
      // within an epoch (docs/reliability.md, "Damage to the WAL").
      const WalCheck wal = checkWal(options.path);
      if (wal.damaged) {
        auto aside = moveAside(options.path, clock);
        if (!aside) return std::unexpected(aside.error());
        spdlog::error(
            "outbox {}: its WAL is damaged: {}; moved it to {} (the database with its -wal and "
            "-shm) and starting a fresh store with a new epoch",
            options.path, wal.what, *aside);
        salvaged = salvageMovedStore(*aside);
        continue;
      }
    }
    auto db = sqlite::open(options.path, "outbox");
    if (!db) return std::unexpected(db.error());
    std::unique_ptr<Outbox> box(new Outbox(*db, options, clock));
    Status st = box->init();
    if (st) {
      if (salvaged) box->countDamagedStore(*salvaged);
      return box;
    }
    if (st.error().code() != ErrorCode::kCorrupt || attempt > 0) return std::unexpected(st.error());
    // Closing the last connection would checkpoint the WAL into the damaged file and delete it:
    // keep it as it is, for the salvage below (its frames may hold the newest waiting batches)
    // and as evidence beside the moved copy.
    sqlite3_db_config(box->db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
    box.reset();
    auto aside = moveAside(options.path, clock);
    if (!aside) return std::unexpected(aside.error());
    spdlog::error(
        "outbox {} is not a readable SQLite database ({}); moved it to {} and starting "
        "a fresh store with a new epoch",
        options.path, st.error().message(), *aside);
    // Read back what the damaged copy still holds (read-only, bounded), so that its waiting
    // batches are counted as dropped rather than lost without a count.
    salvaged = salvageMovedStore(*aside);
  }
  return fail(ErrorCode::kInternal, "unreachable");
}

Status Outbox::init() {
  MutexLock lock(mu_);  // not shared yet: for the analysis, and uncontended
  // The WAL is what a full disk blocks first: every commit appends frames to it until the
  // checkpoint (1000 pages by default), and deleting acknowledged batches writes frames too. Keep
  // it within half the reserve, so that releasing the reserve always leaves room to checkpoint it
  // into the database (a small file system gets a small reserve, hence a small WAL).
  const uint64_t reserve = reserveTarget();
  const uint64_t wal_pages =
      reserve >= kReserveBytes ? 1000 : std::max<uint64_t>(8, reserve / 2 / kPageBytes);
  const std::string pragmas =
      std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
      (options_.synchronous == "full" ? "FULL" : "NORMAL") +
      "; PRAGMA wal_autocheckpoint=" + std::to_string(wal_pages) +
      "; PRAGMA journal_size_limit=" + std::to_string(wal_pages * kPageBytes) + ";";
  if (auto st = sqlite::exec(db_, pragmas.c_str(), "outbox"); !st) return st;
  if (auto st = sqlite::exec(db_, sql::kSchema, "outbox schema"); !st) return st;
  {
    Stmt probe(db_, sql::kHasDropped);
    if (!probe.ok()) {
      if (auto st = sqlite::exec(db_, sql::kAddDropped, "outbox schema (dropped)"); !st) return st;
    }
  }
  if (auto st = sqlite::exec(db_, sql::kIndex, "outbox schema (index)"); !st) return st;
  stmts_ = std::make_unique<Stmts>(db_);
  if (!stmts_->ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: prepare");

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
    if (rc == SQLITE_ROW)
      next_seq_ = static_cast<uint64_t>(s.col(0)) + 1;
    else if (rc != SQLITE_DONE)
      return sqlite::failure(db_, rc, "outbox: last seq");
  }
  {
    Stmt s(db_, sql::kTotals);
    if (!s.ok() || s.step() != SQLITE_ROW) {
      return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: totals");
    }
    stats_.rows = static_cast<uint64_t>(s.col(0));
    stats_.bytes = static_cast<uint64_t>(s.col(1));
  }
  if (auto st = refreshOldestLocked(); !st) return st;
  auto pending = getMeta(sql::kMetaPendingDropped, 0);
  auto dropped = getMeta(sql::kMetaDroppedTotal, 0);
  auto dropped_batches = getMeta(sql::kMetaDroppedBatches, 0);
  if (!pending || !dropped || !dropped_batches) {
    return fail(ErrorCode::kCorrupt, "outbox: cannot read counters");
  }
  pending_dropped_ = static_cast<uint64_t>(*pending);
  stats_.dropped_readings_total = static_cast<uint64_t>(*dropped);
  stats_.dropped_batches_total = static_cast<uint64_t>(*dropped_batches);
  persisted_pending_ = *pending;
  persisted_dropped_ = *dropped;
  persisted_batches_ = *dropped_batches;
  stats_.last_seq = next_seq_ - 1;
  takeReserve();
  spdlog::info("outbox {}: epoch {}, {} batches ({} bytes) waiting, next seq {}", options_.path,
               epoch_, stats_.rows, stats_.bytes, next_seq_);
  return {};
}

// A file beside the store, deleted when the disk is full so that drop_oldest can still evict and
// acknowledged batches can still be deleted (SQLite must write WAL frames to delete rows and grow
// the database file to checkpoint). Best effort: without it drop_oldest degrades to dropping the
// new batches, and a delete waits for a checkpoint to free the WAL's space.

std::optional<Outbox::FsSpace> Outbox::fsSpace() const {
  struct statvfs vfs {};
  const std::string dir = std::filesystem::path(options_.path).parent_path().string();
  if (::statvfs(dir.empty() ? "." : dir.c_str(), &vfs) != 0) return std::nullopt;
  return FsSpace{static_cast<uint64_t>(vfs.f_blocks) * vfs.f_frsize,
                 static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize};
}

uint64_t Outbox::reserveTarget() const {
  const auto fs = fsSpace();
  if (!fs) return kReserveBytes;
  return std::clamp<uint64_t>(fs->total / 16 / kPageBytes * kPageBytes, kMinReserveBytes,
                              kReserveBytes);
}

bool Outbox::diskNearlyFull() const {
  const auto fs = fsSpace();
  return !fs || fs->available < reserveTarget();
}

void Outbox::takeReserve() {
  const std::string path = options_.path + "-reserve";
  const uint64_t target = reserveTarget();
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && std::filesystem::file_size(path, ec) == target) {
    reserve_held_ = true;
    reserve_bytes_ = target;
    return;
  }
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return;
  static const std::vector<char> zeros(64 * 1024, 0);
  bool ok = true;
  for (uint64_t w = 0; ok && w < target; w += zeros.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), target - w));
    ok = std::fwrite(zeros.data(), 1, n, f) == n;
  }
  ok = (std::fflush(f) == 0) && ok;
  std::fclose(f);
  if (!ok) {
    std::filesystem::remove(path, ec);
    return;
  }
  reserve_held_ = true;
  reserve_bytes_ = target;
}

void Outbox::releaseReserve() {
  if (!reserve_held_) return;
  std::error_code ec;
  std::filesystem::remove(options_.path + "-reserve", ec);
  reserve_held_ = false;
  spdlog::warn("outbox: disk full; released the {} KB reserve beside the store to make room",
               reserve_bytes_ >> 10);
}

void Outbox::makeRoomLocked(int mode) {
  releaseReserve();
  sqlite3_wal_checkpoint_v2(db_, nullptr, mode, nullptr, nullptr);
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
  Stmt& s = stmts_->set_meta;
  Used used(s);
  if (!s.ok()) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: write meta");
  s.bind(1, key);
  s.bind(2, value);
  const int rc = s.step();
  if (rc != SQLITE_DONE) return sqlite::failure(db_, rc, "outbox: write meta");
  return {};
}

// Writes the counters that changed since they were last persisted (inside the caller's
// transaction, or on their own).
Status Outbox::persistCounters() {
  const auto pending = static_cast<int64_t>(pending_dropped_);
  const auto dropped = static_cast<int64_t>(stats_.dropped_readings_total);
  const auto batches = static_cast<int64_t>(stats_.dropped_batches_total);
  if (pending != persisted_pending_) {
    if (auto st = setMeta(sql::kMetaPendingDropped, pending); !st) return st;
  }
  if (dropped != persisted_dropped_) {
    if (auto st = setMeta(sql::kMetaDroppedTotal, dropped); !st) return st;
  }
  if (batches != persisted_batches_) {
    if (auto st = setMeta(sql::kMetaDroppedBatches, batches); !st) return st;
  }
  return {};
}

Status Outbox::refreshOldestLocked() {
  Stmt& s = stmts_->oldest;
  Used used(s);
  const int rc = s.step();
  if (rc == SQLITE_ROW) {
    stats_.oldest_created_us = s.col(3);
  } else if (rc == SQLITE_DONE) {
    stats_.oldest_created_us = 0;
  } else {
    return sqlite::failure(db_, rc, "outbox: oldest");
  }
  return {};
}

void Outbox::countDropLocked(uint64_t readings, DropReason reason) {
  stats_.dropped_readings_total += readings;
  stats_.dropped_by_reason[static_cast<size_t>(reason)] += readings;
}

// Deletes the oldest batch; its readings become dropped (pending for the next stored batch), and
// so does the `dropped` it was reporting, which now never reaches the cloud.
Status Outbox::evictOldestLocked(DropReason reason) {
  int64_t seq = 0;
  uint64_t readings = 0, carried = 0;
  {
    Stmt& s = stmts_->oldest;
    Used used(s);
    const int rc = s.step();
    if (rc != SQLITE_ROW) return sqlite::failure(db_, rc, "outbox: nothing to evict");
    seq = s.col(0);
    readings = static_cast<uint64_t>(s.col(1));
    carried = static_cast<uint64_t>(s.col(4));
  }
  Stmt& d = stmts_->del;
  Used used(d);
  d.bind(1, seq);
  const int drc = d.step();
  if (drc != SQLITE_ROW) return sqlite::failure(db_, drc, "outbox: evict");
  const auto freed = static_cast<uint64_t>(d.col(0));
  if (d.step() != SQLITE_DONE) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: evict");
  stats_.bytes -= std::min(stats_.bytes, freed);
  stats_.rows -= std::min<uint64_t>(stats_.rows, 1);
  ++stats_.dropped_batches_total;
  spdlog::debug("outbox: evicted batch {} ({} readings, {})", seq, readings,
                dropReasonName(reason));
  countDropLocked(readings, reason);
  pending_dropped_ += readings + carried;
  return refreshOldestLocked();
}

Status Outbox::expireLocked(int64_t now_us, uint64_t& dropped) {
  if (options_.max_age_s <= 0) return {};
  const int64_t cutoff = now_us - options_.max_age_s * 1000000;
  while (stats_.rows > 0 && stats_.oldest_created_us != 0 && stats_.oldest_created_us < cutoff) {
    const uint64_t before = stats_.dropped_readings_total;
    if (auto st = evictOldestLocked(DropReason::kMaxAge); !st) return st;
    dropped += stats_.dropped_readings_total - before;
  }
  return {};
}

// One transaction. On failure the in-memory state is NOT restored here (the caller does).
Result<AppendOutcome> Outbox::appendGroupLocked(std::span<codec::BatchContent> batches) {
  AppendOutcome out;
  Transaction tx(db_);
  if (const int rc = tx.begun(); rc != SQLITE_OK) return sqlite::failure(db_, rc, "outbox: begin");
  uint64_t expired = 0;
  if (auto st = expireLocked(clock_.nowUs(), expired); !st) return std::unexpected(st.error());

  for (auto& batch : batches) {
    const uint64_t n = batch.readings.size() + batch.windows.size();
    batch.epoch = epoch_;
    batch.seq = next_seq_;
    batch.dropped = pending_dropped_;
    std::vector<uint8_t> payload = codec::encodeBatch(batch);
    const uint64_t size = payload.size();
    if (size > options_.max_bytes) {
      countDropLocked(n, DropReason::kTooLarge);
      pending_dropped_ += n;
      out.dropped_readings += n;
      ++out.consumed;
      spdlog::error(
          "outbox: a batch of {} bytes ({} readings) exceeds the whole limit of {} "
          "bytes; dropped",
          size, n, options_.max_bytes);
      continue;
    }
    bool refused = false;
    const uint64_t pending_before = pending_dropped_;
    const uint64_t limit =
        disk_cap_ != 0 ? std::min(options_.max_bytes, disk_cap_) : options_.max_bytes;
    while (stats_.bytes + size > limit && stats_.rows > 0) {
      if (options_.full_policy == FullPolicy::kDropNewest) {
        refused = true;
        break;
      }
      if (options_.full_policy == FullPolicy::kBlock) {
        out.blocked = true;
        break;
      }
      if (auto st = evictOldestLocked(DropReason::kOutboxFull); !st) {
        return std::unexpected(st.error());
      }
    }
    if (out.blocked) break;
    if (refused) {
      countDropLocked(n, DropReason::kOutboxFull);
      pending_dropped_ += n;
      out.dropped_readings += n;
      ++out.consumed;
      continue;
    }
    if (pending_dropped_ != pending_before) {
      batch.dropped = pending_dropped_;
      payload = codec::encodeBatch(batch);  // same size: scalars are always encoded
    }
    Stmt& ins = stmts_->insert;
    Used used(ins);
    ins.bind(1, static_cast<int64_t>(batch.seq));
    ins.bind(2, batch.created_us);
    ins.bind(3, static_cast<int64_t>(n));
    ins.bind(4, static_cast<int64_t>(size));
    ins.bindBlob(5, payload.data(), payload.size());
    ins.bind(6, static_cast<int64_t>(batch.dropped));
    if (const int rc = ins.step(); rc != SQLITE_DONE) {
      return sqlite::failure(db_, rc, "outbox: insert");
    }
    if (stats_.rows == 0) stats_.oldest_created_us = batch.created_us;
    stats_.bytes += size;
    ++stats_.rows;
    ++next_seq_;
    pending_dropped_ = 0;  // this batch reports everything pending
    ++out.stored;
    ++out.consumed;
    out.stored_readings += n;
  }
  if (auto st = persistCounters(); !st) return std::unexpected(st.error());
  if (const int rc = tx.commit(); rc != SQLITE_OK) {
    return sqlite::failure(db_, rc, "outbox: commit");
  }
  return out;
}

Result<AppendOutcome> Outbox::appendMany(std::span<codec::BatchContent> batches) {
  MutexLock lock(mu_);
  // A failed transaction leaves the store as it was, and so must our counters: `base` is the last
  // committed state.
  struct Base {
    OutboxStats stats;
    uint64_t next_seq, pending;
  } base{stats_, next_seq_, pending_dropped_};
  const uint64_t evicted_before = stats_.dropped_batches_total;
  auto restore = [&]() REQUIRES(mu_) {
    stats_ = base.stats;
    next_seq_ = base.next_seq;
    pending_dropped_ = base.pending;
  };
  auto committed = [&]() REQUIRES(mu_) {
    persisted_pending_ = static_cast<int64_t>(pending_dropped_);
    persisted_dropped_ = static_cast<int64_t>(stats_.dropped_readings_total);
    persisted_batches_ = static_cast<int64_t>(stats_.dropped_batches_total);
    base = {stats_, next_seq_, pending_dropped_};
  };

  auto result = appendGroupLocked(batches);
  if (!result) restore();
  // An I/O error on a disk with room (EIO from a failing card, a failed fsync, a spurious ENOSPC)
  // is not "disk full": evicting would drop waiting batches for nothing (and batches already in
  // flight, which then reach the cloud while counted as dropped). Try the transaction once more.
  const bool disk_full = !result && isDiskError(result.error()) && diskNearlyFull();
  if (!result && isDiskError(result.error()) && !disk_full) {
    result = appendGroupLocked(batches);
    if (!result) restore();
  }
  // Disk full under drop_oldest: make room by evicting the oldest batches (their own
  // transaction; freed pages are reused by the next insert) and try again, a few times.
  for (int attempt = 0;
       !result && disk_full && options_.full_policy == FullPolicy::kDropOldest &&
       stats_.rows > 0 && attempt < 4;
       ++attempt) {
    const size_t evict = std::max<size_t>(1, batches.size()) << attempt;
    // SQLite needs free space to record the eviction and to move the WAL into the database: the
    // reserve file is given up for that, and taken again once writes succeed.
    makeRoomLocked(SQLITE_CHECKPOINT_TRUNCATE);
    Transaction tx(db_);
    Status st = tx.begun() == SQLITE_OK ? Status{} : sqlite::failure(db_, tx.begun(), "begin");
    for (size_t i = 0; st && i < evict && stats_.rows > 0; ++i) {
      st = evictOldestLocked(DropReason::kOutboxFull);
    }
    if (st) st = persistCounters();
    if (st) {
      if (const int rc = tx.commit(); rc != SQLITE_OK) st = sqlite::failure(db_, rc, "commit");
    }
    if (!st) {
      spdlog::debug("outbox: cannot evict to make room: {}", st.error().toString());
      restore();
      break;
    }
    committed();
    // What is stored now fits on this disk: keep the store at that size (drop_oldest evicts
    // before each insert, freed pages are reused, the file stops growing) until space returns.
    disk_cap_ = std::max<uint64_t>(stats_.bytes, 1);
    spdlog::warn(
        "outbox: write failed ({}); evicted up to {} oldest batches and capped the store "
        "at {} bytes until the disk has room again",
        result.error().message(), evict, disk_cap_);
    sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
    result = appendGroupLocked(batches);
    if (!result) restore();
  }

  if (!result) {
    ++stats_.write_errors_total;
    if (!failing_) {
      spdlog::error("outbox: cannot store {} batches ({} policy): {}", batches.size(),
                    fullPolicyName(options_.full_policy), result.error().toString());
    }
    failing_ = true;
    if (options_.full_policy != FullPolicy::kBlock) {
      uint64_t n = 0;
      for (const auto& b : batches) n += b.readings.size() + b.windows.size();
      countDropLocked(n, DropReason::kWriteError);
      pending_dropped_ += n;
      if (persistCounters()) committed();  // best effort: the disk may be what failed
    }
    return std::unexpected(result.error());
  }
  committed();
  if ((!reserve_held_ || disk_cap_ != 0) && ++reserve_retry_ % 64 == 0) {
    // Space may have returned: take the reserve again and lift the disk cap if there is plenty.
    if (const auto fs = fsSpace(); fs && fs->available > 2 * reserveTarget()) {
      takeReserve();
      if (reserve_held_ && disk_cap_ != 0) {
        disk_cap_ = 0;
        spdlog::info("outbox: the disk has room again; only outbox.max_bytes limits the store");
      }
    }
  }
  if (failing_) {
    failing_ = false;
    ++stats_.recoveries_total;
    spdlog::info("outbox: writes succeed again");
  }
  stats_.accepted_batches_total += result->stored;
  stats_.accepted_readings_total += result->stored_readings;
  stats_.last_seq = next_seq_ - 1;
  // drop_newest: one line when refusing starts and one when it ends, not one per batch.
  const uint64_t refused =
      dropped_by_full_before_ ==
              stats_.dropped_by_reason[static_cast<size_t>(DropReason::kOutboxFull)]
          ? 0
          : stats_.dropped_by_reason[static_cast<size_t>(DropReason::kOutboxFull)] -
                dropped_by_full_before_;
  if (options_.full_policy == FullPolicy::kDropNewest && refused > 0 && !refusing_) {
    refusing_ = true;
    spdlog::warn(
        "outbox full ({} bytes limit, drop_newest): refusing new batches until there "
        "is room (counted as dropped)",
        options_.max_bytes);
  } else if (refusing_ && result->stored > 0 && refused == 0) {
    refusing_ = false;
    spdlog::info("outbox has room again: storing new batches");
  }
  dropped_by_full_before_ = stats_.dropped_by_reason[static_cast<size_t>(DropReason::kOutboxFull)];
  // drop_oldest: one line when evicting starts and one when a batch fits without it, not one per
  // batch (a full store evicts for every new batch, hundreds a second).
  const uint64_t evicted = stats_.dropped_batches_total - evicted_before;
  if (evicted > 0) {
    if (evicting_ == 0) {
      spdlog::warn(
          "outbox full ({} bytes limit{}): dropping the oldest stored batches to make room "
          "(counted as dropped)",
          disk_cap_ != 0 ? std::min(disk_cap_, options_.max_bytes) : options_.max_bytes,
          disk_cap_ != 0 ? ", capped because the disk is full" : "");
    }
    evicting_ += evicted;
  } else if (evicting_ > 0 && result->stored > 0) {
    spdlog::info("outbox has room again: {} oldest batches were dropped to make room", evicting_);
    evicting_ = 0;
  }
  return result;
}

Result<uint64_t> Outbox::append(codec::BatchContent& batch) {
  auto out = appendMany(std::span<codec::BatchContent>(&batch, 1));
  if (!out) return std::unexpected(out.error());
  if (out->stored == 1) return batch.seq;
  if (out->blocked) return fail(ErrorCode::kResourceExhausted, "outbox full (block policy)");
  return fail(ErrorCode::kResourceExhausted, "outbox full or batch too large: batch dropped");
}

Result<std::vector<StoredBatch>> Outbox::readAfter(uint64_t after_seq, size_t limit) {
  return readRange(after_seq, UINT64_MAX >> 1, limit, ReadOrder::kOldestFirst);
}

Result<std::vector<StoredBatch>> Outbox::readRange(uint64_t after_seq, uint64_t before_seq,
                                                   size_t limit, ReadOrder order) {
  MutexLock lock(mu_);
  Stmt& s = order == ReadOrder::kOldestFirst ? stmts_->read_asc : stmts_->read_desc;
  Used used(s);
  s.bind(1, static_cast<int64_t>(after_seq));
  s.bind(2, static_cast<int64_t>(std::min<uint64_t>(before_seq, INT64_MAX)));
  s.bind(3, static_cast<int64_t>(limit));
  std::vector<StoredBatch> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    StoredBatch b;
    b.seq = static_cast<uint64_t>(s.col(0));
    b.readings = static_cast<uint64_t>(s.col(1));
    b.created_us = s.col(2);
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(s.get(), 3));
    const int n = sqlite3_column_bytes(s.get(), 3);
    if (p != nullptr) b.payload.assign(p, p + n);
    out.push_back(std::move(b));
  }
  if (rc != SQLITE_DONE) return sqlite::failure(db_, rc, "outbox: read");
  return out;
}

Status Outbox::ack(uint64_t seq) { return ackMany(std::span<const uint64_t>(&seq, 1)); }

Status Outbox::ackMany(std::span<const uint64_t> seqs) {
  if (seqs.empty()) return {};
  MutexLock lock(mu_);
  Status st = ackLocked(seqs);
  if (!st && isDiskError(st.error())) {
    // A delete writes WAL frames, so on a full disk it fails like an insert; if nothing frees
    // space, acknowledged batches would stay stored for good and the outbox never drain. Give up
    // the reserve and move the WAL into the database (truncating it), then delete again.
    // RESTART, not TRUNCATE: the next frames then reuse the WAL file's space from its start
    // instead of needing new space the database may have taken meanwhile. Any other I/O error:
    // delete again once (the sender retries later if that fails too).
    const bool disk_full = diskNearlyFull();
    if (disk_full) makeRoomLocked(SQLITE_CHECKPOINT_RESTART);
    st = ackLocked(seqs);
    if (st && disk_full) {
      spdlog::warn("outbox: deleting acknowledged batches needed room on a full disk; done after "
                   "releasing the reserve and checkpointing");
    } else if (!st) {
      ++stats_.write_errors_total;
    }
  }
  return st;
}

Status Outbox::ackLocked(std::span<const uint64_t> seqs) {
  std::optional<Transaction> tx;
  if (seqs.size() > 1) {
    tx.emplace(db_);
    if (const int rc = tx->begun(); rc != SQLITE_OK) return sqlite::failure(db_, rc, "outbox: ack");
  }
  uint64_t freed = 0, rows = 0;
  for (const uint64_t seq : seqs) {
    Stmt& d = stmts_->del;
    Used used(d);
    d.bind(1, static_cast<int64_t>(seq));
    const int rc = d.step();
    if (rc == SQLITE_DONE) continue;  // unknown seq: already gone
    if (rc != SQLITE_ROW) return sqlite::failure(db_, rc, "outbox: ack");
    freed += static_cast<uint64_t>(d.col(0));
    ++rows;
    if (d.step() != SQLITE_DONE) return sqlite::failure(db_, sqlite3_errcode(db_), "outbox: ack");
  }
  if (tx) {
    if (const int rc = tx->commit(); rc != SQLITE_OK)
      return sqlite::failure(db_, rc, "outbox: ack");
  }
  stats_.bytes -= std::min(stats_.bytes, freed);
  stats_.rows -= std::min(stats_.rows, rows);
  stats_.acked_batches_total += rows;
  if (rows > 0) (void)refreshOldestLocked();
  return {};
}

Result<uint64_t> Outbox::expire() {
  MutexLock lock(mu_);
  if (options_.max_age_s <= 0 || stats_.rows == 0) return uint64_t{0};
  const int64_t cutoff = clock_.nowUs() - options_.max_age_s * 1000000;
  if (stats_.oldest_created_us == 0 || stats_.oldest_created_us >= cutoff) return uint64_t{0};
  const OutboxStats before = stats_;
  const uint64_t pending_before = pending_dropped_;
  Transaction tx(db_);
  uint64_t dropped = 0;
  Status st = tx.begun() == SQLITE_OK ? expireLocked(clock_.nowUs(), dropped)
                                      : sqlite::failure(db_, tx.begun(), "outbox: expire");
  if (st) st = persistCounters();
  if (st) {
    if (const int rc = tx.commit(); rc != SQLITE_OK)
      st = sqlite::failure(db_, rc, "outbox: expire");
  }
  if (!st) {
    stats_ = before;
    pending_dropped_ = pending_before;
    return std::unexpected(st.error());
  }
  persisted_pending_ = static_cast<int64_t>(pending_dropped_);
  persisted_dropped_ = static_cast<int64_t>(stats_.dropped_readings_total);
  persisted_batches_ = static_cast<int64_t>(stats_.dropped_batches_total);
  if (dropped > 0) {
    spdlog::warn("outbox: dropped {} readings older than max_age ({} s)", dropped,
                 options_.max_age_s);
  }
  return dropped;
}

void Outbox::addDropped(uint64_t readings, DropReason reason) {
  if (readings == 0) return;
  MutexLock lock(mu_);
  pending_dropped_ += readings;
  countDropLocked(readings, reason);
  if (persistCounters()) {  // best effort; retried with the next transaction
    persisted_pending_ = static_cast<int64_t>(pending_dropped_);
    persisted_dropped_ = static_cast<int64_t>(stats_.dropped_readings_total);
  }
}

void Outbox::countDamagedStore(const SalvageResult& found) {
  MutexLock lock(mu_);
  ++stats_.damaged_stores[static_cast<size_t>(found.found)];
  countDropLocked(found.readings, DropReason::kStoreDamaged);
  // The batches' own `dropped` and the pending count were counted when they were dropped (by
  // the old store's totals): they only need reporting now.
  pending_dropped_ += found.toReport();
  const std::string epoch = found.epoch != 0 ? std::to_string(found.epoch) : "unknown";
  const char* how = salvageFoundName(found.found);
  if (found.found == SalvageResult::Found::kComplete) {
    spdlog::warn(
        "outbox: salvaged the damaged store (epoch {}): {} waiting batches with {} readings "
        "(complete), {} drops they carried, {} pending drops{}; counted as dropped "
        "(store_damaged) and reported in the next batch; seqs [{}]",
        epoch, found.batches, found.readings, found.carried, found.pending,
        found.pending_known ? "" : " (pending count unreadable)", found.seqs);
  } else {
    spdlog::error(
        "outbox: salvaged the damaged store (epoch {}) only in part ({}): {} waiting batches "
        "with {} readings, {} drops they carried, {} pending drops{} counted as dropped "
        "(store_damaged); AN UNKNOWN NUMBER OF READINGS WAS LOST with it ({}); seqs [{}]",
        epoch, how, found.batches, found.readings, found.carried, found.pending,
        found.pending_known ? "" : " (pending count unreadable)", found.detail, found.seqs);
  }
  if (found.carried_unknown > 0) {
    spdlog::warn("outbox: the `dropped` of {} salvaged batches could not be read",
                 found.carried_unknown);
  }
  Transaction tx(db_);
  if (tx.begun() != SQLITE_OK || !persistCounters() || tx.commit() != SQLITE_OK) return;
  persisted_pending_ = static_cast<int64_t>(pending_dropped_);
  persisted_dropped_ = static_cast<int64_t>(stats_.dropped_readings_total);
  persisted_batches_ = static_cast<int64_t>(stats_.dropped_batches_total);
}

bool Outbox::persistDropCounts() {
  MutexLock lock(mu_);
  if (static_cast<int64_t>(pending_dropped_) == persisted_pending_ &&
      static_cast<int64_t>(stats_.dropped_readings_total) == persisted_dropped_ &&
      static_cast<int64_t>(stats_.dropped_batches_total) == persisted_batches_) {
    return true;
  }
  Transaction tx(db_);
  if (tx.begun() != SQLITE_OK || !persistCounters() || tx.commit() != SQLITE_OK) return false;
  persisted_pending_ = static_cast<int64_t>(pending_dropped_);
  persisted_dropped_ = static_cast<int64_t>(stats_.dropped_readings_total);
  persisted_batches_ = static_cast<int64_t>(stats_.dropped_batches_total);
  return true;
}

uint64_t Outbox::pendingDropped() const {
  MutexLock lock(mu_);
  return pending_dropped_;
}

void Outbox::setLimits(const OutboxLimits& limits) {
  MutexLock lock(mu_);
  options_.max_bytes = limits.max_bytes;
  options_.max_age_s = limits.max_age_s;
  options_.full_policy = limits.full_policy;
}

OutboxLimits Outbox::limits() const {
  MutexLock lock(mu_);
  return {options_.max_bytes, options_.max_age_s, options_.full_policy};
}

OutboxStats Outbox::stats() const {
  MutexLock lock(mu_);
  return stats_;
}

}  // namespace outpost::agent

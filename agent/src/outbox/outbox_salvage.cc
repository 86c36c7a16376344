#include "outpost/agent/outbox_salvage.h"

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <span>

#include "outbox_sql.h"
#include "outpost/common/codec.h"
#include "outpost/common/sqlite.h"

namespace outpost::agent {
namespace {

using sqlite::Stmt;
using SteadyClock = std::chrono::steady_clock;

// sqlite3_progress_handler: interrupts any statement once the deadline has passed
// (SQLITE_INTERRUPT).
struct Budget {
  SteadyClock::time_point deadline;
  bool hit = false;
};
int onProgress(void* p) {
  auto* b = static_cast<Budget*>(p);
  if (SteadyClock::now() >= b->deadline) b->hit = true;
  return b->hit ? 1 : 0;
}

// One waiting batch as far as it could be read (-1: unknown).
struct Row {
  int64_t readings = -1;
  int64_t dropped = -1;
};

void note(std::string& detail, const char* what, sqlite3* db, int rc) {
  if (!detail.empty()) detail += "; ";
  detail += what;
  detail += ": ";
  detail += sqlite3_errstr(rc);
  const char* msg = sqlite3_errmsg(db);
  if (msg != nullptr && std::string(msg) != sqlite3_errstr(rc)) {
    detail += " (";
    detail += msg;
    detail += ")";
  }
}

// A stored readings count that fits the payload's size: every reading or window takes more than
// one byte of the encoded batch, so a count above the size is damaged bytes, not a count.
bool plausible(int64_t readings, int64_t bytes) {
  return readings >= 0 && bytes > 0 && readings <= bytes;
}

// The SQLite header (bytes 16-17 page size, 24-27 change counter, 28-31 page count, 92-95 the
// change counter the page count is valid for) against the file's size.
bool fileTruncated(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return true;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return true;
  unsigned char h[100] = {};
  const bool read = std::fread(h, 1, sizeof h, f) == sizeof h;
  std::fclose(f);
  if (!read) return true;
  auto be32 = [&](int at) {
    return (uint32_t{h[at]} << 24) | (uint32_t{h[at + 1]} << 16) | (uint32_t{h[at + 2]} << 8) |
           uint32_t{h[at + 3]};
  };
  uint64_t page = (uint64_t{h[16]} << 8) | h[17];
  if (page == 1) page = 65536;
  if (page < 512 || (page & (page - 1)) != 0) return true;
  if (size % page != 0) return true;
  if (be32(24) == be32(92) && be32(28) != 0) return size < be32(28) * page;
  return false;
}

}  // namespace

const char* salvageFoundName(SalvageResult::Found f) {
  switch (f) {
    case SalvageResult::Found::kNothing:
      return "nothing";
    case SalvageResult::Found::kPartial:
      return "partial";
    case SalvageResult::Found::kComplete:
      return "complete";
  }
  return "?";
}

SalvageResult salvageStore(const std::string& path, const SalvageLimits& limits) {
  SalvageResult r;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    r.detail = "no such file";
    return r;
  }
  sqlite3* db = nullptr;
  // READONLY: the moved copy is evidence for the operator and is never written (SQLite may create
  // an empty -wal/-shm beside it to read it).
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    note(r.detail, "open", db, rc);
    sqlite3_close_v2(db);
    return r;
  }
  // writable_schema: a file shorter than its header says (truncated) is then read up to its end
  // instead of refused as a whole; the connection is read-only, so nothing is written either way.
  sqlite3_exec(db, "PRAGMA cell_size_check = ON; PRAGMA writable_schema = ON", nullptr, nullptr,
               nullptr);
  Budget budget{SteadyClock::now() + std::chrono::milliseconds(limits.max_ms)};
  sqlite3_progress_handler(db, 1000, onProgress, &budget);

  {
    Stmt s(db, sql::kGetMeta);
    if (s.ok()) {
      s.bind(1, sql::kMetaEpoch);
      if (s.step() == SQLITE_ROW) r.epoch = s.col(0);
      s.reset();
      s.bind(1, sql::kMetaPendingDropped);
      rc = s.step();
      if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        r.pending = rc == SQLITE_ROW ? static_cast<uint64_t>(std::max<int64_t>(0, s.col(0))) : 0;
        r.pending_known = true;
      } else {
        note(r.detail, "meta", db, rc);
      }
    } else {
      note(r.detail, "meta", db, sqlite3_errcode(db));
    }
  }
  int64_t last_seq = -1;
  {
    Stmt s(db, sql::kSalvageLastSeq);
    if (s.ok() && s.step() == SQLITE_ROW) last_seq = s.col(0);
  }

  std::map<int64_t, Row> rows;
  // 1. The covering index: small, separate pages; it may survive damage to the table's pages.
  {
    Stmt s(db, sql::kSalvageIndex);
    if (!s.ok()) {
      note(r.detail, "index", db, sqlite3_errcode(db));
    } else {
      uint64_t n = 0;
      while ((rc = s.step()) == SQLITE_ROW && ++n <= limits.max_rows) {
        Row& found = rows[s.col(0)];  // the seq is known even where its readings are not
        if (plausible(s.col(1), s.col(2))) found.readings = s.col(1);
      }
      if (rc == SQLITE_DONE) {
        r.index_complete = true;
      } else if (rc == SQLITE_ROW) {
        r.capped = true;
      } else {
        note(r.detail, "index", db, rc);
      }
    }
  }
  // 2. The table, one row at a time from a seq on: each found seq's readings and `dropped`. A
  // damaged page fails the statements that touch it; the walk then steps over it (1, 2, 4, ...
  // seqs on, up to the last seq assigned, at most 64 times).
  if (!budget.hit) {
    Stmt next(db, sql::kSalvageNextSeq);
    Stmt row(db, sql::kSalvageRow);
    if (!next.ok() || !row.ok()) {
      note(r.detail, "table", db, sqlite3_errcode(db));
    } else {
      bool errors = false;
      int64_t from = 1, skip = 1;
      int resumes = 0;
      uint64_t n = 0;
      for (;;) {
        if (budget.hit || ++n > limits.max_rows) {
          r.capped = true;
          break;
        }
        next.reset();
        next.bind(1, from);
        rc = next.step();
        if (rc == SQLITE_DONE) {
          r.table_complete = !errors;
          break;
        }
        if (rc != SQLITE_ROW) {
          if (!errors) note(r.detail, "table", db, rc);
          errors = true;
          if (budget.hit || ++resumes > 64 || (last_seq >= 0 && from > last_seq)) break;
          from += skip;
          skip = std::min<int64_t>(skip * 2, int64_t{1} << 20);
          continue;
        }
        const int64_t seq = next.col(0);
        skip = 1;
        from = seq + 1;
        Row& found = rows[seq];
        row.reset();
        row.bind(1, seq);
        const int rrc = row.step();
        if (rrc == SQLITE_ROW) {
          // The table's value where it is plausible for the payload's size (damaged bytes that
          // SQLite cannot notice may sit in either copy).
          if (plausible(row.col(0), sqlite3_column_bytes(row.get(), 2))) {
            found.readings = row.col(0);
          }
          found.dropped = std::max<int64_t>(0, row.col(1));
          if (r.epoch == 0) {
            // The meta row is gone: every stored payload carries the epoch too (verified first:
            // the bytes come from a damaged file).
            const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(row.get(), 2));
            const int len = sqlite3_column_bytes(row.get(), 2);
            if (p != nullptr && len > 0) {
              auto b = codec::verifyBatch(std::span<const uint8_t>(p, static_cast<size_t>(len)),
                                          codec::VerifyLimits{});
              if (b) r.epoch = static_cast<int64_t>((*b)->epoch());
            }
          }
        } else {
          if (!errors) note(r.detail, "table row", db, rrc);
          errors = true;
        }
      }
    }
  }
  if (budget.hit) {
    r.capped = true;
    if (!r.detail.empty()) r.detail += "; ";
    r.detail += "stopped after " + std::to_string(limits.max_ms) + " ms";
  }
  sqlite3_progress_handler(db, 0, nullptr, nullptr);
  sqlite3_close_v2(db);

  // A file shorter than its header says (or not a whole number of pages) was truncated: a page
  // cut in two can read as an empty leaf, so a scan that "reached its end" proves nothing alone.
  // Then only two scans that agree make the salvage complete.
  const bool truncated = fileTruncated(path);
  bool unknown_readings = false;
  int ranges = 0;
  int64_t run_first = -1, run_last = -1;
  auto closeRun = [&] {
    if (run_first < 0) return;
    if (++ranges > 32) {
      if (ranges == 33) r.seqs += ",...";
      return;
    }
    if (!r.seqs.empty()) r.seqs += ",";
    r.seqs += std::to_string(run_first);
    if (run_last != run_first) r.seqs += "-" + std::to_string(run_last);
  };
  for (const auto& [seq, row] : rows) {
    if (seq != run_last + 1 || run_first < 0) {
      closeRun();
      run_first = seq;
    }
    run_last = seq;
    ++r.batches;
    if (row.readings >= 0) {
      r.readings += static_cast<uint64_t>(row.readings);
    } else {
      unknown_readings = true;
    }
    if (row.dropped >= 0) {
      r.carried += static_cast<uint64_t>(row.dropped);
    } else {
      ++r.carried_unknown;
    }
  }
  closeRun();
  const bool proven = truncated ? (r.index_complete && r.table_complete && r.batches > 0)
                                 : (r.index_complete || r.table_complete);
  if (truncated) {
    if (!r.detail.empty()) r.detail += "; ";
    r.detail += "the file is shorter than its header says (truncated)";
  }
  if (proven && !unknown_readings) {
    r.found = SalvageResult::Found::kComplete;
  } else if (r.batches > 0) {
    r.found = SalvageResult::Found::kPartial;
  } else {
    r.found = SalvageResult::Found::kNothing;
  }
  return r;
}

}  // namespace outpost::agent

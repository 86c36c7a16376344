#pragma once

// Salvage of a damaged outbox store (docs/reliability.md, "outbox-damage"): when Outbox::open finds
// a store that is not a readable SQLite database it moves it aside; this reads what can still be
// read from the moved copy, so that the batches that were waiting in it are counted as dropped
// (DropReason::kStoreDamaged) instead of being lost without a count.
//
// Thread-safety: a free function with no shared state; any thread.

#include <cstdint>
#include <string>

namespace outpost::agent {

struct SalvageLimits {
  int64_t max_ms = 2000;         // wall time for the whole salvage (a huge damaged file)
  uint64_t max_rows = 1'000'000;  // waiting batches looked at, per scan
};

struct SalvageResult {
  enum class Found : uint8_t {
    kNothing,   // not even the schema could be read: an unknown number of readings was lost
    kPartial,   // some waiting batches were read, others may be missing
    kComplete,  // every waiting batch was found (a scan of the index or the table reached its end)
  };
  Found found = Found::kNothing;
  int64_t epoch = 0;           // the damaged store's epoch (0: unreadable)
  uint64_t batches = 0;        // waiting batches found
  uint64_t readings = 0;       // their readings (lost: the payloads are not resent)
  uint64_t carried = 0;        // the `dropped` those batches reported (never reached the cloud)
  uint64_t carried_unknown = 0;  // batches found whose `dropped` could not be read
  uint64_t pending = 0;        // drops counted but not yet in any batch (meta pending_dropped)
  bool pending_known = false;  // the meta row could be read
  bool index_complete = false;  // the covering index batches_sizes was read to its end
  bool table_complete = false;  // the table was read to its end without an error
  bool capped = false;          // stopped by SalvageLimits (time or rows), not by the data
  std::string detail;           // what failed, for the log
  std::string seqs;  // the seqs found, as ranges ("5-9,12"); at most 32 ranges, then "..."

  // Everything to report as dropped in the next stored batch.
  uint64_t toReport() const { return readings + carried + pending; }
};
const char* salvageFoundName(SalvageResult::Found f);  // "nothing" | "partial" | "complete"

// Opens `path` (and its -wal, if any) READ-ONLY and reads the waiting batches' seqs and readings
// (the covering index first, then the table row by row, resuming past damaged rows), the `dropped`
// each was carrying and the meta table's pending count. Tolerates SQLITE_CORRUPT / SQLITE_NOTADB
// and I/O errors (it stops that scan and keeps what it read); never writes the database file;
// bounded by `limits`. Never fails: what it could not read is said by `found` and `detail`.
SalvageResult salvageStore(const std::string& path, const SalvageLimits& limits = {});

}  // namespace outpost::agent

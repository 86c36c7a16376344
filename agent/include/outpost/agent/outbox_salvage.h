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
  // The moved store's WAL was damaged (checkWal) and a repaired private copy of it was read
  // (repairWalCopy); the result is `complete` only if every committed frame was proven intact.
  bool wal_repaired = false;
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

// What a store's write-ahead log holds, read by the agent itself BEFORE SQLite opens the store
// (docs/reliability.md, "Damage to the WAL"). SQLite's recovery keeps the frames of the WAL up to
// the last commit frame before the first frame that fails (salt or checksum) and silently drops
// everything after it; that is right for a torn tail (a crash while a commit was written) and
// wrong when bytes in the middle of the log were damaged: committed batches vanish and the seq
// counter goes back within the same epoch. `damaged` is set only on evidence that committed
// frames would be dropped:
//  - a commit frame written in this WAL generation (the header's salts) after the first frame
//    that fails (frames of a generation are written in order from frame 1, so a frame of the
//    current generation after a failing one means the failing one was damaged; older
//    generations' frames, left behind after a checkpoint restarted the log, carry older salts);
//  - a header that fails its magic or checksum while whole frames of one salt pair with a
//    commit among them follow it (SQLite then ignores the whole log);
//  - the -shm wal-index left by the last writer (when its header is intact and names the same
//    salts) saying more frames were committed than SQLite would recover (a truncated log, a
//    damaged last commit frame).
// A torn or short last frame with no commit of this generation after it is a normal uncommitted
// tail, not damage. So is a break after the last commit the writer finished, per a -shm written
// since this boot (the writer was killed, the machine kept running, the -shm is its last state):
// the frames after it are those of transactions that never completed — a commit whose fsync
// failed leaves its frames (commit frame included) in the WAL, and a shorter transaction written
// over their start leaves the rest behind a checksum break — and the writer never reported them
// committed. After a reboot the -shm may be stale, and such a break counts as damage as above. Bounded: at most 64 MB of the log are read. Never writes. Any thread.
struct WalCheck {
  bool damaged = false;
  bool header_valid = false;     // magic, page size, version and header checksum as SQLite wants
  uint32_t page_size = 0;
  uint64_t frames = 0;           // whole frames in the file (read)
  uint64_t recovered = 0;        // frames SQLite's recovery keeps (up to its last valid commit)
  uint64_t first_bad = 0;        // 1-based frame where SQLite's recovery stops (0: none)
  uint64_t commits_after = 0;    // commit frames of this generation after first_bad
  uint64_t shm_committed = 0;    // frames the -shm says were committed (0: no usable -shm)
  bool shm_this_boot = false;    // the -shm is usable and was written since this boot
  bool uncommitted_tail = false; // a break after shm_committed, not counted as damage (above)
  std::string what;              // the evidence, for the log
};
WalCheck checkWal(const std::string& db_path);

// Writes to `out_wal` a copy of `db_path`'s WAL that SQLite will read past the damage: the
// frames of the current generation up to its last commit frame whose content is proven intact,
// each frame's salts set to the generation's and the cumulative checksums recomputed (frames
// whose header is unreadable are left out; frames whose page is damaged are kept, the salvage's
// row-by-row reading deals with their pages). `exact` is true only when every frame of the
// generation up to the last commit (or the -shm's committed count, if larger) is present and
// verified intact by the original checksum chain — then the copy holds exactly what was
// committed. Never writes `db_path` or its WAL.
struct WalRepair {
  bool written = false;
  bool exact = false;
  uint64_t kept = 0;       // frames written to the copy
  uint64_t damaged = 0;    // of them, frames whose content failed its checksum
  uint64_t dropped = 0;    // frames of the generation left out (header unreadable)
  std::string detail;
};
WalRepair repairWalCopy(const std::string& db_path, const std::string& out_wal);

// Salvage of a store moved aside: when its WAL is damaged (checkWal), salvageStore() on a private
// copy (a hard link of the database, or a copy, beside it and a repaired WAL, all removed after)
// and `found` capped at partial unless the repair was exact; otherwise salvageStore() itself.
SalvageResult salvageMovedStore(const std::string& path, const SalvageLimits& limits = {});

}  // namespace outpost::agent

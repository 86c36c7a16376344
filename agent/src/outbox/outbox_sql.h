#pragma once

// Every SQL statement of the outbox, in one place; always used through prepared statements.

namespace outpost::agent::sql {

inline constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- the batch's wire seq; never reused
  created_us INTEGER NOT NULL,
  readings   INTEGER NOT NULL,
  bytes      INTEGER NOT NULL,
  payload    BLOB NOT NULL,                       -- the encoded FlatBuffers Batch
  dropped    INTEGER NOT NULL DEFAULT 0           -- the `dropped` the payload reports
);
)sql";

// Stores created before the `dropped` column existed.
inline constexpr const char* kHasDropped = "SELECT dropped FROM batches LIMIT 0";
inline constexpr const char* kAddDropped =
    "ALTER TABLE batches ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0";
// Covering index: start-up totals (COUNT, SUM(bytes)) scan this small index, not the payload
// pages (a 1 GB store opens in well under a second).
inline constexpr const char* kIndex =
    "CREATE INDEX IF NOT EXISTS batches_sizes ON batches(bytes, readings)";

inline constexpr const char* kGetMeta = "SELECT value FROM meta WHERE key = ?1";
inline constexpr const char* kSetMeta =
    "INSERT INTO meta(key, value) VALUES(?1, ?2) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value";
inline constexpr const char* kLastSeq = "SELECT seq FROM sqlite_sequence WHERE name = 'batches'";
inline constexpr const char* kTotals =
    "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM batches INDEXED BY batches_sizes";
inline constexpr const char* kOldest =
    "SELECT seq, readings, bytes, created_us, dropped FROM batches ORDER BY seq LIMIT 1";
inline constexpr const char* kInsert =
    "INSERT INTO batches(seq, created_us, readings, bytes, payload, dropped) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
inline constexpr const char* kReadAsc =
    "SELECT seq, readings, created_us, payload FROM batches WHERE seq > ?1 AND seq < ?2 "
    "ORDER BY seq LIMIT ?3";
inline constexpr const char* kReadDesc =
    "SELECT seq, readings, created_us, payload FROM batches WHERE seq > ?1 AND seq < ?2 "
    "ORDER BY seq DESC LIMIT ?3";
inline constexpr const char* kDelete = "DELETE FROM batches WHERE seq = ?1 RETURNING bytes";

// Salvage of a damaged store (outbox_salvage.cc), read-only. The covering index holds every
// waiting batch's seq (the rowid) and readings without the payload pages; the table is read one
// row per statement from a seq on, so that a damaged row or page can be stepped over.
inline constexpr const char* kSalvageIndex =
    "SELECT seq, readings, bytes FROM batches INDEXED BY batches_sizes";
inline constexpr const char* kSalvageNextSeq =
    "SELECT seq FROM batches WHERE seq >= ?1 ORDER BY seq LIMIT 1";
inline constexpr const char* kSalvageRow =
    "SELECT readings, dropped, payload FROM batches WHERE seq = ?1";
inline constexpr const char* kSalvageLastSeq =
    "SELECT seq FROM sqlite_sequence WHERE name = 'batches'";

// meta keys
inline constexpr const char* kMetaEpoch = "epoch";
inline constexpr const char* kMetaPendingDropped = "pending_dropped";
inline constexpr const char* kMetaDroppedTotal = "dropped_readings_total";
inline constexpr const char* kMetaDroppedBatches = "dropped_batches_total";

}  // namespace outpost::agent::sql

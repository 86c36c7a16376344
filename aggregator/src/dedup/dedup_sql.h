#pragma once

// Every SQL statement of the dedup store, in one place; always used through prepared statements.

namespace outpost::aggregator::sql {

inline constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS done_ranges (
  device TEXT    NOT NULL,
  epoch  INTEGER NOT NULL,
  lo     INTEGER NOT NULL,   -- first completed seq of the range
  hi     INTEGER NOT NULL,   -- last completed seq of the range (inclusive)
  PRIMARY KEY (device, epoch, lo)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kafka_offsets (
  topic      TEXT    NOT NULL,
  partition  INTEGER NOT NULL,
  last_offset INTEGER NOT NULL,  -- every batch with a message at or below this offset is recorded
  PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
)sql";

inline constexpr const char* kLoadRanges = "SELECT device, epoch, lo, hi FROM done_ranges";
inline constexpr const char* kLoadOffsets = "SELECT topic, partition, last_offset FROM kafka_offsets";
inline constexpr const char* kDeleteStream = "DELETE FROM done_ranges WHERE device = ?1 AND epoch = ?2";
inline constexpr const char* kInsertRange =
    "INSERT INTO done_ranges(device, epoch, lo, hi) VALUES(?1, ?2, ?3, ?4)";
inline constexpr const char* kUpsertOffset =
    "INSERT INTO kafka_offsets(topic, partition, last_offset) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(topic, partition) DO UPDATE SET last_offset = MAX(last_offset, excluded.last_offset)";

}  // namespace outpost::aggregator::sql

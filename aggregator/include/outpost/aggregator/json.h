#pragma once

// JSON for the readings topic (outpost.readings): one message per batch part, readable by any
// consumer (kcat | jq, Kafka Connect, ...). The layout is documented in docs/kafka.md.
// Input must have passed codec::verifyBatch and codec::checkBatchSemantics.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/wire/batch_generated.h"

namespace outpost::aggregator {

// How readings go to the readings topic (kafka.readings_format):
//   kBatch:   one JSON object per batch part (device, epoch, seq, part, parts, readings[], ...)
//   kReading: one flat JSON object per reading (device, sensor, unit, ts, value, quality, epoch,
//             seq, dropped), what generic sinks (JDBC sink, ClickHouse Kafka engine, Telegraf)
//             ingest without custom code. Each is one "part" of its batch (headers part/parts).
enum class ReadingsFormat { kBatch, kReading };

// A batch is split into parts of at most `items_per_part` readings + windows (Kafka messages stay
// well below message.max.bytes however big the batch).
size_t jsonPartCount(const wire::Batch& batch, size_t items_per_part);

// Renders the parts of one batch; what all parts share (sensor fragments, part count) is
// computed once. `batch` must outlive this object.
class BatchJson {
 public:
  BatchJson(const wire::Batch& batch, size_t items_per_part,
            ReadingsFormat format = ReadingsFormat::kBatch);
  size_t parts() const { return parts_; }
  // Appends part `part` (0-based) to `out` as one JSON object.
  void appendPart(size_t part, int64_t received_us, std::string& out) const;

 private:
  void appendFlat(size_t item, std::string& out) const;
  ReadingsFormat format_;
  const wire::Batch& batch_;
  size_t items_per_part_;
  size_t parts_;
  std::vector<std::string> fragments_;  // `"sensor":...,"unit":...` by sensor id
};

// One part, for callers that render a single part.
void appendBatchJson(const wire::Batch& batch, size_t part, size_t items_per_part,
                     int64_t received_us, std::string& out);

}  // namespace outpost::aggregator

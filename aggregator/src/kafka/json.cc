#include "outpost/aggregator/json.h"

#include <algorithm>

#include "outpost/common/json.h"

namespace outpost::aggregator {
namespace {

// The quality as a JSON value, rendered once (Writer::raw): the readings messages are the hot path.
std::string_view qualityJson(wire::Quality q) {
  switch (q) {
    case wire::Quality::Good: return R"("good")";
    case wire::Quality::Suspect: return R"("suspect")";
    case wire::Quality::Bad: return R"("bad")";
  }
  return R"("unknown")";
}

}  // namespace

size_t jsonPartCount(const wire::Batch& batch, size_t items_per_part) {
  const size_t items = (batch.readings() ? batch.readings()->size() : 0) +
                       (batch.windows() ? batch.windows()->size() : 0);
  return items == 0 ? 1 : (items + items_per_part - 1) / items_per_part;
}

BatchJson::BatchJson(const wire::Batch& batch, size_t items_per_part, ReadingsFormat format)
    : format_(format), batch_(batch), items_per_part_(items_per_part),
      parts_(jsonPartCount(batch, format == ReadingsFormat::kReading ? 1 : items_per_part)) {
  if (const auto* sensors = batch.sensors()) {
    uint16_t max_id = 0;
    for (const auto* s : *sensors) max_id = std::max(max_id, s->id());
    fragments_.resize(static_cast<size_t>(max_id) + 1);
    for (const auto* s : *sensors) {
      json::Writer(fragments_[s->id()])
          .member("sensor", s->name()->string_view())
          .member("unit", s->unit() ? s->unit()->string_view() : std::string_view());
    }
  }
}

void appendBatchJson(const wire::Batch& batch, size_t part, size_t items_per_part,
                     int64_t received_us, std::string& out) {
  BatchJson(batch, items_per_part).appendPart(part, received_us, out);
}

void BatchJson::appendFlat(size_t item, std::string& out) const {
  const wire::Batch& batch = batch_;
  const size_t n_readings = batch.readings() ? batch.readings()->size() : 0;
  const size_t n_windows = batch.windows() ? batch.windows()->size() : 0;
  json::Writer w(out);
  w.beginObject().member("device", batch.device_id()->string_view());
  if (item < n_readings) {
    const wire::Reading* r = batch.readings()->Get(static_cast<flatbuffers::uoffset_t>(item));
    w.rawMembers(fragments_[r->sensor()])
        .member("ts", r->ts_us())
        .member("value", r->value())
        .key("quality").raw(qualityJson(r->quality()));
  } else if (item < n_readings + n_windows) {
    // A window statistic: its end as ts, its mean as value, the rest flat beside them.
    const wire::WindowStat* w_stat =
        batch.windows()->Get(static_cast<flatbuffers::uoffset_t>(item - n_readings));
    w.rawMembers(fragments_[w_stat->sensor()])
        .member("ts", w_stat->end_us())
        .member("value", w_stat->mean())
        .key("quality").raw(qualityJson(wire::Quality::Good))
        .member("window_start", w_stat->start_us())
        .key("count").uinteger(w_stat->count())
        .member("min", w_stat->min())
        .member("max", w_stat->max())
        .member("stddev", w_stat->stddev());
  }  // else: a batch without items; one record still carries its (epoch, seq) and drop count
  w.key("epoch").uintString(batch.epoch())
      .key("seq").uinteger(batch.seq())
      .key("dropped").uinteger(item == 0 ? batch.dropped() : 0)  // counted once per batch
      .endObject();
}

void BatchJson::appendPart(size_t part, int64_t received_us, std::string& out) const {
  if (format_ == ReadingsFormat::kReading) return appendFlat(part, out);
  const wire::Batch& batch = batch_;
  const size_t n_readings = batch.readings() ? batch.readings()->size() : 0;
  const size_t n_windows = batch.windows() ? batch.windows()->size() : 0;
  const size_t first = part * items_per_part_;
  const size_t last = std::min(first + items_per_part_, n_readings + n_windows);

  out.reserve(out.size() + 256 + (last - first) * 100);
  json::Writer w(out);
  w.beginObject()
      .member("device", batch.device_id()->string_view())
      .key("epoch").uintString(batch.epoch())  // 63-bit values do not survive JavaScript numbers
      .key("seq").uinteger(batch.seq())
      .key("part").uinteger(part + 1)
      .key("parts").uinteger(parts_)
      .key("dropped").uinteger(part == 0 ? batch.dropped() : 0)  // counted once per batch
      .member("created_us", batch.created_us())
      .member("received_us", received_us)
      .key("readings").beginArray();
  for (size_t i = first; i < std::min(last, n_readings); ++i) {
    const wire::Reading* r = batch.readings()->Get(static_cast<flatbuffers::uoffset_t>(i));
    w.beginObject()
        .rawMembers(fragments_[r->sensor()])
        .member("ts_us", r->ts_us())
        .member("value", r->value())
        .key("quality").raw(qualityJson(r->quality()))
        .endObject();
  }
  w.endArray().key("windows").beginArray();
  for (size_t i = std::max(first, n_readings); i < last; ++i) {
    const wire::WindowStat* ws =
        batch.windows()->Get(static_cast<flatbuffers::uoffset_t>(i - n_readings));
    w.beginObject()
        .rawMembers(fragments_[ws->sensor()])
        .member("start_us", ws->start_us())
        .member("end_us", ws->end_us())
        .key("count").uinteger(ws->count())
        .member("min", ws->min())
        .member("max", ws->max())
        .member("mean", ws->mean())
        .member("stddev", ws->stddev())
        .member("first", ws->first())
        .member("last", ws->last())
        .endObject();
  }
  w.endArray().endObject();
}

}  // namespace outpost::aggregator

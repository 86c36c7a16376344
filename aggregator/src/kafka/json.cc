#include "outpost/aggregator/json.h"

#include <charconv>
#include <cmath>

namespace outpost::aggregator {
namespace {

// Length of a valid UTF-8 sequence starting at s[i], or 0.
size_t utf8Length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t min;
  if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
  else return 0;
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

const char* qualityName(wire::Quality q) {
  switch (q) {
    case wire::Quality::Good: return "good";
    case wire::Quality::Suspect: return "suspect";
    case wire::Quality::Bad: return "bad";
  }
  return "unknown";
}

}  // namespace

void appendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (size_t n = utf8Length(s, i)) {
        out.append(s.data() + i, n);
        i += n;
      } else {
        out += "\\ufffd";
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

void appendJsonNumber(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

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
      std::string& f = fragments_[s->id()];
      f = "\"sensor\":";
      appendJsonString(f, s->name()->string_view());
      f += ",\"unit\":";
      appendJsonString(f, s->unit() ? s->unit()->string_view() : std::string_view());
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
  out += "{\"device\":";
  appendJsonString(out, batch.device_id()->string_view());
  if (item < n_readings) {
    const wire::Reading* r = batch.readings()->Get(static_cast<flatbuffers::uoffset_t>(item));
    out += ',';
    out += fragments_[r->sensor()];
    out += ",\"ts\":";
    appendInt(out, r->ts_us());
    out += ",\"value\":";
    appendJsonNumber(out, r->value());
    out += ",\"quality\":\"";
    out += qualityName(r->quality());
    out += '"';
  } else if (item < n_readings + n_windows) {
    // A window statistic: its end as ts, its mean as value, the rest flat beside them.
    const wire::WindowStat* w =
        batch.windows()->Get(static_cast<flatbuffers::uoffset_t>(item - n_readings));
    out += ',';
    out += fragments_[w->sensor()];
    out += ",\"ts\":";
    appendInt(out, w->end_us());
    out += ",\"value\":";
    appendJsonNumber(out, w->mean());
    out += ",\"quality\":\"good\",\"window_start\":";
    appendInt(out, w->start_us());
    out += ",\"count\":";
    appendUint(out, w->count());
    for (auto [name, v] : {std::pair{",\"min\":", w->min()}, {",\"max\":", w->max()},
                           {",\"stddev\":", w->stddev()}}) {
      out += name;
      appendJsonNumber(out, v);
    }
  }  // else: a batch without items; one record still carries its (epoch, seq) and drop count
  out += ",\"epoch\":\"";
  appendUint(out, batch.epoch());
  out += "\",\"seq\":";
  appendUint(out, batch.seq());
  out += ",\"dropped\":";
  appendUint(out, item == 0 ? batch.dropped() : 0);  // counted once per batch
  out += '}';
}

void BatchJson::appendPart(size_t part, int64_t received_us, std::string& out) const {
  if (format_ == ReadingsFormat::kReading) return appendFlat(part, out);
  const wire::Batch& batch = batch_;
  const size_t items_per_part = items_per_part_;
  const auto& fragments = fragments_;
  const size_t n_readings = batch.readings() ? batch.readings()->size() : 0;
  const size_t n_windows = batch.windows() ? batch.windows()->size() : 0;
  const size_t first = part * items_per_part;
  const size_t last = std::min(first + items_per_part, n_readings + n_windows);

  out.reserve(out.size() + 256 + (last - first) * 100);
  out += "{\"device\":";
  appendJsonString(out, batch.device_id()->string_view());
  out += ",\"epoch\":\"";  // a string: 63-bit values do not survive JavaScript numbers
  appendUint(out, batch.epoch());
  out += "\",\"seq\":";
  appendUint(out, batch.seq());
  out += ",\"part\":";
  appendUint(out, part + 1);
  out += ",\"parts\":";
  appendUint(out, parts_);
  out += ",\"dropped\":";
  appendUint(out, part == 0 ? batch.dropped() : 0);  // counted once per batch
  out += ",\"created_us\":";
  appendInt(out, batch.created_us());
  out += ",\"received_us\":";
  appendInt(out, received_us);
  out += ",\"readings\":[";
  bool comma = false;
  for (size_t i = first; i < std::min(last, n_readings); ++i) {
    const wire::Reading* r = batch.readings()->Get(static_cast<flatbuffers::uoffset_t>(i));
    out += comma ? ",{" : "{";
    comma = true;
    out += fragments[r->sensor()];
    out += ",\"ts_us\":";
    appendInt(out, r->ts_us());
    out += ",\"value\":";
    appendJsonNumber(out, r->value());
    out += ",\"quality\":\"";
    out += qualityName(r->quality());
    out += "\"}";
  }
  out += "],\"windows\":[";
  comma = false;
  for (size_t i = std::max(first, n_readings); i < last; ++i) {
    const wire::WindowStat* w =
        batch.windows()->Get(static_cast<flatbuffers::uoffset_t>(i - n_readings));
    out += comma ? ",{" : "{";
    comma = true;
    out += fragments[w->sensor()];
    out += ",\"start_us\":";
    appendInt(out, w->start_us());
    out += ",\"end_us\":";
    appendInt(out, w->end_us());
    out += ",\"count\":";
    appendUint(out, w->count());
    for (auto [name, v] : {std::pair{",\"min\":", w->min()}, {",\"max\":", w->max()},
                           {",\"mean\":", w->mean()}, {",\"stddev\":", w->stddev()},
                           {",\"first\":", w->first()}, {",\"last\":", w->last()}}) {
      out += name;
      appendJsonNumber(out, v);
    }
    out += "}";
  }
  out += "]}";
}

}  // namespace outpost::aggregator

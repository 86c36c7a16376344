#include "outpost/sim/capture.h"

#include <array>
#include <cerrno>
#include <cstring>

namespace outpost::sim {
namespace {

constexpr size_t kHeaderFixed = 16;  // magic 8 + version 4 + meta length 4
constexpr size_t kRecordFixed = 14;  // recv_us 8 + topic length 2 + payload length 4

std::array<uint32_t, 256> makeCrcTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

void putU16(std::vector<uint8_t>& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void putU32(std::vector<uint8_t>& b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void putU64(std::vector<uint8_t>& b, uint64_t v) {
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
uint64_t getLE(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string sysError(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc) {
  static const std::array<uint32_t, 256> table = makeCrcTable();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

// ---- writer -------------------------------------------------------------------------------------

CaptureWriter::~CaptureWriter() {
  if (f_) std::fclose(f_);
}

Result<std::unique_ptr<CaptureWriter>> CaptureWriter::open(const std::string& path,
                                                           std::string_view meta) {
  if (meta.size() > kMaxCaptureMeta)
    return fail(ErrorCode::kInvalidArgument, "capture metadata too long");
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return fail(ErrorCode::kIoError, sysError("cannot create", path));
  std::unique_ptr<CaptureWriter> w(new CaptureWriter(f, path));
  std::vector<uint8_t> h(kCaptureMagic, kCaptureMagic + 8);
  putU32(h, kCaptureVersion);
  putU32(h, static_cast<uint32_t>(meta.size()));
  h.insert(h.end(), meta.begin(), meta.end());
  if (std::fwrite(h.data(), 1, h.size(), f) != h.size()) {
    return fail(ErrorCode::kIoError, sysError("cannot write", path));
  }
  w->bytes_ = h.size();
  return w;
}

Status CaptureWriter::append(const CaptureRecord& r) {
  if (r.topic.size() > 0xffff)
    return fail(ErrorCode::kInvalidArgument, "topic longer than 65535 bytes");
  const size_t body = kRecordFixed + r.topic.size() + r.payload.size();
  if (body > kMaxCaptureRecord)
    return fail(ErrorCode::kInvalidArgument, "record larger than 64 MiB");
  buf_.clear();
  putU32(buf_, static_cast<uint32_t>(body));
  putU64(buf_, static_cast<uint64_t>(r.recv_us));
  putU16(buf_, static_cast<uint16_t>(r.topic.size()));
  buf_.insert(buf_.end(), r.topic.begin(), r.topic.end());
  putU32(buf_, static_cast<uint32_t>(r.payload.size()));
  buf_.insert(buf_.end(), r.payload.begin(), r.payload.end());
  putU32(buf_, crc32(buf_.data() + 4, body));
  if (std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size()) {
    return fail(ErrorCode::kIoError, sysError("cannot write", path_));
  }
  ++records_;
  bytes_ += buf_.size();
  return {};
}

Status CaptureWriter::flush() {
  if (f_ && std::fflush(f_) != 0) return fail(ErrorCode::kIoError, sysError("cannot flush", path_));
  return {};
}

Status CaptureWriter::close() {
  if (!f_) return {};
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) return fail(ErrorCode::kIoError, sysError("cannot close", path_));
  return {};
}

// ---- reader -------------------------------------------------------------------------------------

CaptureReader::~CaptureReader() {
  if (f_) std::fclose(f_);
}

Result<std::unique_ptr<CaptureReader>> CaptureReader::open(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return fail(ErrorCode::kNotFound, sysError("cannot open", path));
  std::unique_ptr<CaptureReader> r(new CaptureReader(f, path));
  if (std::fseek(f, 0, SEEK_END) == 0) {
    const long sz = std::ftell(f);
    r->size_ = sz > 0 ? static_cast<uint64_t>(sz) : 0;
    std::fseek(f, 0, SEEK_SET);
  }
  uint8_t h[kHeaderFixed];
  if (std::fread(h, 1, sizeof h, f) != sizeof h || std::memcmp(h, kCaptureMagic, 8) != 0) {
    return fail(ErrorCode::kCorrupt, path + ": not an Outpost capture file (bad magic)");
  }
  r->version_ = static_cast<uint32_t>(getLE(h + 8, 4));
  if (r->version_ == 0 || r->version_ > kCaptureVersion) {
    return fail(ErrorCode::kInvalidArgument, path + ": capture version " +
                                                 std::to_string(r->version_) +
                                                 " is not supported (this reader knows 1.." +
                                                 std::to_string(kCaptureVersion) + ")");
  }
  const auto meta_len = static_cast<uint32_t>(getLE(h + 12, 4));
  if (meta_len > kMaxCaptureMeta || kHeaderFixed + meta_len > r->size_) {
    return fail(ErrorCode::kCorrupt, path + ": capture header metadata length " +
                                         std::to_string(meta_len) + " exceeds the file");
  }
  r->meta_.resize(meta_len);
  if (meta_len && std::fread(r->meta_.data(), 1, meta_len, f) != meta_len) {
    return fail(ErrorCode::kCorrupt, path + ": capture header truncated");
  }
  r->offset_ = r->first_record_ = kHeaderFixed + meta_len;
  return r;
}

Result<std::optional<CaptureRecord>> CaptureReader::next() {
  for (;;) {
    const uint64_t at = offset_;
    if (at == size_) return std::optional<CaptureRecord>();
    uint8_t lenb[4];
    if (size_ - at < 4 || std::fread(lenb, 1, 4, f_) != 4) {
      stats_.truncated_tail = true;
      offset_ = size_;
      return std::optional<CaptureRecord>();
    }
    const auto body = static_cast<uint32_t>(getLE(lenb, 4));
    if (body < kRecordFixed || body > kMaxCaptureRecord) {
      return fail(ErrorCode::kCorrupt, path_ + ": record at byte " + std::to_string(at) +
                                           " has impossible length " + std::to_string(body));
    }
    if (size_ - at < 4ull + body + 4) {  // the recorder died mid-record
      stats_.truncated_tail = true;
      offset_ = size_;
      return std::optional<CaptureRecord>();
    }
    std::vector<uint8_t> b(body + 4);
    if (std::fread(b.data(), 1, b.size(), f_) != b.size()) {
      return fail(ErrorCode::kIoError, path_ + ": read failed at byte " + std::to_string(at));
    }
    offset_ = at + 4 + body + 4;
    const auto topic_len = static_cast<size_t>(getLE(b.data() + 8, 2));
    if (10 + topic_len + 4 > body) {
      return fail(ErrorCode::kCorrupt, path_ + ": record at byte " + std::to_string(at) +
                                           ": topic length exceeds the record");
    }
    const auto payload_len = static_cast<size_t>(getLE(b.data() + 10 + topic_len, 4));
    if (kRecordFixed + topic_len + payload_len != body) {
      return fail(ErrorCode::kCorrupt,
                  path_ + ": record at byte " + std::to_string(at) + ": lengths do not add up");
    }
    if (crc32(b.data(), body) != static_cast<uint32_t>(getLE(b.data() + body, 4))) {
      ++stats_.bad_crc;  // framing is intact: skip just this record
      continue;
    }
    CaptureRecord rec;
    rec.recv_us = static_cast<int64_t>(getLE(b.data(), 8));
    rec.topic.assign(reinterpret_cast<const char*>(b.data() + 10), topic_len);
    rec.payload.assign(b.data() + 14 + topic_len, b.data() + 14 + topic_len + payload_len);
    ++stats_.records;
    return std::optional<CaptureRecord>(std::move(rec));
  }
}

Status CaptureReader::rewind() {
  if (std::fseek(f_, static_cast<long>(first_record_), SEEK_SET) != 0) {
    return fail(ErrorCode::kIoError, sysError("cannot seek", path_));
  }
  offset_ = first_record_;
  return {};
}

}  // namespace outpost::sim

#pragma once

// Capture files of uplink traffic (docs/capture-format.md): a versioned header, then
// length-prefixed records (receive time, topic, payload) each with a CRC-32.
//
// Captures are untrusted input: the reader bounds every length, checks every CRC and never
// reads past the end. A truncated last record (a recorder killed mid-write) is tolerated and
// reported; a record with a bad CRC is skipped and counted; a record whose lengths do not add up
// stops the reading with kCorrupt (nothing after it can be framed reliably).
//
// Thread-safety: none; one thread owns a writer or reader.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/common/status.h"

namespace outpost::sim {

inline constexpr char kCaptureMagic[8] = {'O', 'P', 'C', 'A', 'P', 'T', 'R', '\n'};
inline constexpr uint32_t kCaptureVersion = 1;
inline constexpr uint32_t kMaxCaptureRecord = 64u << 20;  // 64 MiB: larger is corrupt
inline constexpr uint32_t kMaxCaptureMeta = 1u << 20;

struct CaptureRecord {
  int64_t recv_us = 0;  // receive time, µs since the Unix epoch (recorder's wall clock)
  std::string topic;
  std::vector<uint8_t> payload;
};

uint32_t crc32(const uint8_t* data, size_t n, uint32_t crc = 0);

class CaptureWriter {
 public:
  ~CaptureWriter();
  // Creates (truncates) `path` and writes the header with `meta` (free text, JSON by convention).
  static Result<std::unique_ptr<CaptureWriter>> open(const std::string& path,
                                                     std::string_view meta);
  Status append(const CaptureRecord& record);
  Status flush();  // to the OS (fflush)
  Status close();
  uint64_t records() const { return records_; }
  uint64_t bytes() const { return bytes_; }

 private:
  CaptureWriter(FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  FILE* f_;
  std::string path_;
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
  std::vector<uint8_t> buf_;
};

struct CaptureStats {
  uint64_t records = 0;         // good records returned
  uint64_t bad_crc = 0;         // skipped
  bool truncated_tail = false;  // the file ended inside a record (ignored)
};

class CaptureReader {
 public:
  ~CaptureReader();
  // Opens and checks the header: magic (kCorrupt "not a capture file"), version (kInvalidArgument
  // "capture version N is newer than this reader's 1").
  static Result<std::unique_ptr<CaptureReader>> open(const std::string& path);
  // The next good record; nullopt at the end (clean or truncated tail). kCorrupt when framing is
  // lost, with the byte offset.
  Result<std::optional<CaptureRecord>> next();
  // Back to the first record (replay --loop).
  Status rewind();
  const std::string& meta() const { return meta_; }
  uint32_t version() const { return version_; }
  const CaptureStats& stats() const { return stats_; }
  uint64_t fileSize() const { return size_; }
  uint64_t offset() const { return offset_; }

 private:
  CaptureReader(FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  FILE* f_ = nullptr;
  std::string path_;
  std::string meta_;
  uint32_t version_ = 0;
  uint64_t size_ = 0;
  uint64_t offset_ = 0;
  uint64_t first_record_ = 0;
  CaptureStats stats_;
};

}  // namespace outpost::sim

#pragma once

// The batch codec: the only code that builds or reads wire-format bytes.
//
// Reading untrusted bytes is two steps, in this order, and nothing else may touch them:
//   1. verifyBatch(): size limit, file identifier, FlatBuffers Verifier, schema version;
//   2. checkBatchSemantics(): device id form and match, epoch/seq, sensor dictionary, timestamps,
//      window consistency.
// A failure names a stable reason (for metrics and dead-letter headers) and a human-readable detail.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/common/status.h"
#include "outpost/wire/ack_generated.h"
#include "outpost/wire/batch_generated.h"

namespace outpost::codec {

inline constexpr uint16_t kBatchSchemaVersion = 1;
inline constexpr uint16_t kAckSchemaVersion = 1;

struct SensorInfo {
  uint16_t id = 0;
  std::string name;
  std::string unit;
};

// Everything a batch carries, in plain C++ types (the encoder's input).
struct BatchContent {
  std::string device_id;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  uint64_t dropped = 0;
  int64_t created_us = 0;
  std::vector<SensorInfo> sensors;
  std::vector<wire::Reading> readings;
  std::vector<wire::WindowStat> windows;
};

// Serialises a batch. Scalars are always written (force_defaults), so the size of the result does
// not depend on the values of epoch/seq/dropped: callers may re-encode with a new `dropped` and
// rely on the same size.
std::vector<uint8_t> encodeBatch(const BatchContent& batch);

struct AckContent {
  std::string device_id;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  wire::AckStatus status = wire::AckStatus::Accepted;
  std::string reason;
};
std::vector<uint8_t> encodeAck(const AckContent& ack);

// Why bytes were rejected. The names (reasonName) are stable: they appear in metrics labels and in
// the `outpost-reason` header of dead letters.
enum class Reason {
  kTooLarge,
  kTooSmall,
  kBadIdentifier,
  kVerifierFailed,
  kUnsupportedVersion,
  kBadDeviceId,
  kDeviceMismatch,
  kBadEpoch,
  kBadSeq,
  kEmpty,
  kTooManyReadings,
  kBadSensorDictionary,
  kUnknownSensor,
  kBadTimestamp,
  kBadWindow,
};
const char* reasonName(Reason reason);

struct DecodeError {
  Reason reason;
  std::string detail;
  std::string toString() const { return std::string(reasonName(reason)) + ": " + detail; }
};

struct VerifyLimits {
  size_t max_bytes = 4 * 1024 * 1024;
  size_t max_readings = 100000;
  size_t max_windows = 10000;
  size_t max_sensors = 4096;
  // Readings older than this (absolute, µs since epoch) are rejected: 2000-01-01T00:00:00Z.
  int64_t min_timestamp_us = 946684800LL * 1000000;
  // Readings further in the future than now + this are rejected (device clock far ahead).
  int64_t max_future_skew_us = 24LL * 3600 * 1000000;
};

// Step 1 on untrusted bytes. On success the returned pointer aliases `bytes`. Pass 8-byte aligned
// buffers (heap buffers are): FlatBuffers reads scalars in place, and some ARM cores fault on
// misaligned 8-byte loads.
std::expected<const wire::Batch*, DecodeError> verifyBatch(std::span<const uint8_t> bytes,
                                                           const VerifyLimits& limits);

// Step 2. `expected_device` is the identity the transport vouches for (the MQTT topic segment, the
// authenticated client); empty means no identity to match. `now_us` is the receiver's wall clock.
std::expected<void, DecodeError> checkBatchSemantics(const wire::Batch& batch,
                                                     const VerifyLimits& limits, int64_t now_us,
                                                     std::string_view expected_device);

// Verifies an Ack (size limit + Verifier + required fields).
std::expected<const wire::Ack*, DecodeError> verifyAck(std::span<const uint8_t> bytes,
                                                       size_t max_bytes = 4096);

// Device ids: 1..64 characters of [A-Za-z0-9._-], not starting with '.' (safe in MQTT topics,
// Kafka keys, file names and metric labels).
bool isValidDeviceId(std::string_view id);

// Decodes a verified batch back into plain types (tests, tools; not the hot path).
BatchContent toContent(const wire::Batch& batch);

}  // namespace outpost::codec

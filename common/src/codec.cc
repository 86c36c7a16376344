#include "outpost/common/codec.h"

#include <cmath>
#include <unordered_set>

#include <flatbuffers/flatbuffers.h>

namespace outpost::codec {
namespace {

std::unexpected<DecodeError> reject(Reason reason, std::string detail) {
  return std::unexpected<DecodeError>(DecodeError{reason, std::move(detail)});
}

// Minimum size of any FlatBuffer with a file identifier: root offset + identifier.
constexpr size_t kMinBufferSize = sizeof(flatbuffers::uoffset_t) + flatbuffers::kFileIdentifierLength;

}  // namespace

const char* reasonName(Reason reason) {
  switch (reason) {
    case Reason::kTooLarge: return "too_large";
    case Reason::kTooSmall: return "too_small";
    case Reason::kBadIdentifier: return "bad_identifier";
    case Reason::kVerifierFailed: return "verifier_failed";
    case Reason::kUnsupportedVersion: return "unsupported_version";
    case Reason::kBadDeviceId: return "bad_device_id";
    case Reason::kDeviceMismatch: return "device_mismatch";
    case Reason::kBadEpoch: return "bad_epoch";
    case Reason::kBadSeq: return "bad_seq";
    case Reason::kEmpty: return "empty";
    case Reason::kTooManyReadings: return "too_many_readings";
    case Reason::kBadSensorDictionary: return "bad_sensor_dictionary";
    case Reason::kUnknownSensor: return "unknown_sensor";
    case Reason::kBadTimestamp: return "bad_timestamp";
    case Reason::kBadWindow: return "bad_window";
  }
  return "unknown";
}

bool isValidDeviceId(std::string_view id) {
  if (id.empty() || id.size() > 64 || id.front() == '.') return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::vector<uint8_t> encodeBatch(const BatchContent& batch) {
  const size_t estimate = 256 + batch.sensors.size() * 64 +
                          batch.readings.size() * sizeof(wire::Reading) +
                          batch.windows.size() * sizeof(wire::WindowStat);
  flatbuffers::FlatBufferBuilder fbb(estimate);
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<wire::Sensor>> sensors;
  sensors.reserve(batch.sensors.size());
  for (const auto& s : batch.sensors) {
    auto name = fbb.CreateString(s.name);
    auto unit = fbb.CreateString(s.unit);
    sensors.push_back(wire::CreateSensor(fbb, s.id, name, unit));
  }
  auto sensors_vec = fbb.CreateVector(sensors);
  auto readings_vec = fbb.CreateVectorOfStructs(batch.readings.data(), batch.readings.size());
  auto windows_vec = fbb.CreateVectorOfStructs(batch.windows.data(), batch.windows.size());
  auto device = fbb.CreateString(batch.device_id);
  auto root = wire::CreateBatch(fbb, kBatchSchemaVersion, device, batch.epoch, batch.seq,
                                batch.dropped, batch.created_us, sensors_vec, readings_vec,
                                windows_vec);
  wire::FinishBatchBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::vector<uint8_t> encodeAck(const AckContent& ack) {
  flatbuffers::FlatBufferBuilder fbb(128 + ack.device_id.size() + ack.reason.size());
  fbb.ForceDefaults(true);
  auto device = fbb.CreateString(ack.device_id);
  auto reason = ack.reason.empty() ? 0 : fbb.CreateString(ack.reason);
  auto root =
      wire::CreateAck(fbb, kAckSchemaVersion, device, ack.epoch, ack.seq, ack.status, reason);
  wire::FinishAckBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

std::expected<const wire::Batch*, DecodeError> verifyBatch(std::span<const uint8_t> bytes,
                                                           const VerifyLimits& limits) {
  if (bytes.size() > limits.max_bytes) {
    return reject(Reason::kTooLarge, std::to_string(bytes.size()) + " bytes, limit " +
                                         std::to_string(limits.max_bytes));
  }
  if (bytes.size() < kMinBufferSize) {
    return reject(Reason::kTooSmall, std::to_string(bytes.size()) + " bytes");
  }
  if (!wire::BatchBufferHasIdentifier(bytes.data())) {
    return reject(Reason::kBadIdentifier, "file identifier is not \"" +
                                              std::string(wire::BatchIdentifier()) + "\"");
  }
  // Depth and table-count limits bound the Verifier's own work on hostile input.
  flatbuffers::Verifier::Options opts;
  opts.max_depth = 16;
  opts.max_tables = 16 + limits.max_sensors;
  flatbuffers::Verifier verifier(bytes.data(), bytes.size(), opts);
  if (!wire::VerifyBatchBuffer(verifier)) {
    return reject(Reason::kVerifierFailed, "FlatBuffers verifier rejected the buffer");
  }
  const wire::Batch* batch = wire::GetBatch(bytes.data());
  // The Verifier checks the 4-byte length field of a vector of structs, not the alignment of its
  // 8-byte-aligned elements: a crafted buffer could make every Reading/WindowStat load misaligned.
  const auto misaligned = [&](const auto* vec) {
    return vec && vec->size() > 0 &&
           (reinterpret_cast<const uint8_t*>(vec->Data()) - bytes.data()) % 8 != 0;
  };
  if (misaligned(batch->readings()) || misaligned(batch->windows())) {
    return reject(Reason::kVerifierFailed, "readings or windows are not 8-byte aligned");
  }
  if (batch->schema_version() == 0 || batch->schema_version() > kBatchSchemaVersion) {
    return reject(Reason::kUnsupportedVersion,
                  "schema_version " + std::to_string(batch->schema_version()) +
                      ", this build reads 1.." + std::to_string(kBatchSchemaVersion));
  }
  return batch;
}

std::expected<void, DecodeError> checkBatchSemantics(const wire::Batch& batch,
                                                     const VerifyLimits& limits, int64_t now_us,
                                                     std::string_view expected_device) {
  const std::string_view device = batch.device_id()->string_view();
  if (!isValidDeviceId(device)) {
    return reject(Reason::kBadDeviceId, "device_id must be 1..64 of [A-Za-z0-9._-]");
  }
  if (!expected_device.empty() && device != expected_device) {
    return reject(Reason::kDeviceMismatch, "batch says device '" + std::string(device) +
                                               "' but arrived as '" + std::string(expected_device) +
                                               "'");
  }
  if (batch.epoch() == 0) return reject(Reason::kBadEpoch, "epoch must be non-zero");
  if (batch.seq() == 0) return reject(Reason::kBadSeq, "seq must be >= 1");

  const auto* readings = batch.readings();
  const auto* windows = batch.windows();
  const size_t n_readings = readings ? readings->size() : 0;
  const size_t n_windows = windows ? windows->size() : 0;
  if (n_readings == 0 && n_windows == 0) {
    return reject(Reason::kEmpty, "batch has neither readings nor windows");
  }
  if (n_readings > limits.max_readings) {
    return reject(Reason::kTooManyReadings, std::to_string(n_readings) + " readings, limit " +
                                                std::to_string(limits.max_readings));
  }
  if (n_windows > limits.max_windows) {
    return reject(Reason::kTooManyReadings, std::to_string(n_windows) + " windows, limit " +
                                                std::to_string(limits.max_windows));
  }

  // Sensor ids are 16-bit: a bitmap of 8 KiB answers "is this id declared" without allocation
  // per reading.
  std::vector<bool> declared(65536, false);
  const auto* sensors = batch.sensors();
  if (sensors) {
    if (sensors->size() > limits.max_sensors) {
      return reject(Reason::kBadSensorDictionary, std::to_string(sensors->size()) +
                                                      " sensors, limit " +
                                                      std::to_string(limits.max_sensors));
    }
    for (const auto* s : *sensors) {
      if (declared[s->id()]) {
        return reject(Reason::kBadSensorDictionary,
                      "sensor id " + std::to_string(s->id()) + " declared twice");
      }
      if (s->name()->size() == 0 || s->name()->size() > 128) {
        return reject(Reason::kBadSensorDictionary,
                      "sensor id " + std::to_string(s->id()) + " has an empty or >128-byte name");
      }
      declared[s->id()] = true;
    }
  }
  const int64_t max_ts = now_us + limits.max_future_skew_us;
  auto check_ts = [&](int64_t ts, const char* what) -> std::expected<void, DecodeError> {
    if (ts < limits.min_timestamp_us || ts > max_ts) {
      return reject(Reason::kBadTimestamp, std::string(what) + " timestamp " + std::to_string(ts) +
                                               " µs is outside [" +
                                               std::to_string(limits.min_timestamp_us) + ", now+" +
                                               std::to_string(limits.max_future_skew_us) + "]");
    }
    return {};
  };
  for (size_t i = 0; i < n_readings; ++i) {
    const wire::Reading* r = readings->Get(static_cast<flatbuffers::uoffset_t>(i));
    if (!declared[r->sensor()]) {
      return reject(Reason::kUnknownSensor, "reading " + std::to_string(i) + " refers to sensor " +
                                                std::to_string(r->sensor()) +
                                                " missing from the dictionary");
    }
    if (auto st = check_ts(r->ts_us(), "reading"); !st) return st;
  }
  for (size_t i = 0; i < n_windows; ++i) {
    const wire::WindowStat* w = windows->Get(static_cast<flatbuffers::uoffset_t>(i));
    if (!declared[w->sensor()]) {
      return reject(Reason::kUnknownSensor, "window " + std::to_string(i) + " refers to sensor " +
                                                std::to_string(w->sensor()) +
                                                " missing from the dictionary");
    }
    if (auto st = check_ts(w->start_us(), "window start"); !st) return st;
    if (auto st = check_ts(w->end_us(), "window end"); !st) return st;
    if (w->end_us() <= w->start_us() || w->count() == 0 ||
        !(w->min() <= w->max()) || w->stddev() < 0) {
      return reject(Reason::kBadWindow,
                    "window " + std::to_string(i) + " is inconsistent (end<=start, count 0, "
                    "min>max or stddev<0)");
    }
  }
  return {};
}

std::expected<const wire::Ack*, DecodeError> verifyAck(std::span<const uint8_t> bytes,
                                                       size_t max_bytes) {
  if (bytes.size() > max_bytes) {
    return reject(Reason::kTooLarge, std::to_string(bytes.size()) + " bytes");
  }
  if (bytes.size() < kMinBufferSize) {
    return reject(Reason::kTooSmall, std::to_string(bytes.size()) + " bytes");
  }
  if (!wire::AckBufferHasIdentifier(bytes.data())) {
    return reject(Reason::kBadIdentifier, "not an Ack");
  }
  flatbuffers::Verifier verifier(bytes.data(), bytes.size());
  if (!wire::VerifyAckBuffer(verifier)) {
    return reject(Reason::kVerifierFailed, "FlatBuffers verifier rejected the ack");
  }
  const wire::Ack* ack = wire::GetAck(bytes.data());
  if (ack->schema_version() == 0 || ack->schema_version() > kAckSchemaVersion) {
    return reject(Reason::kUnsupportedVersion,
                  "ack schema_version " + std::to_string(ack->schema_version()));
  }
  return ack;
}

BatchContent toContent(const wire::Batch& batch) {
  BatchContent out;
  out.device_id = batch.device_id()->str();
  out.epoch = batch.epoch();
  out.seq = batch.seq();
  out.dropped = batch.dropped();
  out.created_us = batch.created_us();
  if (batch.sensors()) {
    for (const auto* s : *batch.sensors()) {
      out.sensors.push_back({s->id(), s->name()->str(), s->unit() ? s->unit()->str() : ""});
    }
  }
  if (batch.readings()) {
    for (const wire::Reading* r : *batch.readings()) out.readings.push_back(*r);
  }
  if (batch.windows()) {
    for (const wire::WindowStat* w : *batch.windows()) out.windows.push_back(*w);
  }
  return out;
}

}  // namespace outpost::codec

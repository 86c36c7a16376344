#include "outpost/common/codec.h"

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <flatbuffers/flatbuffers.h>

namespace codec = outpost::codec;
namespace wire = outpost::wire;
using codec::Reason;

namespace {

// 2023-11-14T22:13:20Z, the receiver's clock in every test.
constexpr int64_t kNow = 1'700'000'000'000'000;
constexpr int64_t kSecond = 1'000'000;

codec::BatchContent sampleBatch() {
  codec::BatchContent b;
  b.device_id = "dev-01";
  b.epoch = 7;
  b.seq = 42;
  b.dropped = 3;
  b.created_us = kNow;
  b.sensors = {{1, "temp", "C"}, {2, "humidity", "%"}, {7, "pressure", ""}};
  b.readings = {
      wire::Reading(kNow - 3 * kSecond, 21.5, 1, wire::Quality::Good),
      wire::Reading(kNow - 2 * kSecond, 48.25, 2, wire::Quality::Suspect),
      wire::Reading(kNow - 1 * kSecond, -1.0e300, 7, wire::Quality::Bad),
  };
  b.windows = {
      wire::WindowStat(kNow - 10 * kSecond, kNow, 20.0, 22.0, 21.0, 0.5, 20.5, 21.5, 10, 1),
  };
  return b;
}

codec::BatchContent readingsOnly() {
  codec::BatchContent b = sampleBatch();
  b.windows.clear();
  return b;
}

codec::BatchContent windowsOnly() {
  codec::BatchContent b = sampleBatch();
  b.readings.clear();
  b.sensors = {{1, "t", ""}};
  return b;
}

void requireSame(const codec::BatchContent& a, const codec::BatchContent& b) {
  CHECK(a.device_id == b.device_id);
  CHECK(a.epoch == b.epoch);
  CHECK(a.seq == b.seq);
  CHECK(a.dropped == b.dropped);
  CHECK(a.created_us == b.created_us);
  REQUIRE(a.sensors.size() == b.sensors.size());
  for (size_t i = 0; i < a.sensors.size(); ++i) {
    CHECK(a.sensors[i].id == b.sensors[i].id);
    CHECK(a.sensors[i].name == b.sensors[i].name);
    CHECK(a.sensors[i].unit == b.sensors[i].unit);
  }
  REQUIRE(a.readings.size() == b.readings.size());
  for (size_t i = 0; i < a.readings.size(); ++i) {
    CHECK(a.readings[i].ts_us() == b.readings[i].ts_us());
    CHECK(a.readings[i].value() == b.readings[i].value());
    CHECK(a.readings[i].sensor() == b.readings[i].sensor());
    CHECK(a.readings[i].quality() == b.readings[i].quality());
  }
  REQUIRE(a.windows.size() == b.windows.size());
  for (size_t i = 0; i < a.windows.size(); ++i) {
    const auto& x = a.windows[i];
    const auto& y = b.windows[i];
    CHECK(x.start_us() == y.start_us());
    CHECK(x.end_us() == y.end_us());
    CHECK(x.min() == y.min());
    CHECK(x.max() == y.max());
    CHECK(x.mean() == y.mean());
    CHECK(x.stddev() == y.stddev());
    CHECK(x.first() == y.first());
    CHECK(x.last() == y.last());
    CHECK(x.count() == y.count());
    CHECK(x.sensor() == y.sensor());
  }
}

// Encodes, verifies and checks; returns the error (if any) of either step.
std::optional<codec::DecodeError> decode(const std::vector<uint8_t>& bytes,
                                         std::string_view expected_device = "",
                                         const codec::VerifyLimits& limits = {}) {
  auto batch = codec::verifyBatch(bytes, limits);
  if (!batch) return batch.error();
  auto sem = codec::checkBatchSemantics(**batch, limits, kNow, expected_device);
  if (!sem) return sem.error();
  return std::nullopt;
}

std::optional<codec::DecodeError> decodeContent(const codec::BatchContent& content,
                                                std::string_view expected_device = "",
                                                const codec::VerifyLimits& limits = {}) {
  return decode(codec::encodeBatch(content), expected_device, limits);
}

// Builds a Batch directly with the generated API (for what encodeBatch refuses to produce).
std::vector<uint8_t> rawBatch(uint16_t schema_version, bool with_device = true) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<wire::Sensor>> sensors{
      wire::CreateSensor(fbb, 1, fbb.CreateString("temp"), fbb.CreateString("C"))};
  auto sensors_vec = fbb.CreateVector(sensors);
  std::vector<wire::Reading> readings{wire::Reading(kNow, 1.0, 1, wire::Quality::Good)};
  auto readings_vec = fbb.CreateVectorOfStructs(readings.data(), readings.size());
  flatbuffers::Offset<wire::Batch> root;
  if (with_device) {
    auto device = fbb.CreateString("dev-01");
    root = wire::CreateBatch(fbb, schema_version, device, 1, 1, 0, kNow, sensors_vec, readings_vec,
                             0);
  } else {
    // Field by field: the generated builder asserts required fields in debug builds.
    const auto start = fbb.StartTable();
    fbb.AddOffset(wire::Batch::VT_READINGS, readings_vec);
    fbb.AddOffset(wire::Batch::VT_SENSORS, sensors_vec);
    fbb.AddElement<int64_t>(wire::Batch::VT_CREATED_US, kNow, 0);
    fbb.AddElement<uint64_t>(wire::Batch::VT_SEQ, 1, 0);
    fbb.AddElement<uint64_t>(wire::Batch::VT_EPOCH, 1, 0);
    fbb.AddElement<uint16_t>(wire::Batch::VT_SCHEMA_VERSION, schema_version, 1);
    root = flatbuffers::Offset<wire::Batch>(fbb.EndTable(start));
  }
  wire::FinishBatchBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

}  // namespace

TEST_CASE("encodeBatch round-trips through verify, semantics and toContent", "[common][codec]") {
  codec::BatchContent in = sampleBatch();
  SECTION("readings and windows") {}
  SECTION("readings only") { in = readingsOnly(); }
  SECTION("windows only") { in = windowsOnly(); }
  SECTION("extreme scalar values") {
    in.epoch = std::numeric_limits<uint64_t>::max();
    in.seq = std::numeric_limits<uint64_t>::max();
    in.dropped = std::numeric_limits<uint64_t>::max();
    in.created_us = std::numeric_limits<int64_t>::min();  // agent clock: not checked
    in.device_id = std::string(64, 'x');
    in.sensors = {{0, std::string(128, 'n'), "unit"}, {65535, "last", ""}};
    in.readings = {wire::Reading(kNow, 0.0, 0, wire::Quality::Good),
                   wire::Reading(kNow, -0.0, 65535, wire::Quality::Good)};
    in.windows.clear();
  }
  SECTION("many readings") {
    in.readings.clear();
    for (int i = 0; i < 5000; ++i) {
      in.readings.emplace_back(kNow - i, i * 0.5, static_cast<uint16_t>(i % 2 + 1),
                               wire::Quality::Good);
    }
  }

  const std::vector<uint8_t> bytes = codec::encodeBatch(in);
  auto batch = codec::verifyBatch(bytes, {});
  REQUIRE(batch.has_value());
  CHECK((*batch)->schema_version() == codec::kBatchSchemaVersion);
  auto sem = codec::checkBatchSemantics(**batch, {}, kNow, in.device_id);
  INFO((sem ? std::string("ok") : sem.error().toString()));
  REQUIRE(sem.has_value());
  requireSame(codec::toContent(**batch), in);
}

// The FlatBuffers builder writes back to front, so the first object it creates (here the first
// sensor's name) ends the buffer, followed by up to 7 zero bytes of alignment padding that no field
// refers to. Cutting only that padding loses nothing and the Verifier cannot see it; every cut into
// data must be rejected. For shapes without trailing padding, every truncation is rejected.
TEST_CASE("every truncation of a valid batch is rejected", "[common][codec]") {
  codec::BatchContent in = sampleBatch();
  bool padding_free = false;
  SECTION("sample") {}
  SECTION("readings only") { in = readingsOnly(); }
  SECTION("windows only") { in = windowsOnly(); }
  SECTION("sensor names of several lengths") {
    in.sensors = {{1, "a", "b"}, {2, "ab", "abc"}, {7, "abcdefg", "abcdefgh"}};
  }
  SECTION("first sensor name of 3 bytes: no trailing padding") {
    in.sensors[0].name = "tmp";
    padding_free = true;
  }
  SECTION("no sensor dictionary: the readings vector ends the buffer") {
    in.sensors.clear();
    in.windows.clear();
    padding_free = true;
  }
  const std::vector<uint8_t> bytes = codec::encodeBatch(in);
  REQUIRE(codec::verifyBatch(bytes, {}).has_value());
  size_t accepted = 0;
  for (size_t len = 0; len < bytes.size(); ++len) {
    // A fresh heap copy of exactly `len` bytes: ASan sees any read past the end.
    std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
    if (len) std::memcpy(copy.get(), bytes.data(), len);
    auto r = codec::verifyBatch(std::span<const uint8_t>(copy.get(), len), {});
    INFO("prefix length " << len << " of " << bytes.size());
    if (r.has_value()) {
      // Only trailing padding was cut: the content is complete.
      ++accepted;
      CHECK_FALSE(padding_free);
      CHECK(bytes.size() - len < 8);
      for (size_t i = len; i < bytes.size(); ++i) CHECK(bytes[i] == 0);
      requireSame(codec::toContent(**r), in);
      continue;
    }
    CHECK_FALSE(r.error().detail.empty());
    CHECK(std::string(codec::reasonName(r.error().reason)) != "unknown");
    if (len < 8) {
      CHECK(r.error().reason == Reason::kTooSmall);
    } else {
      CHECK(r.error().reason == Reason::kVerifierFailed);
    }
  }
  CHECK(accepted < 8);
  if (padding_free) CHECK(accepted == 0);
}

TEST_CASE("corrupted batches never crash the decoder", "[common][codec]") {
  const std::vector<uint8_t> good = codec::encodeBatch(windowsOnly());
  size_t rejected = 0;
  size_t total = 0;
  auto run = [&](const std::vector<uint8_t>& bytes) {
    ++total;
    auto batch = codec::verifyBatch(bytes, {});
    if (!batch) {
      ++rejected;
      CHECK_FALSE(batch.error().detail.empty());
      return;
    }
    // Accepted by the verifier: the semantic checks and the decoder must cope with anything.
    auto sem = codec::checkBatchSemantics(**batch, {}, kNow, "");
    if (!sem) {
      ++rejected;
      CHECK_FALSE(sem.error().detail.empty());
    }
    (void)codec::toContent(**batch);
  };
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t v : {uint8_t(good[i] ^ 0xFF), uint8_t(0xFF), uint8_t(0x00), uint8_t(good[i] + 1)}) {
      std::vector<uint8_t> bad = good;
      bad[i] = v;
      if (bad == good) continue;
      run(bad);
    }
  }
  INFO(rejected << " of " << total << " corrupted buffers rejected");
  CHECK(rejected > 0);
  CHECK(total > 0);
}

TEST_CASE("verifyBatch rejects malformed envelopes", "[common][codec]") {
  const std::vector<uint8_t> good = codec::encodeBatch(sampleBatch());

  SECTION("fewer than 8 bytes is too small") {
    for (size_t n = 0; n < 8; ++n) {
      std::vector<uint8_t> small(good.begin(), good.begin() + static_cast<long>(n));
      auto r = codec::verifyBatch(small, {});
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().reason == Reason::kTooSmall);
    }
  }
  SECTION("wrong file identifier") {
    std::vector<uint8_t> bad = good;
    std::memcpy(bad.data() + 4, "XXXX", 4);
    auto r = codec::verifyBatch(bad, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kBadIdentifier);
    CHECK(r.error().toString().find("bad_identifier") == 0);
  }
  SECTION("an Ack is not a Batch") {
    auto ack = codec::encodeAck({"dev-01", 1, 1, wire::AckStatus::Accepted, ""});
    auto r = codec::verifyBatch(ack, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kBadIdentifier);
  }
  SECTION("larger than the limit") {
    codec::VerifyLimits limits;
    limits.max_bytes = good.size() - 1;
    auto r = codec::verifyBatch(good, limits);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kTooLarge);
    limits.max_bytes = good.size();
    CHECK(codec::verifyBatch(good, limits).has_value());
  }
  SECTION("larger than the default 4 MiB limit, checked before anything else") {
    std::vector<uint8_t> huge(4 * 1024 * 1024 + 1, 0);
    auto r = codec::verifyBatch(huge, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kTooLarge);
  }
  SECTION("schema_version 0 and newer than this build") {
    for (uint16_t v : {uint16_t(0), uint16_t(2), uint16_t(99), uint16_t(65535)}) {
      auto r = codec::verifyBatch(rawBatch(v), {});
      INFO("schema_version " << v);
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error().reason == Reason::kUnsupportedVersion);
      CHECK(r.error().detail.find(std::to_string(v)) != std::string::npos);
    }
    CHECK(codec::verifyBatch(rawBatch(1), {}).has_value());
  }
  SECTION("missing required device_id") {
    auto r = codec::verifyBatch(rawBatch(1, /*with_device=*/false), {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kVerifierFailed);
  }
  SECTION("missing required sensor name") {
    flatbuffers::FlatBufferBuilder fbb;
    // Field by field: the generated builder asserts required fields in debug builds.
    const auto sensor_start = fbb.StartTable();
    fbb.AddElement<uint16_t>(wire::Sensor::VT_ID, 1, 0);
    std::vector<flatbuffers::Offset<wire::Sensor>> sensors{
        flatbuffers::Offset<wire::Sensor>(fbb.EndTable(sensor_start))};
    auto sv = fbb.CreateVector(sensors);
    auto dev = fbb.CreateString("dev-01");
    wire::FinishBatchBuffer(fbb, wire::CreateBatch(fbb, 1, dev, 1, 1, 0, kNow, sv));
    std::vector<uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    auto r = codec::verifyBatch(bytes, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kVerifierFailed);
  }
  SECTION("garbage after a valid identifier") {
    std::vector<uint8_t> bad(64, 0xAB);
    std::memcpy(bad.data() + 4, "OPB1", 4);
    auto r = codec::verifyBatch(bad, {});
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kVerifierFailed);
  }
}

// Regression: the FlatBuffers Verifier (2.0.8) checks only the 4-byte alignment of a vector's
// length, not the 8-byte alignment of struct elements, so a crafted batch whose readings or windows
// started at 4 mod 8 was accepted and then read through misaligned 8-byte loads (undefined
// behaviour; found by UBSan on the corrupted-buffer test).
TEST_CASE("verifyBatch rejects struct vectors that are not 8-byte aligned", "[common][codec]") {
  // Builds a batch whose readings (or windows) vector is written 4-byte aligned only, after a
  // filler string of `filler` bytes that shifts where it lands.
  auto craft = [](size_t filler, bool windows) {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.ForceDefaults(true);
    auto pad = fbb.CreateString(std::string(filler, 'p'));
    (void)pad;
    std::vector<flatbuffers::Offset<wire::Sensor>> sensors{
        wire::CreateSensor(fbb, 1, fbb.CreateString("temp"), fbb.CreateString("C"))};
    auto sensors_vec = fbb.CreateVector(sensors);
    const wire::Reading r(kNow, 1.0, 1, wire::Quality::Good);
    const wire::WindowStat w(kNow - kSecond, kNow, 1, 2, 1.5, 0.1, 1, 2, 3, 1);
    // As CreateVectorOfStructs does, but aligned as if the elements were 4-byte words.
    fbb.StartVector((windows ? sizeof(w) : sizeof(r)) / 4, 4);
    if (windows) {
      fbb.PushBytes(reinterpret_cast<const uint8_t*>(&w), sizeof(w));
    } else {
      fbb.PushBytes(reinterpret_cast<const uint8_t*>(&r), sizeof(r));
    }
    const flatbuffers::uoffset_t vec = fbb.EndVector(1);
    auto device = fbb.CreateString("dev-01");
    flatbuffers::Offset<flatbuffers::Vector<const wire::Reading*>> readings_vec(windows ? 0 : vec);
    flatbuffers::Offset<flatbuffers::Vector<const wire::WindowStat*>> windows_vec(windows ? vec : 0);
    wire::FinishBatchBuffer(fbb, wire::CreateBatch(fbb, 1, device, 1, 1, 0, kNow, sensors_vec,
                                                   readings_vec, windows_vec));
    return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  };
  for (bool windows : {false, true}) {
    int misaligned = 0;
    int aligned = 0;
    for (size_t filler = 0; filler < 8; ++filler) {
      const std::vector<uint8_t> bytes = craft(filler, windows);
      // Where did the vector land? (The unchecked accessor is safe on bytes we built ourselves.)
      const wire::Batch* raw = wire::GetBatch(bytes.data());
      const uint8_t* data = windows ? reinterpret_cast<const uint8_t*>(raw->windows()->Data())
                                    : reinterpret_cast<const uint8_t*>(raw->readings()->Data());
      const bool is_misaligned = (data - bytes.data()) % 8 != 0;
      auto r = codec::verifyBatch(bytes, {});
      INFO((windows ? "windows" : "readings") << ", filler " << filler);
      if (is_misaligned) {
        ++misaligned;
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().reason == Reason::kVerifierFailed);
        CHECK(r.error().detail.find("aligned") != std::string::npos);
      } else {
        ++aligned;
        REQUIRE(r.has_value());
        CHECK(codec::checkBatchSemantics(**r, {}, kNow, "dev-01").has_value());
      }
    }
    CHECK(misaligned > 0);  // the crafted layout really happened
    CHECK(aligned > 0);
  }
}

TEST_CASE("checkBatchSemantics rejects inconsistent batches", "[common][codec]") {
  codec::BatchContent b = sampleBatch();

  SECTION("the sample is accepted, with and without an expected device") {
    CHECK_FALSE(decodeContent(b).has_value());
    CHECK_FALSE(decodeContent(b, "dev-01").has_value());
  }
  SECTION("device mismatch") {
    auto err = decodeContent(b, "dev-02");
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kDeviceMismatch);
    CHECK(err->detail.find("dev-01") != std::string::npos);
    CHECK(err->detail.find("dev-02") != std::string::npos);
  }
  SECTION("bad device ids") {
    for (std::string id : {std::string(), std::string(65, 'a'), std::string("a/b"),
                           std::string("+"), std::string("#"), std::string(".hidden"),
                           std::string("dev 1"), std::string("d\xc3\xa9v"),
                           std::string("a\0b", 3)}) {
      b.device_id = id;
      auto err = decodeContent(b);
      INFO("device id '" << id << "'");
      REQUIRE(err.has_value());
      CHECK(err->reason == Reason::kBadDeviceId);
    }
  }
  SECTION("epoch 0") {
    b.epoch = 0;
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadEpoch);
  }
  SECTION("seq 0") {
    b.seq = 0;
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadSeq);
  }
  SECTION("neither readings nor windows") {
    b.readings.clear();
    b.windows.clear();
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kEmpty);
  }
  SECTION("reading refers to an undeclared sensor") {
    b.readings.emplace_back(kNow, 1.0, 3, wire::Quality::Good);
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kUnknownSensor);
    CHECK(err->detail.find("sensor 3") != std::string::npos);
  }
  SECTION("window refers to an undeclared sensor") {
    b.windows.emplace_back(kNow - kSecond, kNow, 1, 2, 1.5, 0.1, 1, 2, 3, 99);
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kUnknownSensor);
  }
  SECTION("no sensor dictionary at all") {
    b.sensors.clear();
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kUnknownSensor);
  }
  SECTION("duplicate sensor id") {
    b.sensors.push_back({2, "again", ""});
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadSensorDictionary);
    CHECK(err->detail.find("declared twice") != std::string::npos);
  }
  SECTION("empty and over-long sensor names") {
    for (std::string name : {std::string(), std::string(129, 'n')}) {
      b.sensors[0].name = name;
      auto err = decodeContent(b);
      REQUIRE(err.has_value());
      CHECK(err->reason == Reason::kBadSensorDictionary);
    }
  }
  SECTION("reading timestamp before 2000") {
    codec::VerifyLimits limits;
    b.readings[0] = wire::Reading(limits.min_timestamp_us - 1, 1.0, 1, wire::Quality::Good);
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadTimestamp);
    b.readings[0] = wire::Reading(limits.min_timestamp_us, 1.0, 1, wire::Quality::Good);
    CHECK_FALSE(decodeContent(b).has_value());
    b.readings[0] = wire::Reading(0, 1.0, 1, wire::Quality::Good);
    REQUIRE(decodeContent(b).has_value());
    b.readings[0] = wire::Reading(std::numeric_limits<int64_t>::min(), 1.0, 1, wire::Quality::Good);
    REQUIRE(decodeContent(b).has_value());
  }
  SECTION("reading timestamp too far in the future") {
    codec::VerifyLimits limits;
    b.readings[0] =
        wire::Reading(kNow + limits.max_future_skew_us + 1, 1.0, 1, wire::Quality::Good);
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadTimestamp);
    b.readings[0] = wire::Reading(kNow + limits.max_future_skew_us, 1.0, 1, wire::Quality::Good);
    CHECK_FALSE(decodeContent(b).has_value());
    b.readings[0] = wire::Reading(std::numeric_limits<int64_t>::max(), 1.0, 1, wire::Quality::Good);
    REQUIRE(decodeContent(b).has_value());
  }
  SECTION("window timestamps out of range") {
    b.windows[0] = wire::WindowStat(0, kNow, 1, 2, 1.5, 0.1, 1, 2, 3, 1);
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadTimestamp);
    b.windows[0] = wire::WindowStat(kNow, kNow + 48 * 3600 * kSecond, 1, 2, 1.5, 0.1, 1, 2, 3, 1);
    err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadTimestamp);
  }
  SECTION("window with end <= start") {
    b.windows[0] = wire::WindowStat(kNow, kNow, 1, 2, 1.5, 0.1, 1, 2, 3, 1);
    auto err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadWindow);
    b.windows[0] = wire::WindowStat(kNow, kNow - 1, 1, 2, 1.5, 0.1, 1, 2, 3, 1);
    err = decodeContent(b);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadWindow);
  }
  SECTION("window with min > max, NaN bounds, count 0 or negative stddev") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    for (auto w : {wire::WindowStat(kNow - kSecond, kNow, 3, 2, 2.5, 0.1, 3, 2, 3, 1),
                   wire::WindowStat(kNow - kSecond, kNow, nan, 2, 1.5, 0.1, 1, 2, 3, 1),
                   wire::WindowStat(kNow - kSecond, kNow, 1, nan, 1.5, 0.1, 1, 2, 3, 1),
                   wire::WindowStat(kNow - kSecond, kNow, 1, 2, 1.5, 0.1, 1, 2, 0, 1),
                   wire::WindowStat(kNow - kSecond, kNow, 1, 2, 1.5, -0.1, 1, 2, 3, 1)}) {
      b.windows[0] = w;
      auto err = decodeContent(b);
      REQUIRE(err.has_value());
      CHECK(err->reason == Reason::kBadWindow);
    }
    // A single-sample window: min == max, stddev 0.
    b.windows[0] = wire::WindowStat(kNow - kSecond, kNow, 2, 2, 2, 0, 2, 2, 1, 1);
    CHECK_FALSE(decodeContent(b).has_value());
  }
  SECTION("count limits") {
    codec::VerifyLimits limits;
    limits.max_readings = b.readings.size() - 1;
    auto err = decodeContent(b, "", limits);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kTooManyReadings);

    limits = {};
    limits.max_windows = 0;
    err = decodeContent(b, "", limits);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kTooManyReadings);

    limits = {};
    limits.max_sensors = b.sensors.size() - 1;
    err = decodeContent(b, "", limits);
    REQUIRE(err.has_value());
    CHECK(err->reason == Reason::kBadSensorDictionary);
  }
}

TEST_CASE("Ack round trip and rejection", "[common][codec]") {
  codec::AckContent in{"dev-01", 7, 42, wire::AckStatus::Accepted, ""};
  SECTION("accepted, no reason") {}
  SECTION("device id without trailing padding") { in.device_id = "dev-001"; }
  SECTION("rejected with a reason") {
    in.status = wire::AckStatus::Rejected;
    in.reason = "bad_timestamp: reading timestamp 0 is outside the window";
    in.epoch = std::numeric_limits<uint64_t>::max();
  }
  const std::vector<uint8_t> bytes = codec::encodeAck(in);
  auto ack = codec::verifyAck(bytes);
  REQUIRE(ack.has_value());
  CHECK((*ack)->schema_version() == codec::kAckSchemaVersion);
  CHECK((*ack)->device_id()->str() == in.device_id);
  CHECK((*ack)->epoch() == in.epoch);
  CHECK((*ack)->seq() == in.seq);
  CHECK((*ack)->status() == in.status);
  CHECK(((*ack)->reason() ? (*ack)->reason()->str() : std::string()) == in.reason);

  // Every truncation is rejected, except cutting only the trailing alignment padding after the
  // first object written (the device id string; see the batch truncation test).
  const size_t padding = (4 - (in.device_id.size() + 1) % 4) % 4;
  for (size_t len = 0; len < bytes.size(); ++len) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
    if (len) std::memcpy(copy.get(), bytes.data(), len);
    auto r = codec::verifyAck(std::span<const uint8_t>(copy.get(), len));
    INFO("prefix length " << len << " of " << bytes.size());
    if (len + padding >= bytes.size()) {
      REQUIRE(r.has_value());
      CHECK((*r)->device_id()->str() == in.device_id);
      continue;
    }
    REQUIRE_FALSE(r.has_value());
    CHECK_FALSE(r.error().detail.empty());
  }
}

TEST_CASE("verifyAck rejects what is not a well-formed Ack", "[common][codec]") {
  const std::vector<uint8_t> good = codec::encodeAck({"dev-01", 1, 2, wire::AckStatus::Accepted, ""});
  SECTION("a Batch is not an Ack") {
    auto r = codec::verifyAck(codec::encodeBatch(sampleBatch()));
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kBadIdentifier);
  }
  SECTION("larger than the limit") {
    auto r = codec::verifyAck(good, good.size() - 1);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kTooLarge);
  }
  SECTION("missing required device_id") {
    flatbuffers::FlatBufferBuilder fbb;
    // Field by field: the generated builder asserts required fields in debug builds.
    const auto start = fbb.StartTable();
    fbb.AddElement<uint64_t>(wire::Ack::VT_SEQ, 2, 0);
    fbb.AddElement<uint64_t>(wire::Ack::VT_EPOCH, 1, 0);
    fbb.AddElement<uint16_t>(wire::Ack::VT_SCHEMA_VERSION, 1, 1);
    wire::FinishAckBuffer(fbb, flatbuffers::Offset<wire::Ack>(fbb.EndTable(start)));
    std::vector<uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    auto r = codec::verifyAck(bytes);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kVerifierFailed);
  }
}

TEST_CASE("isValidDeviceId", "[common][codec]") {
  struct Case {
    std::string id;
    bool valid;
  };
  const std::vector<Case> cases = {
      {"a", true},
      {"dev-01", true},
      {"Plant_3.line-7", true},
      {"0", true},
      {"a.", true},
      {"-leading-dash", true},
      {std::string(64, 'z'), true},
      {"", false},
      {std::string(65, 'z'), false},
      {".hidden", false},
      {".", false},
      {"a/b", false},
      {"+", false},
      {"#", false},
      {"dev 1", false},
      {"dev:1", false},
      {"dev*", false},
      {"d\xc3\xa9v", false},
      {std::string("a\0b", 3), false},
      {"dev\n", false},
  };
  for (const auto& c : cases) {
    INFO("'" << c.id << "'");
    CHECK(codec::isValidDeviceId(c.id) == c.valid);
  }
}

TEST_CASE("encodeBatch size does not depend on scalar values", "[common][codec]") {
  codec::BatchContent b = sampleBatch();
  b.epoch = 1;
  b.seq = 1;
  b.dropped = 0;
  b.created_us = 0;
  const size_t base = codec::encodeBatch(b).size();
  for (uint64_t v : {uint64_t(0), uint64_t(1), uint64_t(255), uint64_t(1) << 40,
                     std::numeric_limits<uint64_t>::max()}) {
    INFO("value " << v);
    codec::BatchContent c = b;
    c.dropped = v;
    CHECK(codec::encodeBatch(c).size() == base);
    c.seq = v;
    CHECK(codec::encodeBatch(c).size() == base);
    c.epoch = v;
    c.created_us = static_cast<int64_t>(v);
    CHECK(codec::encodeBatch(c).size() == base);
  }
}

TEST_CASE("reason names are stable", "[common][codec]") {
  // These strings are metric labels and dead-letter headers: changing one is a contract change.
  CHECK(std::string(codec::reasonName(Reason::kTooLarge)) == "too_large");
  CHECK(std::string(codec::reasonName(Reason::kTooSmall)) == "too_small");
  CHECK(std::string(codec::reasonName(Reason::kBadIdentifier)) == "bad_identifier");
  CHECK(std::string(codec::reasonName(Reason::kVerifierFailed)) == "verifier_failed");
  CHECK(std::string(codec::reasonName(Reason::kUnsupportedVersion)) == "unsupported_version");
  CHECK(std::string(codec::reasonName(Reason::kBadDeviceId)) == "bad_device_id");
  CHECK(std::string(codec::reasonName(Reason::kDeviceMismatch)) == "device_mismatch");
  CHECK(std::string(codec::reasonName(Reason::kBadEpoch)) == "bad_epoch");
  CHECK(std::string(codec::reasonName(Reason::kBadSeq)) == "bad_seq");
  CHECK(std::string(codec::reasonName(Reason::kEmpty)) == "empty");
  CHECK(std::string(codec::reasonName(Reason::kTooManyReadings)) == "too_many_readings");
  CHECK(std::string(codec::reasonName(Reason::kBadSensorDictionary)) == "bad_sensor_dictionary");
  CHECK(std::string(codec::reasonName(Reason::kUnknownSensor)) == "unknown_sensor");
  CHECK(std::string(codec::reasonName(Reason::kBadTimestamp)) == "bad_timestamp");
  CHECK(std::string(codec::reasonName(Reason::kBadWindow)) == "bad_window");
}

TEST_CASE("verifyAck rejects unknown schema versions", "[common][codec]") {
  for (uint16_t version : {uint16_t{0}, uint16_t{codec::kAckSchemaVersion + 1}}) {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.ForceDefaults(true);
    auto device = fbb.CreateString("dev-01");
    wire::FinishAckBuffer(fbb, wire::CreateAck(fbb, version, device, 1, 2,
                                               wire::AckStatus::Accepted, 0));
    const std::vector<uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
    auto r = codec::verifyAck(bytes);
    INFO("schema_version " << version);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().reason == Reason::kUnsupportedVersion);
  }
}

// Writes the seed corpus of batch_decode_fuzz into a directory:
//
//   make_seed_corpus <dir>
//
// Seeds are generated rather than committed, so they follow the schema: valid batches of several
// shapes, batches that pass the Verifier but fail one semantic check each (so the fuzzer starts
// inside every branch of checkBatchSemantics), Acks, and a few truncated and corrupted buffers.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <flatbuffers/flatbuffers.h>

#include "outpost/common/codec.h"

namespace codec = outpost::codec;
namespace wire = outpost::wire;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kNowUs = 1'700'000'000'000'000;  // the fuzz target's fixed clock
constexpr int64_t kSecond = 1'000'000;

codec::BatchContent fullBatch() {
  codec::BatchContent b;
  b.device_id = "dev-01";
  b.epoch = 1;
  b.seq = 1;
  b.dropped = 0;
  b.created_us = kNowUs;
  b.sensors = {{1, "temp", "C"}, {2, "humidity", "%"}, {3, "pressure", "hPa"}};
  for (int i = 0; i < 6; ++i) {
    b.readings.emplace_back(kNowUs - (6 - i) * kSecond, 20.0 + i, static_cast<uint16_t>(i % 3 + 1),
                            static_cast<wire::Quality>(i % 3));
  }
  b.windows.emplace_back(kNowUs - 10 * kSecond, kNowUs, 19.5, 22.5, 21.0, 0.75, 19.5, 22.5, 10, 1);
  b.windows.emplace_back(kNowUs - 10 * kSecond, kNowUs, 40.0, 41.0, 40.5, 0.25, 40.0, 41.0, 10, 2);
  return b;
}

std::vector<uint8_t> rawBatch(uint16_t schema_version, bool force_defaults) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceDefaults(force_defaults);
  std::vector<flatbuffers::Offset<wire::Sensor>> sensors{
      wire::CreateSensor(fbb, 1, fbb.CreateString("temp"))};  // no unit
  auto sensors_vec = fbb.CreateVector(sensors);
  std::vector<wire::Reading> readings{wire::Reading(kNowUs, 1.0, 1, wire::Quality::Good)};
  auto readings_vec = fbb.CreateVectorOfStructs(readings.data(), readings.size());
  auto device = fbb.CreateString("dev-01");
  auto root = wire::CreateBatch(fbb, schema_version, device, 1, 1, 0, kNowUs, sensors_vec,
                                readings_vec, 0);
  wire::FinishBatchBuffer(fbb, root);
  return {fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize()};
}

bool write(const fs::path& dir, const std::string& name, const std::vector<uint8_t>& bytes) {
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_seed_corpus: cannot write %s\n", (dir / name).c_str());
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <output-dir>\n", argv[0]);
    return 2;
  }
  const fs::path dir(argv[1]);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "make_seed_corpus: cannot create %s: %s\n", argv[1], ec.message().c_str());
    return 2;
  }

  std::vector<std::pair<std::string, std::vector<uint8_t>>> seeds;
  auto batch = [&](const std::string& name, const codec::BatchContent& b) {
    seeds.emplace_back(name + ".opb", codec::encodeBatch(b));
  };

  // Valid batches.
  const codec::BatchContent full = fullBatch();
  batch("valid_full", full);
  {
    codec::BatchContent b = full;
    b.windows.clear();
    batch("valid_readings_only", b);
  }
  {
    codec::BatchContent b = full;
    b.readings.clear();
    batch("valid_windows_only", b);
  }
  {
    codec::BatchContent b;
    b.device_id = "d";
    b.epoch = 1;
    b.seq = 1;
    b.sensors = {{0, "s", ""}};
    b.readings = {wire::Reading(kNowUs, 0.0, 0, wire::Quality::Good)};
    batch("valid_minimal", b);
  }
  {
    codec::BatchContent b = full;
    b.device_id = std::string(64, 'x');
    b.epoch = UINT64_MAX;
    b.seq = UINT64_MAX;
    b.dropped = 123456;
    b.sensors = {{65535, std::string(128, 'n'), "\xc2\xb0" "C"}, {1, "temp", ""}};
    b.readings = {wire::Reading(kNowUs, -1.5, 65535, wire::Quality::Suspect)};
    b.windows.clear();
    batch("valid_extremes", b);
  }
  {
    codec::BatchContent b = full;
    b.readings.clear();
    for (int i = 0; i < 64; ++i) {
      b.readings.emplace_back(kNowUs - i * 1000, i * 0.25, static_cast<uint16_t>(i % 3 + 1),
                              wire::Quality::Good);
    }
    batch("valid_many_readings", b);
  }
  seeds.emplace_back("valid_no_force_defaults.opb", rawBatch(1, false));

  // Verifiable, but each fails one semantic check.
  {
    codec::BatchContent b = full;
    b.device_id = "a/b";
    batch("sem_bad_device_id", b);
  }
  {
    codec::BatchContent b = full;
    b.epoch = 0;
    batch("sem_epoch_0", b);
  }
  {
    codec::BatchContent b = full;
    b.seq = 0;
    batch("sem_seq_0", b);
  }
  {
    codec::BatchContent b = full;
    b.readings.clear();
    b.windows.clear();
    batch("sem_empty", b);
  }
  {
    codec::BatchContent b = full;
    b.sensors.push_back({1, "again", ""});
    batch("sem_duplicate_sensor", b);
  }
  {
    codec::BatchContent b = full;
    b.readings.emplace_back(kNowUs, 1.0, 9, wire::Quality::Good);
    batch("sem_unknown_sensor", b);
  }
  {
    codec::BatchContent b = full;
    b.readings[0] = wire::Reading(0, 1.0, 1, wire::Quality::Good);
    batch("sem_timestamp_before_2000", b);
  }
  {
    codec::BatchContent b = full;
    b.readings[0] = wire::Reading(kNowUs + 48 * 3600 * kSecond, 1.0, 1, wire::Quality::Good);
    batch("sem_timestamp_future", b);
  }
  {
    codec::BatchContent b = full;
    b.windows[0] = wire::WindowStat(kNowUs, kNowUs, 3, 2, 2.5, -1, 3, 2, 0, 1);
    batch("sem_bad_window", b);
  }
  seeds.emplace_back("verify_schema_version_2.opb", rawBatch(2, true));

  // Acks.
  seeds.emplace_back("ack_accepted.opa",
                     codec::encodeAck({"dev-01", 1, 1, wire::AckStatus::Accepted, ""}));
  seeds.emplace_back("ack_rejected.opa", codec::encodeAck({"dev-01", 1, 2, wire::AckStatus::Rejected,
                                                           "bad_window: window 0 is inconsistent"}));

  // Broken buffers.
  {
    std::vector<uint8_t> b = codec::encodeBatch(full);
    seeds.emplace_back("broken_truncated_half.opb",
                       std::vector<uint8_t>(b.begin(), b.begin() + static_cast<long>(b.size() / 2)));
    std::vector<uint8_t> flipped = b;
    flipped[flipped.size() / 3] ^= 0xFF;
    seeds.emplace_back("broken_flipped_byte.opb", flipped);
    std::vector<uint8_t> bad_root = b;
    bad_root[0] = 0xFF;
    bad_root[1] = 0xFF;
    seeds.emplace_back("broken_root_offset.opb", bad_root);
  }
  seeds.emplace_back("broken_identifier_only.opb", std::vector<uint8_t>{8, 0, 0, 0, 'O', 'P', 'B', '1'});
  seeds.emplace_back("broken_empty", std::vector<uint8_t>{});

  for (const auto& [name, bytes] : seeds) {
    if (!write(dir, name, bytes)) return 1;
  }
  std::printf("make_seed_corpus: wrote %zu seeds to %s\n", seeds.size(), argv[1]);
  return 0;
}

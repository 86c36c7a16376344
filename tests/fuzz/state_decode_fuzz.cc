// Fuzz target for the per-device state of the scaled-out aggregator (issue 19): the outpost.state
// record (decodeDeviceState: size limit, FlatBuffers Verifier, semantic checks) and the detector
// state images inside it (SensorDetector/DeviceDetector::restore). Records come from a Kafka
// topic any process of the cluster (or anyone with write access to it) may have written.
//
// Invariants: no crash; an error has a message; an accepted record re-encodes to a record that
// decodes equal; an accepted detector image saves to an image that restores to the same image;
// a rejected image leaves the detector and the input span unchanged.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "outpost/aggregator/device_state.h"
#include "outpost/common/detect/device_detector.h"
#include "outpost/common/detect/sensor_detector.h"

namespace {

namespace agg = outpost::aggregator;
namespace detect = outpost::detect;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "state_decode_fuzz: invariant violated: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

std::span<const uint8_t> bytesOf(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void run(detect::SensorDetector& d) {
  for (int i = 0; i < 3; ++i) d.update(1'700'000'000'000 + i * 1000, 20.0 + i);
  d.poll(1'700'000'100'000);
}
void run(detect::DeviceDetector& d) {
  for (uint32_t i = 0; i < d.sensors() && i < 4; ++i) d.set(i, 4.0, detect::AnomalyKind::kSpike);
  d.evaluate(1'700'000'000'000);
  d.evaluate(1'700'000'001'000);
}

template <class D>
void fuzzImage(D& fresh, D& other, std::span<const uint8_t> bytes) {
  std::string before;
  fresh.save(before);
  std::span<const uint8_t> in = bytes;
  auto st = fresh.restore(in);
  std::string after;
  fresh.save(after);
  if (!st) {
    check(!st.error().message().empty(), "image rejected without a message");
    check(in.size() == bytes.size(), "a rejected image consumed bytes");
    check(after == before, "a rejected image changed the detector");
    return;
  }
  check(in.size() < bytes.size(), "an accepted image consumed nothing");
  std::span<const uint8_t> again = bytesOf(after);
  check(other.restore(again).has_value(), "a saved image is rejected");
  check(again.empty(), "a saved image is not consumed whole");
  std::string twice;
  other.save(twice);
  check(twice == after, "save -> restore -> save differs");
  run(fresh);  // whatever state an accepted image gives, the detector must run (UBSan watches)
}

void fuzzDetectors(std::span<const uint8_t> bytes) {
  static const detect::DetectorConfig cfg;
  detect::SensorDetector s1(&cfg), s2(&cfg);
  fuzzImage(s1, s2, bytes);
  detect::DeviceDetector d1(&cfg, 2), d2(&cfg, 0);
  fuzzImage(d1, d2, bytes);
  // The AnomalyStage image frames sensor images after a 6-byte header, a count and a name: try
  // the detector decoders at a few offsets too.
  for (size_t off : {6u, 10u, 16u, 24u}) {
    if (bytes.size() <= off) break;
    detect::SensorDetector a(&cfg), b(&cfg);
    fuzzImage(a, b, bytes.subspan(off));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Kafka hands the consumer a heap buffer; libFuzzer's data pointer is not guaranteed to be
  // aligned (and an allocation of exactly `size` bytes lets ASan flag any read past the end).
  std::unique_ptr<uint8_t[]> aligned(new uint8_t[size]);
  if (size) std::memcpy(aligned.get(), data, size);
  const std::span<const uint8_t> bytes(aligned.get(), size);

  auto rec = agg::decodeDeviceState(bytes);
  if (!rec) {
    check(!rec.error().message().empty(), "record rejected without a message");
  } else {
    check(rec->dedup.epochs().size() <= agg::DeviceDedup::kMaxEpochs, "too many epochs accepted");
    for (const auto& [epoch, iv] : rec->dedup.epochs())
      check(!iv.empty() && iv.size() <= agg::DeviceDedup::kMaxIntervals, "interval count");
    const std::string again = agg::encodeDeviceState(*rec);
    auto rec2 = agg::decodeDeviceState(bytesOf(again));
    check(rec2.has_value(), "a re-encoded record is rejected");
    check(*rec2 == *rec, "a re-encoded record decodes differently");
    if (!rec->detectors.empty()) fuzzDetectors(bytesOf(rec->detectors));
  }
  fuzzDetectors(bytes);
  return 0;
}

// Fuzz target for the only decoder of untrusted wire bytes: verifyBatch -> checkBatchSemantics ->
// toContent, and verifyAck on the same bytes (design.md, "Bad input": the process never crashes).
//
// Built two ways (tests/fuzz/CMakeLists.txt): with -fsanitize=fuzzer,address as a libFuzzer
// binary (clang), and linked with replay_main.cc as a plain program that runs the corpus in every
// build. Any violated invariant calls abort(), which both drivers report as a failure.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "outpost/common/codec.h"

namespace {

namespace codec = outpost::codec;
namespace wire = outpost::wire;

// The receiver's clock is fixed so that a given input always takes the same path.
constexpr int64_t kNowUs = 1'700'000'000'000'000;  // 2023-11-14T22:13:20Z

// Every field read is folded into this, so the compiler cannot drop the reads.
volatile uint64_t g_sink = 0;

template <typename T>
void touch(const T& v) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(v) < sizeof(bits) ? sizeof(v) : sizeof(bits));
  g_sink = g_sink * 31 + bits;
}

void touch(const flatbuffers::String* s) {
  if (!s) return;
  touch(s->size());
  for (char c : s->string_view()) touch(c);
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "batch_decode_fuzz: invariant violated: %s\n", what);
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) fail(what);
}

bool sameBits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Reads every field the verifier vouched for.
void walk(const wire::Batch& batch) {
  touch(batch.schema_version());
  touch(batch.device_id());
  touch(batch.epoch());
  touch(batch.seq());
  touch(batch.dropped());
  touch(batch.created_us());
  if (const auto* sensors = batch.sensors()) {
    for (const wire::Sensor* s : *sensors) {
      touch(s->id());
      touch(s->name());
      touch(s->unit());
    }
  }
  if (const auto* readings = batch.readings()) {
    for (const wire::Reading* r : *readings) {
      touch(r->ts_us());
      touch(r->value());
      touch(r->sensor());
      touch(r->quality());
    }
  }
  if (const auto* windows = batch.windows()) {
    for (const wire::WindowStat* w : *windows) {
      touch(w->start_us());
      touch(w->end_us());
      touch(w->min());
      touch(w->max());
      touch(w->mean());
      touch(w->stddev());
      touch(w->first());
      touch(w->last());
      touch(w->count());
      touch(w->sensor());
    }
  }
}

void checkSameContent(const codec::BatchContent& a, const codec::BatchContent& b) {
  check(a.device_id == b.device_id && a.epoch == b.epoch && a.seq == b.seq &&
            a.dropped == b.dropped && a.created_us == b.created_us,
        "re-encoded header differs");
  check(a.sensors.size() == b.sensors.size() && a.readings.size() == b.readings.size() &&
            a.windows.size() == b.windows.size(),
        "re-encoded counts differ");
  for (size_t i = 0; i < a.sensors.size(); ++i) {
    check(a.sensors[i].id == b.sensors[i].id && a.sensors[i].name == b.sensors[i].name &&
              a.sensors[i].unit == b.sensors[i].unit,
          "re-encoded sensor differs");
  }
  for (size_t i = 0; i < a.readings.size(); ++i) {
    const auto& x = a.readings[i];
    const auto& y = b.readings[i];
    check(x.ts_us() == y.ts_us() && sameBits(x.value(), y.value()) && x.sensor() == y.sensor() &&
              x.quality() == y.quality(),
          "re-encoded reading differs");
  }
  for (size_t i = 0; i < a.windows.size(); ++i) {
    const auto& x = a.windows[i];
    const auto& y = b.windows[i];
    check(x.start_us() == y.start_us() && x.end_us() == y.end_us() &&
              sameBits(x.min(), y.min()) && sameBits(x.max(), y.max()) &&
              sameBits(x.mean(), y.mean()) && sameBits(x.stddev(), y.stddev()) &&
              sameBits(x.first(), y.first()) && sameBits(x.last(), y.last()) &&
              x.count() == y.count() && x.sensor() == y.sensor(),
          "re-encoded window differs");
  }
}

// What checkBatchSemantics promises about a batch it accepts.
void checkAcceptedInvariants(const codec::BatchContent& c, const codec::VerifyLimits& limits) {
  check(codec::isValidDeviceId(c.device_id), "accepted an invalid device id");
  check(c.epoch != 0 && c.seq != 0, "accepted epoch 0 or seq 0");
  check(!c.readings.empty() || !c.windows.empty(), "accepted an empty batch");
  check(c.readings.size() <= limits.max_readings && c.windows.size() <= limits.max_windows &&
            c.sensors.size() <= limits.max_sensors,
        "accepted more than the limits");
  std::vector<bool> declared(65536, false);
  for (const auto& s : c.sensors) {
    check(!declared[s.id], "accepted a duplicate sensor id");
    check(!s.name.empty() && s.name.size() <= 128, "accepted a bad sensor name");
    declared[s.id] = true;
  }
  const int64_t max_ts = kNowUs + limits.max_future_skew_us;
  for (const auto& r : c.readings) {
    check(declared[r.sensor()], "accepted a reading of an undeclared sensor");
    check(r.ts_us() >= limits.min_timestamp_us && r.ts_us() <= max_ts,
          "accepted a reading timestamp out of range");
  }
  for (const auto& w : c.windows) {
    check(declared[w.sensor()], "accepted a window of an undeclared sensor");
    check(w.start_us() >= limits.min_timestamp_us && w.end_us() <= max_ts &&
              w.start_us() < w.end_us(),
          "accepted a window with bad bounds");
    check(w.count() > 0 && w.min() <= w.max() && !(w.stddev() < 0), "accepted a bad window");
  }
}

void checkRejection(const codec::DecodeError& e) {
  check(!e.detail.empty(), "rejection without a detail");
  check(std::strcmp(codec::reasonName(e.reason), "unknown") != 0, "rejection without a reason");
  touch(e.toString().size());
}

void fuzzBatch(std::span<const uint8_t> bytes, const codec::VerifyLimits& limits) {
  auto batch = codec::verifyBatch(bytes, limits);
  if (bytes.size() > limits.max_bytes) {
    check(!batch && batch.error().reason == codec::Reason::kTooLarge, "size limit not enforced");
  }
  if (!batch) {
    checkRejection(batch.error());
    return;
  }
  check(*batch != nullptr, "verifyBatch returned null");
  // The verifier is the memory-safety boundary: everything it accepts may be read in full,
  // whether or not the semantic checks pass.
  walk(**batch);
  const codec::BatchContent content = codec::toContent(**batch);
  touch(content.readings.size());

  // Mismatch path: the same batch arriving under some other identity.
  if (auto other = codec::checkBatchSemantics(**batch, limits, kNowUs, "fuzz-device"); !other) {
    checkRejection(other.error());
  }
  auto sem = codec::checkBatchSemantics(**batch, limits, kNowUs, "");
  if (!sem) {
    checkRejection(sem.error());
    return;
  }
  checkAcceptedInvariants(content, limits);
  auto mine = codec::checkBatchSemantics(**batch, limits, kNowUs, content.device_id);
  check(mine.has_value(), "rejected under its own device id");

  // An accepted batch re-encodes to bytes that are accepted again with the same content (the
  // encoding may be larger than the input, e.g. when the input shared one string between sensors).
  const std::vector<uint8_t> again = codec::encodeBatch(content);
  codec::VerifyLimits reencoded_limits = limits;
  reencoded_limits.max_bytes = codec::VerifyLimits{}.max_bytes;
  auto batch2 = codec::verifyBatch(again, reencoded_limits);
  check(batch2.has_value(), "re-encoded batch fails verification");
  check(codec::checkBatchSemantics(**batch2, limits, kNowUs, content.device_id).has_value(),
        "re-encoded batch fails the semantic checks");
  checkSameContent(content, codec::toContent(**batch2));
}

void fuzzAck(std::span<const uint8_t> bytes) {
  if (auto small = codec::verifyAck(bytes, 64); bytes.size() > 64) {
    check(!small && small.error().reason == codec::Reason::kTooLarge, "ack size limit not enforced");
  }
  auto ack = codec::verifyAck(bytes);
  if (!ack) {
    checkRejection(ack.error());
    return;
  }
  const wire::Ack& a = **ack;
  touch(a.schema_version());
  touch(a.device_id());
  touch(a.epoch());
  touch(a.seq());
  touch(a.status());
  touch(a.reason());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Receivers hand the codec 8-byte aligned heap buffers (codec.h); libFuzzer's data pointer is
  // not guaranteed to be aligned. operator new[] aligns to __STDCPP_DEFAULT_NEW_ALIGNMENT__ (16),
  // and an allocation of exactly `size` bytes lets ASan flag any read past the end.
  static_assert(__STDCPP_DEFAULT_NEW_ALIGNMENT__ >= 8);
  std::unique_ptr<uint8_t[]> aligned(new uint8_t[size]);
  if (size) std::memcpy(aligned.get(), data, size);
  const std::span<const uint8_t> bytes(aligned.get(), size);
  fuzzBatch(bytes, codec::VerifyLimits{});
  // Tight limits reach the size and count checks, which libFuzzer's small inputs never hit with
  // the production limits.
  codec::VerifyLimits tight;
  tight.max_bytes = 1024;
  tight.max_readings = 4;
  tight.max_windows = 2;
  tight.max_sensors = 3;
  fuzzBatch(bytes, tight);
  fuzzAck(bytes);
  return 0;
}

// Fuzz target for the query parameters of the aggregator's history API
// (GET /api/devices/{id}/sensors/{name}/history?from=&to=&step=, LatestStore::historyJson):
// anyone who can reach the HTTP port sends them. Every input must give a 200, a 400 that names
// the parameter, or a 404, with no crash, no signed overflow (UBSan) and a bounded answer.
//
// Input: up to five '\n'-separated fields, as cpp-httplib hands them over (already decoded):
// to, from, step, device, sensor. A missing or empty field is left out of the query (the device
// and sensor then default to the one the store holds); a field "-" is sent as an empty value.
//
// Built like batch_decode_fuzz.cc: a libFuzzer binary with OUTPOST_BUILD_FUZZERS (clang), and
// with replay_main.cc as a plain program that runs the committed corpus in every build.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/aggregator/latest_store.h"
#include "outpost/common/codec.h"

using namespace outpost;
using namespace outpost::aggregator;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr int64_t kNowUs = 1'750'000'000'000'000;  // 2025-06-15
constexpr size_t kMaxBody = 4 << 20;               // kMaxPoints (10,000) rows of < 100 bytes

// One device "d" with one sensor "s", a reading every 10 minutes for the last 24 hours.
LatestStore& store() {
  static metrics::Registry registry;
  static LatestStore s(
      [] {
        LatestOptions o;
        o.bucket_s = 60;
        o.history_bytes = 1440 * LatestStore::kBucketBytes;
        return o;
      }(),
      1, registry);
  static bool filled = [] {
    codec::BatchContent b;
    b.device_id = "d";
    b.epoch = 1;
    b.seq = 1;
    b.created_us = kNowUs;
    b.sensors.push_back({1, "s", "C"});
    for (int i = 0; i < 144; ++i) {
      const int64_t ts = kNowUs - int64_t{i} * 600'000'000;
      b.readings.emplace_back(ts, 20.0 + i % 7, 1, wire::Quality::Good);
    }
    const std::vector<uint8_t> bytes = codec::encodeBatch(b);
    auto batch = codec::verifyBatch(bytes, codec::VerifyLimits{});
    check(batch.has_value());
    s.update("d", **batch, kNowUs);
    return true;
  }();
  (void)filled;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> f;
  for (size_t pos = 0; f.size() < 5;) {
    const size_t nl = in.find('\n', pos);
    f.emplace_back(in.substr(pos, nl == std::string_view::npos ? in.npos : nl - pos));
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  f.resize(5);
  HttpServer::Request req;
  static const char* const kNames[] = {"to", "from", "step"};
  for (int i = 0; i < 3; ++i) {
    if (f[i].empty()) continue;
    req.params.emplace(kNames[i], f[i] == "-" ? std::string() : f[i]);
  }
  const std::string device = f[3].empty() ? "d" : f[3];
  const std::string sensor = f[4].empty() ? "s" : f[4];

  const HttpServer::Response r = store().historyJson(device, sensor, req, kNowUs);
  check(r.status == 200 || r.status == 400 || r.status == 404);
  check(r.body.size() >= 2 && r.body.front() == '{' && r.body.back() == '}');
  check(r.body.size() <= kMaxBody);
  if (r.status == 400) {  // names the parameter it refuses
    bool named = false;
    for (const char* p : kNames) {
      named = named || r.body.find("\"parameter\":\"" + std::string(p) + "\"") != std::string::npos;
    }
    check(named);
  }
  if (r.status == 200) check(device == "d" && sensor == "s");
  return 0;
}

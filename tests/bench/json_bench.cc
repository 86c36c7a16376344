// outpost-bench-json: the aggregator's JSON on its own, one thread, medians of --runs:
//
//  1. readings topic: BatchJson::appendPart over a verified batch of --readings readings
//     (kafka.readings_format = batch, the default, and = reading, one message per reading);
//     readings/s and MB/s of JSON;
//  2. device registry: DeviceRegistry::onStatus over an agent's status message (the parse of
//     untrusted bytes) and deviceJson (the device API body); calls/s.
// Rates are per second of the thread's CPU time, so that a shared machine's scheduling noise does
// not count (cache and memory-bandwidth contention still do: compare A/B runs interleaved).
//
// Only public APIs that predate the common JSON writer (issue 14) are used, so the same source
// builds against an older tree for an A/B (docs/bench-notes/json.md has the commands).
//
// Usage: outpost-bench-json [--readings N] [--seconds S] [--runs N]
// Prints a human summary and one JSON line (last).
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "outpost/aggregator/device_registry.h"
#include "outpost/aggregator/json.h"
#include "outpost/common/codec.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace wire = outpost::wire;

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[(v.size() - 1) / 2];
}

double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Runs `body` (which returns the work units it did) for `seconds` of wall time; units per second
// of this thread's CPU time (the machine is shared: time spent descheduled does not count).
template <typename F>
double rate(double seconds, F body) {
  const auto until = Clock::now() + std::chrono::duration<double>(seconds);
  const double cpu0 = threadCpuSeconds();
  double units = 0;
  for (int i = 0; i < 100'000'000 && Clock::now() < until; ++i) units += body();
  return units / std::max(1e-9, threadCpuSeconds() - cpu0);
}

volatile size_t g_sink = 0;

}  // namespace

int main(int argc, char** argv) {
  size_t readings = 1000, runs = 3;
  double seconds = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--readings") {
      readings = std::strtoull(argv[i + 1], nullptr, 10);
    } else if (a == "--seconds") {
      seconds = std::strtod(argv[i + 1], nullptr);
    } else if (a == "--runs") {
      runs = std::strtoull(argv[i + 1], nullptr, 10);
    } else {
      std::cerr << "usage: outpost-bench-json [--readings N] [--seconds S] [--runs N]\n";
      return 2;
    }
  }
  if (readings < 1 || readings > 100000 || runs < 1 || runs > 100 || !(seconds > 0)) {
    std::cerr << "outpost-bench-json: --readings 1..100000, --runs 1..100, --seconds > 0\n";
    return 2;
  }

  // A batch like a fleet's: 10 sensors with names and units (one with UTF-8), varied values.
  codec::BatchContent c;
  c.device_id = "bench-device-0001";
  c.epoch = 0x7fffffffffff1234;
  c.seq = 42;
  c.created_us = 1'700'000'000'000'000;
  for (uint16_t s = 0; s < 10; ++s) {
    c.sensors.push_back({s, "sensor-" + std::to_string(s), s == 0 ? "\xC2\xB0" "C" : "kPa"});
  }
  for (size_t i = 0; i < readings; ++i) {
    c.readings.emplace_back(c.created_us + static_cast<int64_t>(i) * 1000,
                            20.0 + static_cast<double>(i % 997) * 0.0123,
                            static_cast<uint16_t>(i % 10), wire::Quality::Good);
  }
  const std::vector<uint8_t> bytes = codec::encodeBatch(c);
  auto v = codec::verifyBatch(std::span<const uint8_t>(bytes.data(), bytes.size()),
                              codec::VerifyLimits{});
  if (!v) {
    std::cerr << "verify: " << v.error().toString() << "\n";
    return 1;
  }
  const wire::Batch& batch = **v;

  std::vector<double> batch_rps, batch_mbps, flat_rps, status_cps, device_cps;
  std::string out;
  for (size_t run = 0; run < runs; ++run) {
    size_t json_bytes = 0;
    const double r1 = rate(seconds, [&] {
      agg::BatchJson j(batch, readings, agg::ReadingsFormat::kBatch);
      out.clear();
      j.appendPart(0, c.created_us + 5000, out);
      json_bytes = out.size();
      g_sink = g_sink + out.size();
      return static_cast<double>(readings);
    });
    batch_rps.push_back(r1);
    batch_mbps.push_back(r1 / static_cast<double>(readings) * static_cast<double>(json_bytes) /
                         1e6);
    flat_rps.push_back(rate(seconds, [&] {
      agg::BatchJson j(batch, 1, agg::ReadingsFormat::kReading);
      for (size_t p = 0; p < j.parts(); ++p) {
        out.clear();
        j.appendPart(p, c.created_us + 5000, out);
        g_sink = g_sink + out.size();
      }
      return static_cast<double>(readings);
    }));

    agg::DeviceRegistry reg(agg::DeviceRegistryOptions{}, {});
    const std::string status =
        R"({"state":"online","reason":"","version":"0.1.0","backlog_rows":12,)"
        R"("backlog_bytes":3400})";
    int64_t now = 1;
    status_cps.push_back(rate(seconds, [&] {
      g_sink = g_sink + reg.onStatus("dev-1", status, false, ++now);
      return 1.0;
    }));
    const agg::DeviceInfo d = *reg.get("dev-1");
    device_cps.push_back(rate(seconds, [&] {
      g_sink = g_sink + agg::deviceJson(d, now).size();
      return 1.0;
    }));
  }
  std::printf("readings JSON, batch format: %.0f readings/s (%.1f MB/s of JSON)\n",
              median(batch_rps), median(batch_mbps));
  std::printf("readings JSON, one message per reading: %.0f readings/s\n", median(flat_rps));
  std::printf("device status parse (onStatus): %.0f/s; device JSON: %.0f/s\n",
              median(status_cps), median(device_cps));
  std::printf("(medians of %zu runs of %.1f s, batches of %zu readings)\n", runs, seconds,
              readings);
  std::printf(
      "{\"bench\":\"json\",\"readings\":%zu,\"runs\":%zu,\"batch_readings_per_s\":%.0f,"
      "\"batch_mb_per_s\":%.1f,\"flat_readings_per_s\":%.0f,\"status_parse_per_s\":%.0f,"
      "\"device_json_per_s\":%.0f}\n",
      readings, runs, median(batch_rps), median(batch_mbps), median(flat_rps),
      median(status_cps), median(device_cps));
  return 0;
}

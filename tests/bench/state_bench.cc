// Issue 19: the cost of moving per-device state, and the AnomalyStage per-reading path it must
// not slow down. Not a ctest test (style.md); figures in docs/benchmarks.md.
//
//   outpost-bench-state [--devices N] [--sensors-per-device N] [--batches N] [--runs N]
//
// 1. onBatch: readings per CPU-second of AnomalyStage::onBatch over N devices (batches of 50
//    readings per sensor, pre-encoded and verified outside the timing), median of the runs. Built
//    with -DOUTPOST_STATE_BENCH_BASELINE this part alone compiles against a tree without issue 19,
//    for a before/after comparison.
// 2. State of one device (the process role does this per touched device and transaction):
//    saveDevice + encodeDeviceState, and decodeDeviceState + restoreDevice, microseconds per
//    device (median of the runs), and the record size.

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/common/codec.h"
#ifndef OUTPOST_STATE_BENCH_BASELINE
#include "outpost/aggregator/device_state.h"
#endif

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;

namespace {

double cpuNow() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int devices = 2000, per_device = 7, batches = 20, runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--devices"))
      devices = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--sensors-per-device"))
      per_device = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--batches"))
      batches = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--runs"))
      runs = std::atoi(argv[i + 1]);
  }
  constexpr int kPerBatch = 50;
  auto options = agg::anomalyOptionsFrom(
      outpost::config::parseToml("", agg::aggregatorSchema(), "bench.toml"));
  options.max_sensors = static_cast<size_t>(devices) * per_device;
  outpost::metrics::Registry reg;
  agg::AnomalyDetection detection(options, reg);

  // Pre-encoded batches: batches x devices, one minute per reading.
  std::mt19937_64 rng(1);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<std::string> names(devices);
  std::vector<std::vector<uint8_t>> encoded;
  encoded.reserve(static_cast<size_t>(devices) * batches);
  for (int b = 0; b < batches; ++b) {
    for (int dv = 0; dv < devices; ++dv) {
      codec::BatchContent c;
      names[dv] = "dev-" + std::to_string(dv);
      c.device_id = names[dv];
      c.epoch = 1;
      c.seq = static_cast<uint64_t>(b) + 1;
      int64_t ts = 1'700'000'000'000'000 + static_cast<int64_t>(b) * kPerBatch * 60'000'000;
      c.created_us = ts;
      for (int k = 0; k < per_device; ++k)
        c.sensors.push_back({static_cast<uint16_t>(k + 1), "sensor-" + std::to_string(k), ""});
      for (int i = 0; i < kPerBatch; ++i, ts += 60'000'000)
        for (int k = 0; k < per_device; ++k)
          c.readings.emplace_back(ts, 10.0 * k + noise(rng), static_cast<uint16_t>(k + 1),
                                  outpost::wire::Quality::Good);
      encoded.push_back(codec::encodeBatch(c));
    }
  }
  std::vector<const outpost::wire::Batch*> verified;
  for (const auto& e : encoded) {
    auto v = codec::verifyBatch(std::span<const uint8_t>(e.data(), e.size()), codec::VerifyLimits{});
    if (!v) return 1;
    verified.push_back(*v);
  }
  const double readings = static_cast<double>(devices) * batches * kPerBatch * per_device;

  std::vector<double> rates, save_us, restore_us;
  size_t record_bytes = 0, image_bytes = 0;
  for (int run = 0; run < runs; ++run) {
    auto stage = detection.newStage(1);
    std::vector<agg::AnomalyRecord> out;
    int64_t mono = 1'000'000'000;
    const double c0 = cpuNow();
    for (size_t i = 0; i < verified.size(); ++i) {
      mono += 1000;
      stage->onBatch(names[i % devices], *verified[i], mono, out);
      out.clear();
    }
    const double cpu = cpuNow() - c0;
    rates.push_back(readings / cpu);
    std::printf("run %d: onBatch %.2f M readings per CPU-second (%d devices x %d sensors)\n",
                run + 1, rates.back() / 1e6, devices, per_device);
#ifndef OUTPOST_STATE_BENCH_BASELINE
    // Move every device to a second stage, through the outpost.state record.
    auto target = detection.newStage(1);
    std::vector<std::string> records(devices);
    std::string img;
    const double s0 = cpuNow();
    for (int dv = 0; dv < devices; ++dv) {
      agg::DeviceStateRecord r;
      r.device = names[dv];
      for (uint64_t s = 1; s <= static_cast<uint64_t>(batches); ++s) r.dedup.add(1, s);
      img.clear();
      stage->saveDevice(names[dv], mono, img);
      r.detectors = img;
      records[dv] = agg::encodeDeviceState(r);
    }
    const double s1 = cpuNow();
    for (int dv = 0; dv < devices; ++dv) {
      auto r = agg::decodeDeviceState(std::span<const uint8_t>(
          reinterpret_cast<const uint8_t*>(records[dv].data()), records[dv].size()));
      if (!r) return 2;
      auto st = target->restoreDevice(
          r->device,
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(r->detectors.data()),
                                   r->detectors.size()),
          mono);
      if (!st) return 3;
    }
    const double s2 = cpuNow();
    save_us.push_back((s1 - s0) / devices * 1e6);
    restore_us.push_back((s2 - s1) / devices * 1e6);
    record_bytes = records[0].size();
    image_bytes = img.size();
    std::printf("run %d: save+encode %.1f us/device, decode+restore %.1f us/device\n", run + 1,
                save_us.back(), restore_us.back());
#endif
  }
  std::printf("median: onBatch %.2f M readings per CPU-second\n", median(rates) / 1e6);
#ifndef OUTPOST_STATE_BENCH_BASELINE
  std::printf(
      "median: save+encode %.1f us, decode+restore %.1f us per %d-sensor device; record %zu "
      "bytes (detector image %zu, %.0f per sensor)\n",
      median(save_us), median(restore_us), per_device, record_bytes, image_bytes,
      static_cast<double>(image_bytes) / per_device);
#endif
  return 0;
}

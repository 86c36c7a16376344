// Throughput of outpost::detect::SensorDetector with all detectors on (range and rate limits set,
// season profile on): reading updates per second on one core, median of several runs, over many
// sensors interleaved as a detector worker sees them. Not a ctest test (style.md).
//
//   detect_speed [--sensors N] [--readings-per-sensor N] [--runs N]
//
// Reports wall-clock rates and rates per CPU-second of the measuring thread
// (CLOCK_THREAD_CPUTIME_ID): on a shared machine the second is what one core does while it runs
// this code (time-slicing excluded; cache and SMT contention from other processes included).

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "labelled_generator.h"
#include "outpost/common/detect/sensor_detector.h"

using namespace outpost::detect;

int main(int argc, char** argv) {
  int sensors = 1000, per = 2000, runs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--sensors"))
      sensors = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--readings-per-sensor"))
      per = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--runs"))
      runs = std::atoi(argv[i + 1]);
  }
  // Realistic inputs: 16 labelled series (with anomalies), replayed round-robin by all sensors.
  testing::GeneratorOptions opt;
  opt.seed = 99;
  opt.days = 3;
  std::vector<testing::LabelledSeries> series;
  for (int k = 0; k < 16; ++k) series.push_back(testing::generateSeries(opt, k));
  std::printf("sizeof(SensorDetector) = %zu bytes\n", sizeof(SensorDetector));

  std::vector<double> rates, cpu_rates;
  double sink = 0;
  auto cpuNow = [] {
    timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  };
  for (int run = 0; run < runs; ++run) {
    std::vector<SensorDetector> dets;
    dets.reserve(sensors);
    for (int s = 0; s < sensors; ++s) dets.emplace_back(&series[s % 16].cfg);
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpuNow();
    // Per step, the reading of each of the 16 series (the harness's own cost stays out of the
    // inner loop: no division per update).
    int64_t ts[16];
    double val[16];
    for (int i = 0; i < per; ++i) {
      for (int k = 0; k < 16; ++k) {
        const auto& src = series[k];
        const size_t j = static_cast<size_t>(i) % src.ts_ms.size();
        ts[k] = src.ts_ms[j] + static_cast<int64_t>(i / src.ts_ms.size()) * 86400000LL * 4;
        val[k] = src.value[j];
      }
      for (int s = 0; s < sensors; ++s) sink += dets[s].update(ts[s & 15], val[s & 15]).score;
    }
    const double cpu = cpuNow() - c0;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rates.push_back(double(sensors) * per / secs);
    cpu_rates.push_back(double(sensors) * per / cpu);
    std::printf("run %d: %.2f M updates/s wall, %.2f M updates per CPU-second\n", run + 1,
                rates.back() / 1e6, cpu_rates.back() / 1e6);
  }
  std::sort(rates.begin(), rates.end());
  std::sort(cpu_rates.begin(), cpu_rates.end());
  std::printf(
      "median: %.2f M reading updates/s wall, %.2f M per CPU-second of this thread "
      "(%d sensors x %d readings, %d runs)%s\n",
      rates[rates.size() / 2] / 1e6, cpu_rates[cpu_rates.size() / 2] / 1e6, sensors, per, runs,
      sink == 42 ? " " : "");
  return 0;
}

// outpost-bench-latest: the latest-state store (aggregator/src/serve/latest_store.cc) on its own.
//
//  1. Memory per tracked sensor: RSS (from /proc/self/statm) before and after DEVICES x SENSORS
//     sensors were created and their whole history ring filled (`--fill` minutes of one reading a
//     bucket), against the bytes the store charges to latest.max_bytes.
//  2. update() throughput (readings/s into the store, batches of --batch readings pre-encoded and
//     verified beforehand), one thread, without and with a concurrent reader thread that calls
//     sensorsJson() for random devices in a loop (the HTTP path), medians of --runs.
//
// Usage: outpost-bench-latest [--devices N] [--sensors N] [--fill MIN] [--seconds S] [--runs N]
//        [--batch N] [--history-bytes B]
// Prints a human summary and one JSON line (last).
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "outpost/aggregator/latest_store.h"
#include "outpost/common/codec.h"

namespace agg = outpost::aggregator;
namespace codec = outpost::codec;
namespace wire = outpost::wire;

namespace {

size_t rssBytes() {
  std::ifstream f("/proc/self/statm");
  size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[(v.size() - 1) / 2];
}

struct Batch {
  std::string device;
  std::vector<uint8_t> bytes;
  const wire::Batch* view = nullptr;
};

Batch makeBatch(const std::string& device, size_t sensors, size_t readings, int64_t t0_us,
                int64_t step_us, uint64_t seq) {
  codec::BatchContent c;
  c.device_id = device;
  c.epoch = 1;
  c.seq = seq;
  c.created_us = t0_us;
  for (size_t s = 0; s < sensors; ++s) {
    c.sensors.push_back({static_cast<uint16_t>(s), "sensor-" + std::to_string(s), "unit"});
  }
  for (size_t i = 0; i < readings; ++i) {
    c.readings.emplace_back(t0_us + static_cast<int64_t>(i / sensors) * step_us,
                            static_cast<double>(i % 1000) * 0.5,
                            static_cast<uint16_t>(i % sensors), wire::Quality::Good);
  }
  Batch b;
  b.device = device;
  b.bytes = codec::encodeBatch(c);
  auto v = codec::verifyBatch(std::span<const uint8_t>(b.bytes.data(), b.bytes.size()),
                              codec::VerifyLimits{});
  if (!v) {
    std::cerr << "verify: " << v.error().toString() << "\n";
    std::exit(1);
  }
  b.view = *v;
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  size_t devices = 1000, sensors = 10, fill = 1440, runs = 3, batch = 500;
  double seconds = 3;
  size_t history_bytes = 34560;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const double v = std::atof(argv[i + 1]);
    if (k == "--devices") devices = static_cast<size_t>(v);
    else if (k == "--sensors") sensors = static_cast<size_t>(v);
    else if (k == "--fill") fill = static_cast<size_t>(v);
    else if (k == "--seconds") seconds = v;
    else if (k == "--runs") runs = static_cast<size_t>(v);
    else if (k == "--batch") batch = static_cast<size_t>(v);
    else if (k == "--history-bytes") history_bytes = static_cast<size_t>(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  const int64_t t0 = 1'700'000'040'000'000;
  const int64_t minute = 60'000'000;

  // 1. Memory: every sensor's ring filled with `fill` minutes (one reading per bucket).
  outpost::metrics::Registry reg;
  agg::LatestOptions o;
  o.history_bytes = history_bytes;
  o.max_bytes = size_t{64} << 30;
  const size_t rss0 = rssBytes();
  auto store = std::make_unique<agg::LatestStore>(o, 2, reg);
  {
    // One batch per device carrying `fill` minutes x `sensors` readings, in chunks.
    const size_t per_batch = std::max<size_t>(sensors, (4000 / sensors) * sensors);
    for (size_t d = 0; d < devices; ++d) {
      const std::string id = "dev-" + std::to_string(d);
      for (size_t done = 0; done < fill * sensors; done += per_batch) {
        const size_t n = std::min(per_batch, fill * sensors - done);
        Batch b = makeBatch(id, sensors, n, t0 + static_cast<int64_t>(done / sensors) * minute,
                            minute, 1 + done / per_batch);
        store->update(b.device, *b.view, t0);
      }
    }
  }
  const size_t rss1 = rssBytes();
  const size_t tracked = store->sensors();
  const double rss_per_sensor = static_cast<double>(rss1 - rss0) / static_cast<double>(tracked);
  const double charged_per_sensor =
      static_cast<double>(store->chargedBytes()) / static_cast<double>(tracked);
  std::printf("memory: %zu sensors (%zu devices x %zu), ring %zu buckets (%zu B) filled with "
              "%zu min: RSS +%.1f MiB = %.0f B/sensor; charged %.0f B/sensor\n",
              tracked, devices, sensors, store->historyBuckets(),
              store->historyBuckets() * agg::LatestStore::kBucketBytes, fill,
              static_cast<double>(rss1 - rss0) / (1 << 20), rss_per_sensor, charged_per_sensor);

  // 2. update() throughput, with and without a reader, on the filled store.
  std::vector<Batch> batches;
  const size_t n_batches = std::min<size_t>(devices, 2000);
  for (size_t d = 0; d < n_batches; ++d) {
    batches.push_back(makeBatch("dev-" + std::to_string(d), sensors, batch,
                                t0 + static_cast<int64_t>(fill) * minute, 1'000'000, 1000000 + d));
  }
  std::vector<double> alone, with_reader, reads_per_s;
  for (size_t r = 0; r < 2 * runs; ++r) {
    const bool reader_on = r % 2 == 1;  // A/B alternating
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> reads{0};
    std::thread reader;
    if (reader_on) {
      reader = std::thread([&] {
        std::mt19937 rng(42);
        size_t bytes = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          auto resp = store->sensorsJson("dev-" + std::to_string(rng() % n_batches));
          bytes += resp.body.size();
          reads.fetch_add(1, std::memory_order_relaxed);
        }
        if (bytes == 0) std::fprintf(stderr, "reader saw nothing\n");
      });
    }
    uint64_t readings = 0;
    const auto start = std::chrono::steady_clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    size_t i = 0;
    while (std::chrono::steady_clock::now() < end) {
      for (size_t k = 0; k < 64; ++k, ++i) {
        const Batch& b = batches[i % batches.size()];
        store->update(b.device, *b.view, t0);
        readings += batch;
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    stop.store(true);
    if (reader.joinable()) reader.join();
    (reader_on ? with_reader : alone).push_back(static_cast<double>(readings) / secs);
    if (reader_on) reads_per_s.push_back(static_cast<double>(reads.load()) / secs);
  }
  std::printf("update(): %.2fM readings/s alone, %.2fM readings/s with a reader thread doing "
              "%.0f sensorsJson()/s (medians of %zu, batches of %zu readings)\n",
              median(alone) / 1e6, median(with_reader) / 1e6, median(reads_per_s), runs, batch);
  std::printf("{\"bench\":\"latest\",\"devices\":%zu,\"sensors_per_device\":%zu,"
              "\"history_buckets\":%zu,\"fill_minutes\":%zu,\"rss_bytes_per_sensor\":%.0f,"
              "\"charged_bytes_per_sensor\":%.0f,\"update_readings_per_s\":%.0f,"
              "\"update_readings_per_s_with_reader\":%.0f,\"reader_requests_per_s\":%.0f,"
              "\"runs\":%zu}\n",
              devices, sensors, store->historyBuckets(), fill, rss_per_sensor, charged_per_sensor,
              median(alone), median(with_reader), median(reads_per_s), runs);
  return 0;
}

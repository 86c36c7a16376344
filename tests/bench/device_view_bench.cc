// Issue 19: the process role's device view (device_status_view.h) on its own: how fast it applies
// device-status records (JSON parse + check + registry put, what a process instance does for
// every record of outpost.device-status at start and when following it) and the memory it keeps
// per device. No Kafka: the records are made as the ops layer publishes them (deviceJson in an
// event) and handed to DeviceStatusView::apply.
//
//   outpost-bench-device-view [--devices N] [--runs R]
//
// Prints one JSON line: records/s per run and their median, and the resident memory per device
// after the first run (VmRSS delta / N; the process's first use of that memory).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "outpost/aggregator/device_registry.h"
#include "outpost/aggregator/device_status_view.h"
#include "outpost/common/clock.h"
#include "outpost/common/json.h"
#include "outpost/common/metrics.h"

using namespace outpost;
using namespace outpost::aggregator;

namespace {

long rssKb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  size_t devices = 100000;
  int runs = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--devices") devices = std::strtoul(argv[i + 1], nullptr, 10);
    else if (a == "--runs") runs = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s (allowed: --devices N, --runs R)\n", a.c_str());
      return 2;
    }
  }
  // The records, built once: ids like a fleet's, realistic field values.
  std::vector<std::pair<std::string, std::string>> records;
  records.reserve(devices);
  size_t bytes = 0;
  for (size_t i = 0; i < devices; ++i) {
    DeviceInfo d;
    d.id = "site-" + std::to_string(i % 997) + "-pump-" + std::to_string(i);
    d.online = i % 10 != 0;
    d.reason = d.online ? "batch" : "silence";
    d.state_since_us = 1'765'000'000'000'000 + static_cast<int64_t>(i);
    d.first_seen_us = d.state_since_us - 86'400'000'000;
    d.last_seen_us = d.last_batch_us = d.state_since_us;
    d.agent_version = "0.1.0";
    d.epoch = 0x9e3779b97f4a7c15ULL * (i + 1);
    d.last_seq = 1000 + i;
    d.batches = 999;
    d.items = 99900;
    d.backlog_rows = 0;
    d.backlog_bytes = 0;
    std::string ev;
    json::Writer(ev)
        .beginObject()
        .member("type", "device_status")
        .member("ts_us", d.state_since_us)
        .key("device")
        .raw(deviceJson(d, d.state_since_us))
        .endObject();
    bytes += ev.size();
    records.emplace_back(d.id, std::move(ev));
  }
  std::vector<double> rates;
  double kb_per_device = 0;
  for (int r = 0; r < runs; ++r) {
    metrics::Registry registry;
    DeviceRegistryOptions opts;
    opts.max_devices = devices;
    const long rss0 = rssKb();
    auto view = std::make_unique<DeviceStatusView>(KafkaOptions{}, "outpost.device-status",
                                                   "bench", opts, registry,
                                                   SystemClock::instance());
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& [key, value] : records) view->apply(key, value.data(), value.size());
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (view->devices().size() != devices) {
      std::fprintf(stderr, "only %zu of %zu devices kept\n", view->devices().size(), devices);
      return 1;
    }
    if (r == 0) kb_per_device = static_cast<double>(rssKb() - rss0) / static_cast<double>(devices);
    rates.push_back(static_cast<double>(devices) / s);
  }
  std::vector<double> sorted = rates;
  std::sort(sorted.begin(), sorted.end());
  std::printf("{\"devices\":%zu,\"record_bytes_mean\":%.0f,\"records_per_s\":[", devices,
              static_cast<double>(bytes) / static_cast<double>(devices));
  for (size_t i = 0; i < rates.size(); ++i) std::printf("%s%.0f", i ? "," : "", rates[i]);
  std::printf("],\"median_records_per_s\":%.0f,\"rss_bytes_per_device\":%.0f}\n",
              sorted[sorted.size() / 2], kb_per_device * 1024);
  return 0;
}

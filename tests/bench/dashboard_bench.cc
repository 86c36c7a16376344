// outpost-bench-dashboard: serves the aggregator's real dashboard and device API (OpsCenter +
// HttpServer, the same code as outpost-aggregator) over a device registry seeded with N devices
// and fed a synthetic load in-process (batches of random devices every 100 ms, data-path counters
// and latency histograms as the aggregator updates them, a synthetic anomaly every 5 s), so the
// dashboard can be measured with 10,000 devices known without 10,000 agents. Bounded: exits after
// --duration seconds or on SIGTERM. Used by run_dashboard_bench.sh (docs/benchmarks.md).
// The latest-state store (issue 15) is seeded too: 4 sensors per online device with an hour of
// one-minute history, updated by the synthetic batches, so the device pages work at that scale.

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <span>
#include <thread>

#include "outpost/aggregator/cluster_view.h"
#include "outpost/aggregator/latest_store.h"
#include "outpost/aggregator/ops.h"
#include "outpost/common/codec.h"
#include "outpost/common/http_server.h"
#include "outpost/common/signals.h"

int main(int argc, char** argv) {
  using namespace outpost;
  using namespace outpost::aggregator;
  CLI::App app{"outpost-bench-dashboard: the aggregator dashboard over a seeded registry"};
  size_t devices = 10000;
  std::string listen = "127.0.0.1:0", port_file;
  int duration_s = 300;
  size_t batches_per_tick = 200, readings_per_batch = 100;
  app.add_option("--devices", devices, "Devices to seed (default 10000)");
  app.add_option("--listen", listen, "host:port (port 0: any free port)");
  app.add_option("--port-file", port_file, "Write the bound port here once serving");
  app.add_option("--duration", duration_s, "Exit after this many seconds (default 300)");
  app.add_option("--batches-per-tick", batches_per_tick, "Synthetic batches per 100 ms");
  app.add_option("--readings-per-batch", readings_per_batch, "Readings per synthetic batch");
  CLI11_PARSE(app, argc, argv);
  signals::installSignalHandlers();

  metrics::Registry reg;
  // The data-path series the dashboard reads, registered as Aggregator/KafkaProducer do.
  metrics::CounterVec batches_in(reg, "outpost_aggregator_batches_received_total", "Batches",
                                 "transport");
  metrics::CounterVec readings_in(reg, "outpost_aggregator_readings_received_total", "Readings",
                                  "transport");
  auto& published =
      reg.counter("outpost_aggregator_readings_published_total", "Readings published");
  auto& batches_out =
      reg.counter("outpost_aggregator_batches_published_total", "Batches published");
  auto& delivered = reg.counter("outpost_aggregator_kafka_messages_delivered_total", "Delivered");
  auto& ack = reg.histogram("outpost_aggregator_batch_latency_seconds", "Ack latency",
                            metrics::exponentialBuckets(0.0005, 2, 16));
  // What the Aggregator hands OpsCenter (PipelineStats), over the series above.
  struct SyntheticPipeline final : PipelineStats {
    metrics::CounterVec& batches_in;
    metrics::CounterVec& readings_in;
    metrics::Counter& published;
    metrics::Counter& batches_out;
    metrics::Counter& delivered;
    metrics::Histogram& ack;
    SyntheticPipeline(metrics::CounterVec& bi, metrics::CounterVec& ri, metrics::Counter& p,
                      metrics::Counter& bo, metrics::Counter& d, metrics::Histogram& a)
        : batches_in(bi), readings_in(ri), published(p), batches_out(bo), delivered(d), ack(a) {}
    PipelineTotals totals() const override {
      PipelineTotals t;
      t.batches_in = batches_in.sum();
      t.readings_in = readings_in.sum();
      t.readings_published = published.value();
      t.batches_published = batches_out.value();
      t.kafka_delivered = delivered.value();
      return t;
    }
    PipelineLevels levels() const override { return {}; }
    metrics::Histogram::Snapshot ackLatency() const override { return ack.snapshot(); }
  } pipeline(batches_in, readings_in, published, batches_out, delivered, ack);
  const SystemClock& clock = SystemClock::instance();
  OpsCenter ops(
      {}, reg, clock,
      [](const std::string&, const std::string&, const std::string&) { return true; },
      [] { return std::vector<std::string>{}; }, OpsSources{&pipeline, {}});

  // Latest state: a small ring (60 buckets) so 36,000 sensors stay ~60 MB.
  LatestOptions lo;
  lo.history_bytes = 60 * LatestStore::kBucketBytes;
  LatestStore latest(lo, 2, reg);
  auto feedLatest = [&](const std::string& id, int64_t from_us, int minutes, double phase) {
    codec::BatchContent c;
    c.device_id = id;
    c.epoch = 1;
    c.seq = 1;
    c.created_us = from_us;
    c.sensors = {{0, "temperature", "C"}, {1, "humidity", "%"}, {2, "pressure", "hPa"},
                 {3, "battery", "V"}};
    for (int m = 0; m < minutes; ++m) {
      const int64_t ts = from_us + int64_t{m} * 60'000'000;
      const double x = phase + m / 9.0;
      c.readings.emplace_back(ts, 21 + 3 * std::sin(x), 0, wire::Quality::Good);
      c.readings.emplace_back(ts, 45 + 10 * std::cos(x), 1, wire::Quality::Good);
      c.readings.emplace_back(ts, 1013 + std::sin(x / 3), 2, wire::Quality::Good);
      c.readings.emplace_back(ts, 3.7 - 0.001 * m, 3, wire::Quality::Good);
    }
    const auto bytes = codec::encodeBatch(c);
    auto v = codec::verifyBatch(std::span<const uint8_t>(bytes.data(), bytes.size()),
                                codec::VerifyLimits{});
    if (v) latest.update(id, **v, from_us);
  };

  // Seed: 90% online (a live status and a first batch), 10% offline by their last will.
  std::vector<uint64_t> seq(devices, 1);
  std::vector<std::string> ids(devices);
  const int64_t t0 = clock.nowUs();
  for (size_t i = 0; i < devices; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "dev-%05zu", i);
    ids[i] = id;
    if (i % 10 == 0) {
      ops.onStatus(ids[i], R"({"state":"offline","reason":"last_will","version":"0.1.0"})", false);
    } else {
      ops.onStatus(ids[i], R"({"state":"online","version":"0.1.0","backlog_rows":0})", false);
      ops.onBatch({ids[i], 1000 + i, 1, 0, readings_per_batch, t0});
      feedLatest(ids[i], t0 - 3'600'000'000, 60, static_cast<double>(i));
    }
  }
  ops.start();
  HttpServer http(reg, {}, {}, 8 + 4);
  ops.addRoutes(http);
  latest.addRoutes(http, clock);
  // As outpost-aggregator in role all without a process group: /api/cluster answers, no members
  // (the dashboard's Cluster panel stays hidden).
  const outpost::aggregator::ClusterOptions cluster;
  http.addHandler("/api/cluster", [&cluster] {
    return HttpServer::Response{200, "application/json",
                                outpost::aggregator::clusterJson(cluster, nullptr)};
  });
  if (auto st = http.start(listen); !st) {
    std::cerr << "outpost-bench-dashboard: " << st.error().toString() << "\n";
    return 1;
  }
  if (!port_file.empty()) std::ofstream(port_file) << http.port() << "\n";
  std::cerr << "dashboard on http://127.0.0.1:" << http.port() << "/ with " << devices
            << " devices\n";

  std::mt19937_64 rng(42);
  std::uniform_int_distribution<size_t> pick(0, devices - 1);
  std::lognormal_distribution<double> ack_s(std::log(0.008), 0.5), e2e_s(std::log(0.3), 0.4);
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(duration_s);
  int tick = 0;
  while (!signals::stopRequested() && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t now = clock.nowUs();
    for (size_t b = 0; b < batches_per_tick; ++b) {
      const size_t i = pick(rng);
      if (i % 10 == 0) continue;  // the offline ones stay offline
      ops.onBatch({ids[i], 1000 + i, ++seq[i], 0, readings_per_batch, now});
      if (b < 20) feedLatest(ids[i], now, 1, static_cast<double>(tick));
      batches_in.with("mqtt").inc();
      readings_in.with("mqtt").inc(readings_per_batch);
      published.inc(readings_per_batch);
      batches_out.inc();
      delivered.inc();
      ack.observe(ack_s(rng));
      ops.onDelivered(
          {ids[i], readings_per_batch, now - static_cast<int64_t>(e2e_s(rng) * 1e6), now});
    }
    if (++tick % 50 == 0) {  // a synthetic anomaly every 5 s, with its sensor's recent values
      AnomalyEvent a;
      a.device = ids[pick(rng) / 10 * 10 + 1];
      a.sensor = "temperature";
      a.kind = tick % 100 == 0 ? "drift" : "spike";
      a.ts_us = now;
      for (int k = 0; k < 120; ++k) {
        const double v = 20 + 2 * std::sin(k / 8.0) + (k == 119 ? 15 : 0);
        a.recent.emplace_back(now - (119 - k) * 500'000, v);
      }
      a.value = a.recent.back().second;
      a.score = 0.97;
      ops.onAnomaly(a);
    }
  }
  http.stop();
  ops.stop();
  return 0;
}

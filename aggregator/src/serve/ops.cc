#include "outpost/aggregator/ops.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "dashboard_assets.h"
#include "outpost/aggregator/json.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {
namespace {

constexpr size_t kHistoryPoints = 300;  // seconds of chart history served to a new page
constexpr size_t kLatencyWindow = 10;   // percentiles over the last 10 s
constexpr size_t kMaxPageLimit = 500;
constexpr size_t kMaxRecentValues = 120;

// Quantile `q` of the observations between two cumulative snapshots (linear within a bucket);
// NaN when nothing was observed.
double quantile(const metrics::Histogram::Snapshot& now, const metrics::Histogram::Snapshot& then,
                double q) {
  const uint64_t total = now.count - then.count;
  if (total == 0) return std::nan("");
  const double rank = q * static_cast<double>(total);
  uint64_t prev_cum = 0;
  for (size_t i = 0; i < now.cumulative.size(); ++i) {
    const uint64_t cum = now.cumulative[i] - then.cumulative[i];
    if (static_cast<double>(cum) >= rank && cum > prev_cum) {
      const double lo = i == 0 ? 0.0 : now.bounds[i - 1];
      if (i >= now.bounds.size()) return lo;  // +Inf bucket: its lower bound
      const double hi = now.bounds[i];
      const double frac =
          (rank - static_cast<double>(prev_cum)) / static_cast<double>(cum - prev_cum);
      return lo + (hi - lo) * std::clamp(frac, 0.0, 1.0);
    }
    prev_cum = cum;
  }
  return now.bounds.empty() ? std::nan("") : now.bounds.back();
}

void num(std::string& o, const char* name, double v) {
  o += '"';
  o += name;
  o += "\":";
  appendJsonNumber(o, v);
}

bool parseSize(const std::string& s, size_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

HttpServer::Response json(int status, std::string body) {
  return {status, "application/json", std::move(body)};
}

std::string anomalyJson(const AnomalyEvent& e) {
  std::string o = "{\"device\":";
  appendJsonString(o, e.device);
  o += ",\"sensor\":";
  appendJsonString(o, e.sensor);
  o += ",\"kind\":";
  appendJsonString(o, e.kind);
  o += ",";
  num(o, "value", e.value);
  o += ",";
  num(o, "score", e.score);
  o += ",\"ts_us\":" + std::to_string(e.ts_us) + ",\"recent\":[";
  for (size_t i = 0; i < e.recent.size(); ++i) {
    if (i) o += ',';
    o += "[" + std::to_string(e.recent[i].first) + ",";
    appendJsonNumber(o, e.recent[i].second);
    o += "]";
  }
  return o + "]}";
}

}  // namespace

// Samples the registry once a tick: rates, latency percentiles, chart history.
struct OpsCenter::Sampler {
  struct Totals {
    int64_t mono_us = 0;
    uint64_t batches_in = 0, readings_in = 0, readings_out = 0, batches_out = 0, rejected = 0,
             duplicates = 0, kafka_ok = 0, kafka_failed = 0, batch_failures = 0, anomalies = 0;
  };
  metrics::Registry& reg;
  metrics::Histogram& ack;
  metrics::Histogram& e2e;
  std::deque<metrics::Histogram::Snapshot> ack_hist, e2e_hist;  // newest last
  Totals prev;
  std::deque<std::string> history;  // JSON points, newest last

  Totals read(int64_t mono_us) const {
    Totals t;
    t.mono_us = mono_us;
    t.batches_in = reg.counterSum("outpost_aggregator_batches_received_total");
    t.readings_in = reg.counterSum("outpost_aggregator_readings_received_total");
    t.readings_out = reg.counterSum("outpost_aggregator_readings_published_total");
    t.batches_out = reg.counterSum("outpost_aggregator_batches_published_total");
    t.rejected = reg.counterSum("outpost_aggregator_rejected_batches_total");
    t.duplicates = reg.counterSum("outpost_aggregator_duplicate_batches_total") +
                   reg.counterSum("outpost_aggregator_duplicate_inflight_batches_total");
    t.kafka_ok = reg.counterSum("outpost_aggregator_kafka_messages_delivered_total");
    t.kafka_failed = reg.counterSum("outpost_aggregator_kafka_messages_failed_total");
    t.batch_failures = reg.counterSum("outpost_aggregator_kafka_delivery_failures_total");
    t.anomalies = reg.counterSum("outpost_aggregator_anomalies_total");
    return t;
  }

  double gauge(const std::string& name) const {
    double sum = 0;
    for (const auto& [labels, v] : reg.gaugeValues(name)) sum += v;
    return sum;
  }
};

OpsCenter::OpsCenter(OpsOptions options, metrics::Registry& registry, const Clock& clock,
                     PublishFn publish, ReadinessFn readiness)
    : opt_(std::move(options)),
      registry_(registry),
      clock_(clock),
      publish_(std::move(publish)),
      readiness_(std::move(readiness)),
      devices_(opt_.devices, [this](const DeviceInfo& d) { onDeviceChange(d); }),
      e2e_latency_(registry.histogram(
          "outpost_aggregator_e2e_latency_seconds",
          "From a batch's oldest reading timestamp (agent clock) to Kafka's delivery report of "
          "the batch; per batch",
          metrics::exponentialBuckets(0.001, 2, 20))),
      status_events_(registry, "outpost_aggregator_device_status_events_total",
                     "Device status changes published, by new state", "state"),
      status_events_dropped_(registry.counter(
          "outpost_aggregator_device_status_events_dropped_total",
          "Device status events not published (event queue full or Kafka refused)")) {
  DeviceRegistry* devs = &devices_;
  registry.gaugeFunction("outpost_aggregator_devices", "Known devices by state",
                         [devs] { return static_cast<double>(devs->onlineCount()); },
                         {{"state", "online"}});
  registry.gaugeFunction("outpost_aggregator_devices", "Known devices by state",
                         [devs] { return static_cast<double>(devs->size() - devs->onlineCount()); },
                         {{"state", "offline"}});
  sampler_ = std::make_unique<Sampler>(
      Sampler{registry,
              registry.histogram("outpost_aggregator_batch_latency_seconds",
                                 "From receiving a batch to sending its ack",
                                 metrics::exponentialBuckets(0.0005, 2, 16)),
              e2e_latency_,
              {},
              {},
              {},
              {}});
  started_us_ = clock_.nowUs();
  sampler_->prev = sampler_->read(clock_.monotonicUs());
  tick();
}

OpsCenter::~OpsCenter() { stop(); }

void OpsCenter::start() {
  if (!opt_.webhook.url.empty()) {
    auto w = Webhook::create(opt_.webhook, registry_);
    if (!w) throw std::runtime_error(w.error().toString());
    webhook_ = std::move(*w);
  }
  thread_ = std::thread([this] {
    setThreadName("op-ops");
    run();
  });
}

void OpsCenter::stop() {
  {
    MutexLock lock(run_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  publishPending();
  if (webhook_) webhook_->stop();
}

void OpsCenter::run() {
  for (;;) {
    {
      MutexLock lock(run_mu_);
      if (run_cv_.wait_for(lock, std::chrono::seconds(1),
                           [this]() REQUIRES(run_mu_) { return stopping_; })) {
        return;
      }
    }
    devices_.sweep(clock_.nowUs());
    publishPending();
    tick();
  }
}

void OpsCenter::onBatch(const BatchSeen& b) { devices_.onBatch(b); }

void OpsCenter::onDelivered(const BatchDelivered& d) {
  if (d.oldest_item_us <= 0) return;
  e2e_latency_.observe(static_cast<double>(std::max<int64_t>(0, d.now_us - d.oldest_item_us)) /
                       1e6);
}

void OpsCenter::onAnomaly(const AnomalyEvent& e) {
  // Counted by the detection stage (outpost_aggregator_anomalies_total{kind}), not here.
  {
    MutexLock lock(anomalies_mu_);
    AnomalyEvent& kept = latest_anomalies_.emplace_front(e);
    if (kept.recent.size() > kMaxRecentValues) {
      kept.recent.erase(kept.recent.begin(),
                        kept.recent.end() - static_cast<ptrdiff_t>(kMaxRecentValues));
    }
    kept.json.clear();
    while (latest_anomalies_.size() > opt_.anomalies_kept) latest_anomalies_.pop_back();
  }
  if (webhook_) {
    std::string body = "{\"type\":\"anomaly\",\"event\":";
    body += e.json.empty() ? anomalyJson(e) : e.json;
    webhook_->post(body + "}");
  }
}

void OpsCenter::onStatus(const std::string& device, std::string_view payload, bool retained) {
  devices_.onStatus(device, payload, retained, clock_.nowUs());
}

void OpsCenter::onDeviceChange(const DeviceInfo& d) {
  std::string ev = "{\"type\":\"device_status\",\"ts_us\":" + std::to_string(clock_.nowUs()) +
                   ",\"device\":" + deviceJson(d, clock_.nowUs()) + "}";
  {
    MutexLock lock(events_mu_);
    if (events_.size() >= opt_.event_queue_capacity) {
      status_events_dropped_.inc();
    } else {
      events_.emplace_back(d.id, ev);
    }
  }
  // A device first heard of as online is not news; going offline, or coming back, is.
  if (webhook_ && (!d.online || (opt_.alert_online && d.first_seen_us != d.state_since_us))) {
    webhook_->post(ev);
  }
  status_events_.with(d.online ? "online" : "offline").inc();
}

void OpsCenter::publishPending() {
  std::deque<std::pair<std::string, std::string>> batch;
  {
    MutexLock lock(events_mu_);
    batch.swap(events_);
  }
  for (const auto& [key, value] : batch) {
    if (!publish_ || !publish_(opt_.status_topic, key, value)) status_events_dropped_.inc();
  }
}

void OpsCenter::tick() {
  Sampler& s = *sampler_;
  const int64_t mono = clock_.monotonicUs();
  const Sampler::Totals t = s.read(mono);
  const double dt = std::max(1e-3, static_cast<double>(t.mono_us - s.prev.mono_us) / 1e6);
  auto rate = [&](uint64_t now, uint64_t then) {
    return static_cast<double>(now >= then ? now - then : 0) / dt;
  };
  s.ack_hist.push_back(s.ack.snapshot());
  s.e2e_hist.push_back(s.e2e.snapshot());
  while (s.ack_hist.size() > kLatencyWindow + 1) s.ack_hist.pop_front();
  while (s.e2e_hist.size() > kLatencyWindow + 1) s.e2e_hist.pop_front();

  const double in_rate = rate(t.readings_in, s.prev.readings_in);
  const double out_rate = rate(t.readings_out, s.prev.readings_out);
  const double batch_rate = rate(t.batches_in, s.prev.batches_in);
  const double rej_rate = rate(t.rejected, s.prev.rejected);
  const double dup_rate = rate(t.duplicates, s.prev.duplicates);
  const double kfail_rate = rate(t.kafka_failed, s.prev.kafka_failed);
  const double kok_rate = rate(t.kafka_ok, s.prev.kafka_ok);
  const double e2e50 = quantile(s.e2e_hist.back(), s.e2e_hist.front(), 0.5);
  const double e2e95 = quantile(s.e2e_hist.back(), s.e2e_hist.front(), 0.95);
  const double e2e99 = quantile(s.e2e_hist.back(), s.e2e_hist.front(), 0.99);
  const double ack50 = quantile(s.ack_hist.back(), s.ack_hist.front(), 0.5);
  const double ack95 = quantile(s.ack_hist.back(), s.ack_hist.front(), 0.95);
  const double ack99 = quantile(s.ack_hist.back(), s.ack_hist.front(), 0.99);
  s.prev = t;

  const int64_t now_us = clock_.nowUs();
  std::string point = "[" + std::to_string(now_us / 1000) + ",";
  for (double v : {in_rate, out_rate, rej_rate, e2e50, e2e95, e2e99, ack99}) {
    appendJsonNumber(point, v);
    point += ',';
  }
  point.back() = ']';
  {
    MutexLock lock(snapshot_mu_);  // /api/history reads it from HTTP threads
    s.history.push_back(point);
    while (s.history.size() > kHistoryPoints) s.history.pop_front();
  }

  std::vector<std::string> reasons;
  if (readiness_) reasons = readiness_();
  const size_t known = devices_.size(), online = devices_.onlineCount();

  std::string o = "{\"ts_ms\":" + std::to_string(now_us / 1000) +
                  ",\"uptime_s\":" + std::to_string((now_us - started_us_) / 1000000) +
                  ",\"ready\":" + (reasons.empty() ? "true" : "false") + ",\"reasons\":[";
  for (size_t i = 0; i < reasons.size(); ++i) {
    if (i) o += ',';
    appendJsonString(o, reasons[i]);
  }
  o += "],\"rates\":{";
  num(o, "readings_in", in_rate);
  o += ',';
  num(o, "readings_published", out_rate);
  o += ',';
  num(o, "batches_in", batch_rate);
  o += ',';
  num(o, "rejected_batches", rej_rate);
  o += ',';
  num(o, "duplicate_batches", dup_rate);
  o += ',';
  num(o, "kafka_delivered", kok_rate);
  o += ',';
  num(o, "kafka_failed", kfail_rate);
  o += "},\"totals\":{\"readings_in\":" + std::to_string(t.readings_in) +
       ",\"readings_published\":" + std::to_string(t.readings_out) +
       ",\"batches_in\":" + std::to_string(t.batches_in) +
       ",\"batches_published\":" + std::to_string(t.batches_out) +
       ",\"rejected_batches\":" + std::to_string(t.rejected) +
       ",\"duplicate_batches\":" + std::to_string(t.duplicates) +
       ",\"kafka_failed_messages\":" + std::to_string(t.kafka_failed) +
       ",\"undelivered_batches\":" + std::to_string(t.batch_failures) +
       ",\"anomalies\":" + std::to_string(t.anomalies) + "},\"latency_s\":{\"e2e\":{";
  num(o, "p50", e2e50);
  o += ',';
  num(o, "p95", e2e95);
  o += ',';
  num(o, "p99", e2e99);
  o += "},\"ack\":{";
  num(o, "p50", ack50);
  o += ',';
  num(o, "p95", ack95);
  o += ',';
  num(o, "p99", ack99);
  o += "}},\"kafka\":{";
  num(o, "outstanding_messages", s.gauge("outpost_aggregator_kafka_outstanding_messages"));
  o += ',';
  num(o, "intake_paused", s.gauge("outpost_aggregator_intake_paused"));
  o += "},\"mqtt_connected\":";
  if (registry_.gaugeValues("outpost_aggregator_mqtt_connected").empty())
    o += "null";  // no MQTT
  else
    appendJsonNumber(o, s.gauge("outpost_aggregator_mqtt_connected"));
  o += ",\"workers\":[";
  bool first = true;
  for (const auto& [labels, v] : registry_.gaugeValues("outpost_aggregator_queue_depth")) {
    if (!first) o += ',';
    first = false;
    appendJsonNumber(o, v);
  }
  o += "],\"devices\":{\"known\":" + std::to_string(known) +
       ",\"online\":" + std::to_string(online) + ",\"offline\":" + std::to_string(known - online) +
       "},\"point\":" + point + "}";
  {
    MutexLock lock(snapshot_mu_);
    snapshot_ = std::move(o);
    ++generation_;
  }
  snapshot_cv_.notify_all();
}

std::string OpsCenter::waitSnapshot(uint64_t& seen) const {
  MutexLock lock(snapshot_mu_);
  snapshot_cv_.wait_for(lock, std::chrono::milliseconds(1100),
                        [&]() REQUIRES(snapshot_mu_) { return generation_ > seen; });
  seen = generation_;
  return snapshot_;
}

std::string OpsCenter::snapshot() const {
  MutexLock lock(snapshot_mu_);
  return snapshot_;
}

std::string OpsCenter::anomaliesJson(const std::string& device) const {
  MutexLock lock(anomalies_mu_);
  std::string o = "{\"items\":[";
  bool first = true;
  for (const AnomalyEvent& e : latest_anomalies_) {
    if (!device.empty() && e.device != device) continue;
    if (!first) o += ',';
    first = false;
    o += anomalyJson(e);
  }
  return o + "]}";
}

HttpServer::Response OpsCenter::devicesPage(const HttpServer::Request& req) const {
  size_t offset = 0, limit = 50;
  const std::string off_s = req.param("offset", "0"), lim_s = req.param("limit", "50");
  if (!parseSize(off_s, offset)) {
    return json(400, "{\"error\":\"offset must be a non-negative integer\"}");
  }
  if (!parseSize(lim_s, limit) || limit < 1 || limit > kMaxPageLimit) {
    return json(400, "{\"error\":\"limit must be an integer from 1 to " +
                         std::to_string(kMaxPageLimit) + "\"}");
  }
  const std::string state = req.param("state");
  if (!state.empty() && state != "online" && state != "offline") {
    return json(400, "{\"error\":\"state must be online, offline or empty\"}");
  }
  const std::string q = req.param("q");
  if (q.size() > 256) return json(400, "{\"error\":\"q is longer than 256 bytes\"}");
  const auto page = devices_.list(offset, limit, q, state);
  const int64_t now = clock_.nowUs();
  std::string o = "{\"total\":" + std::to_string(page.total) +
                  ",\"offset\":" + std::to_string(offset) + ",\"limit\":" + std::to_string(limit) +
                  ",\"items\":[";
  for (size_t i = 0; i < page.items.size(); ++i) {
    if (i) o += ',';
    o += deviceJson(page.items[i], now);
  }
  return json(200, o + "]}");
}

HttpServer::Response OpsCenter::deviceById(const std::string& id) const {
  auto d = devices_.get(id);
  if (!d) {
    std::string o = "{\"error\":\"unknown device\",\"id\":";
    appendJsonString(o, id);
    return json(404, o + "}");
  }
  return json(200, deviceJson(*d, clock_.nowUs()));
}

void OpsCenter::addRoutes(HttpServer& http) {
  size_t n = 0;
  const EmbeddedFile* files = dashboardFiles(n);
  for (size_t i = 0; i < n; ++i) {
    const EmbeddedFile f = files[i];
    http.addHandler(f.path, [f] {
      return HttpServer::Response{200, f.content_type,
                                  std::string(reinterpret_cast<const char*>(f.data), f.size)};
    });
  }
  // Interval 0: each client's thread waits in waitSnapshot() for the next tick, so a snapshot
  // reaches the page as soon as it is computed. The cursor is per handler thread; a stream holds
  // its thread for its whole life, and a new stream on a reused thread gets the current snapshot
  // at once (it is newer than what that thread sent last).
  http.addEventStream(
      "/api/stream",
      [this] {
        thread_local uint64_t seen = 0;
        return waitSnapshot(seen);
      },
      0, opt_.max_stream_clients);
  http.addHandler("/api/snapshot", [this] { return json(200, snapshot()); });
  http.addHandler("/api/history", [this] {
    std::string o =
        "{\"columns\":[\"ts_ms\",\"readings_in\",\"readings_published\","
        "\"rejected_batches\",\"e2e_p50\",\"e2e_p95\",\"e2e_p99\",\"ack_p99\"],"
        "\"points\":[";
    {
      MutexLock lock(snapshot_mu_);
      bool first = true;
      for (const auto& p : sampler_->history) {
        if (!first) o += ',';
        first = false;
        o += p;
      }
    }
    return json(200, o + "]}");
  });
  http.addRequestHandler("/api/anomalies", [this](const HttpServer::Request& r) {
    return json(200, anomaliesJson(r.param("device")));  // ?device=: only that device's
  });
  http.addRequestHandler("/api/devices",
                         [this](const HttpServer::Request& r) { return devicesPage(r); });
  http.addRequestHandler(R"(/api/devices/([^/]+))", [this](const HttpServer::Request& r) {
    return deviceById(r.matches.size() > 1 ? r.matches[1] : "");
  });
}

}  // namespace outpost::aggregator

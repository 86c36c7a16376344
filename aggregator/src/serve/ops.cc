#include "outpost/aggregator/ops.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

#include "dashboard_assets.h"
#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/common/json.h"
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

bool parseSize(const std::string& s, size_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

HttpServer::Response jsonResponse(int status, std::string body) {
  return {status, "application/json", std::move(body)};
}

HttpServer::Response badRequest(const std::string& why) {
  std::string o;
  json::Writer(o).beginObject().member("error", why).endObject();
  return jsonResponse(400, std::move(o));
}

// The event of an AnomalyEvent that arrived without its Kafka JSON (a caller other than the
// detection stage): rendered by the one renderer of anomaly events, appendAnomalyJson.
std::string eventJson(const AnomalyEvent& e) {
  AnomalyRecord r;
  r.device = e.device;
  r.sensor = e.sensor;
  for (uint8_t k = 0; k <= static_cast<uint8_t>(detect::AnomalyKind::kCombined); ++k) {
    const auto kind = static_cast<detect::AnomalyKind>(k);
    if (e.kind == detect::kindName(kind)) r.kind = kind;
  }
  r.timestamp_us = e.ts_us;
  r.value = e.value;
  r.score = e.score;
  r.expected_lo = r.expected_hi = std::nan("");  // not known here: null
  std::string out;
  appendAnomalyJson(r, out);
  return out;
}

// An anomaly as the dashboard shows it (openapi.json, "Anomaly"): the event with the sensor's
// recent values for a sparkline.
void writeAnomaly(json::Writer& w, const AnomalyEvent& e) {
  w.beginObject()
      .member("device", e.device)
      .member("sensor", e.sensor)
      .member("kind", e.kind)
      .member("value", e.value)
      .member("score", e.score)
      .member("ts_us", e.ts_us)
      .key("recent")
      .beginArray();
  for (const auto& [ts, v] : e.recent) w.beginArray().integer(ts).number(v).endArray();
  w.endArray().endObject();
}

}  // namespace

// What tick() keeps between ticks: the previous totals (for rates) and the latency histograms of
// the last kLatencyWindow seconds (for percentiles).
struct OpsCenter::Sampler {
  OpsSources sources;
  metrics::Histogram& e2e;
  std::deque<metrics::Histogram::Snapshot> ack_hist, e2e_hist;  // newest last
  PipelineTotals prev;
  int64_t prev_mono_us = 0;

  PipelineTotals totals() const {
    return sources.pipeline ? sources.pipeline->totals() : PipelineTotals{};
  }
  PipelineLevels levels() const {
    return sources.pipeline ? sources.pipeline->levels() : PipelineLevels{};
  }
  metrics::Histogram::Snapshot ackLatency() const {
    return sources.pipeline ? sources.pipeline->ackLatency() : metrics::Histogram::Snapshot{};
  }
};

OpsCenter::OpsCenter(OpsOptions options, metrics::Registry& registry, const Clock& clock,
                     PublishFn publish, ReadinessFn readiness, OpsSources sources)
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
  sampler_ = std::make_unique<Sampler>(Sampler{std::move(sources), e2e_latency_, {}, {}, {}, 0});
  started_us_ = clock_.nowUs();
  sampler_->prev = sampler_->totals();
  sampler_->prev_mono_us = clock_.monotonicUs();
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
    std::string body;
    json::Writer w(body);
    w.beginObject()
        .member("type", "anomaly")
        .key("event")
        .raw(e.json.empty() ? eventJson(e) : e.json)
        .endObject();
    webhook_->post(std::move(body));
  }
}

void OpsCenter::onStatus(const std::string& device, std::string_view payload, bool retained) {
  devices_.onStatus(device, payload, retained, clock_.nowUs());
}

void OpsCenter::onDeviceChange(const DeviceInfo& d) {
  std::string ev;
  json::Writer(ev)
      .beginObject()
      .member("type", "device_status")
      .member("ts_us", clock_.nowUs())
      .key("device")
      .raw(deviceJson(d, clock_.nowUs()))
      .endObject();
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
  const PipelineTotals t = s.totals();
  const PipelineLevels levels = s.levels();
  const double dt = std::max(1e-3, static_cast<double>(mono - s.prev_mono_us) / 1e6);
  auto rate = [&](uint64_t now, uint64_t then) {
    return static_cast<double>(now >= then ? now - then : 0) / dt;
  };
  s.ack_hist.push_back(s.ackLatency());
  s.e2e_hist.push_back(s.e2e.snapshot());
  while (s.ack_hist.size() > kLatencyWindow + 1) s.ack_hist.pop_front();
  while (s.e2e_hist.size() > kLatencyWindow + 1) s.e2e_hist.pop_front();

  const double in_rate = rate(t.readings_in, s.prev.readings_in);
  const double out_rate = rate(t.readings_published, s.prev.readings_published);
  const double batch_rate = rate(t.batches_in, s.prev.batches_in);
  const double rej_rate = rate(t.rejected, s.prev.rejected);
  const double dup_rate = rate(t.duplicates, s.prev.duplicates);
  const double kfail_rate = rate(t.kafka_failed, s.prev.kafka_failed);
  const double kok_rate = rate(t.kafka_delivered, s.prev.kafka_delivered);
  const double e2e50 = quantile(s.e2e_hist.back(), s.e2e_hist.front(), 0.5);
  const double e2e95 = quantile(s.e2e_hist.back(), s.e2e_hist.front(), 0.95);
  const double e2e99 = quantile(s.e2e_hist.back(), s.e2e_hist.front(), 0.99);
  const double ack50 = quantile(s.ack_hist.back(), s.ack_hist.front(), 0.5);
  const double ack95 = quantile(s.ack_hist.back(), s.ack_hist.front(), 0.95);
  const double ack99 = quantile(s.ack_hist.back(), s.ack_hist.front(), 0.99);
  s.prev = t;
  s.prev_mono_us = mono;

  const int64_t now_us = clock_.nowUs();
  std::string point;
  {
    json::Writer p(point);
    p.beginArray().integer(now_us / 1000);
    for (double v : {in_rate, out_rate, rej_rate, e2e50, e2e95, e2e99, ack99}) p.number(v);
    p.endArray();
  }
  {
    MutexLock lock(snapshot_mu_);  // /api/history reads it from HTTP threads
    history_.push_back(point);
    while (history_.size() > kHistoryPoints) history_.pop_front();
  }

  std::vector<std::string> reasons;
  if (readiness_) reasons = readiness_();
  const size_t known = devices_.size(), online = devices_.onlineCount();

  std::string o;
  json::Writer w(o);
  w.beginObject()
      .member("ts_ms", now_us / 1000)
      .member("uptime_s", (now_us - started_us_) / 1000000)
      .member("ready", reasons.empty())
      .key("reasons")
      .beginArray();
  for (const auto& r : reasons) w.string(r);
  w.endArray()
      .key("rates")
      .beginObject()
      .member("readings_in", in_rate)
      .member("readings_published", out_rate)
      .member("batches_in", batch_rate)
      .member("rejected_batches", rej_rate)
      .member("duplicate_batches", dup_rate)
      .member("kafka_delivered", kok_rate)
      .member("kafka_failed", kfail_rate)
      .endObject()
      .key("totals")
      .beginObject()
      .member("readings_in", t.readings_in)
      .member("readings_published", t.readings_published)
      .member("batches_in", t.batches_in)
      .member("batches_published", t.batches_published)
      .member("rejected_batches", t.rejected)
      .member("duplicate_batches", t.duplicates)
      .member("kafka_failed_messages", t.kafka_failed)
      .member("undelivered_batches", t.undelivered_batches)
      .member("anomalies", t.anomalies)
      .endObject()
      .key("latency_s")
      .beginObject()
      .key("e2e")
      .beginObject()
      .member("p50", e2e50)
      .member("p95", e2e95)
      .member("p99", e2e99)
      .endObject()
      .key("ack")
      .beginObject()
      .member("p50", ack50)
      .member("p95", ack95)
      .member("p99", ack99)
      .endObject()
      .endObject()
      .key("kafka")
      .beginObject()
      .member("outstanding_messages", levels.kafka_outstanding)
      .member("intake_paused", levels.intake_paused)
      .endObject()
      .key("mqtt_connected");
  if (s.sources.mqtt_connected) {
    w.number(s.sources.mqtt_connected() ? 1.0 : 0.0);
  } else {
    w.null();  // no MQTT
  }
  w.key("workers").beginArray();
  for (double depth : levels.queue_depths) w.number(depth);
  w.endArray()
      .key("devices")
      .beginObject()
      .member("known", known)
      .member("online", online)
      .member("offline", known - online)
      .endObject()
      .key("point")
      .raw(point)
      .endObject();
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
  std::string o;
  json::Writer w(o);
  w.beginObject().key("items").beginArray();
  {
    MutexLock lock(anomalies_mu_);
    for (const AnomalyEvent& e : latest_anomalies_) {
      if (device.empty() || e.device == device) writeAnomaly(w, e);
    }
  }
  w.endArray().endObject();
  return o;
}

HttpServer::Response devicesPageResponse(const DeviceRegistry& devices,
                                         const HttpServer::Request& req, int64_t now_us) {
  size_t offset = 0, limit = 50;
  const std::string off_s = req.param("offset", "0"), lim_s = req.param("limit", "50");
  if (!parseSize(off_s, offset)) return badRequest("offset must be a non-negative integer");
  if (!parseSize(lim_s, limit) || limit < 1 || limit > kMaxPageLimit) {
    return badRequest("limit must be an integer from 1 to " + std::to_string(kMaxPageLimit));
  }
  const std::string state = req.param("state");
  if (!state.empty() && state != "online" && state != "offline") {
    return badRequest("state must be online, offline or empty");
  }
  const std::string q = req.param("q");
  if (q.size() > 256) return badRequest("q is longer than 256 bytes");
  const auto page = devices.list(offset, limit, q, state);
  std::string o;
  json::Writer w(o);
  w.beginObject()
      .member("total", page.total)
      .member("offset", offset)
      .member("limit", limit)
      .key("items")
      .beginArray();
  for (const auto& d : page.items) w.raw(deviceJson(d, now_us));
  w.endArray().endObject();
  return jsonResponse(200, std::move(o));
}

HttpServer::Response deviceByIdResponse(const DeviceRegistry& devices, const std::string& id,
                                        int64_t now_us) {
  auto d = devices.get(id);
  if (!d) {
    std::string o;
    json::Writer(o).beginObject().member("error", "unknown device").member("id", id).endObject();
    return jsonResponse(404, std::move(o));
  }
  return jsonResponse(200, deviceJson(*d, now_us));
}

HttpServer::Response OpsCenter::devicesPage(const HttpServer::Request& req) const {
  return devicesPageResponse(devices_, req, clock_.nowUs());
}

HttpServer::Response OpsCenter::deviceById(const std::string& id) const {
  return deviceByIdResponse(devices_, id, clock_.nowUs());
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
  http.addHandler("/api/snapshot", [this] { return jsonResponse(200, snapshot()); });
  http.addHandler("/api/history", [this] {
    std::string o;
    json::Writer w(o);
    w.beginObject().key("columns").beginArray();
    for (const char* c : {"ts_ms", "readings_in", "readings_published", "rejected_batches",
                          "e2e_p50", "e2e_p95", "e2e_p99", "ack_p99"}) {
      w.string(c);
    }
    w.endArray().key("points").beginArray();
    {
      MutexLock lock(snapshot_mu_);
      for (const auto& p : history_) w.raw(p);
    }
    w.endArray().endObject();
    return jsonResponse(200, std::move(o));
  });
  http.addRequestHandler("/api/anomalies", [this](const HttpServer::Request& r) {
    return jsonResponse(200, anomaliesJson(r.param("device")));  // ?device=: only that device's
  });
  http.addRequestHandler("/api/devices",
                         [this](const HttpServer::Request& r) { return devicesPage(r); });
  http.addRequestHandler(R"(/api/devices/([^/]+))", [this](const HttpServer::Request& r) {
    return deviceById(r.matches.size() > 1 ? r.matches[1] : "");
  });
}

}  // namespace outpost::aggregator

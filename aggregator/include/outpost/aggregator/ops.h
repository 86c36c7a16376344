#pragma once

// The aggregator's operations side: the device registry and its status events, the alert
// webhook, the end-to-end latency and anomaly metrics, and the live dashboard with its JSON API
// (served on the ops HTTP endpoint next to /metrics):
//   GET /                      the dashboard (one page, embedded in the binary)
//   GET /api/stream            server-sent events: one snapshot (JSON) per second
//   GET /api/snapshot          the same snapshot, once
//   GET /api/devices           ?offset=&limit=(<=500)&q=<id substring>&state=online|offline
//   GET /api/devices/{id}      one device
//   GET /api/anomalies         ?device=<id>: the latest anomalies with their sensor's recent values
//   GET /api/openapi.json      the OpenAPI document of the whole HTTP API (aggregator/api/)
//   (latest_store.h adds /api/devices/{id}/sensors and /api/devices/{id}/sensors/{name}/history)
//   (app.cc adds GET /api/cluster: the process role's group as Kafka describes it, cluster_view.h)
//
// Threads: the BatchObserver / AnomalySink / onStatus entry points are called from the data path
// (workers, Kafka poll thread, MQTT callback thread) and only update memory; one ops thread
// ("op-ops") sweeps for silent devices, publishes status events to Kafka, feeds the webhook and
// computes the dashboard snapshot once a second; HTTP threads read the cached snapshot.

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "outpost/aggregator/device_registry.h"
#include "outpost/aggregator/ops_hooks.h"
#include "outpost/aggregator/webhook.h"
#include "outpost/common/clock.h"
#include "outpost/common/config.h"
#include "outpost/common/http_server.h"
#include "outpost/common/metrics.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::aggregator {

struct OpsOptions {
  std::string status_topic = "outpost.device-status";
  DeviceRegistryOptions devices;
  WebhookOptions webhook;                // url empty: no alerts
  bool alert_online = true;              // also alert when an offline device comes back
  size_t max_stream_clients = 8;         // /api/stream clients at once (each holds an HTTP thread)
  size_t anomalies_kept = 50;            // latest anomalies kept for the dashboard
  size_t event_queue_capacity = 100000;  // status events waiting for Kafka
};

OpsOptions opsOptionsFrom(const config::Config& cfg);

// GET /api/devices (?offset=&limit=&q=&state=) and GET /api/devices/{id} over any registry: the
// ops layer's own, or the process role's replica of the device-status topic
// (device_status_view.h). Bad parameters: 400 naming them; an unknown device: 404.
HttpServer::Response devicesPageResponse(const DeviceRegistry& devices,
                                         const HttpServer::Request& req, int64_t now_us);
HttpServer::Response deviceByIdResponse(const DeviceRegistry& devices, const std::string& id,
                                        int64_t now_us);

// What the dashboard reads of the other modules, handed in by whoever wires the program.
struct OpsSources {
  // The data path's totals, levels and ack latency; null: shown as 0 (no data path).
  const PipelineStats* pipeline = nullptr;
  // Whether the MQTT ingest is connected now (any thread); empty: no MQTT ingest (shown as null).
  std::function<bool()> mqtt_connected;
};

class OpsCenter final : public BatchObserver, public AnomalySink {
 public:
  // Produces one event to Kafka (topic, key, JSON value); false if it could not be queued.
  using PublishFn = std::function<bool(const std::string&, const std::string&, const std::string&)>;
  // Why the process is not ready (the /readyz reasons), shown on the dashboard.
  using ReadinessFn = std::function<std::vector<std::string>()>;

  // `sources` must outlive the OpsCenter (its functions are called from the ops thread).
  OpsCenter(OpsOptions options, metrics::Registry& registry, const Clock& clock, PublishFn publish,
            ReadinessFn readiness, OpsSources sources = {});
  ~OpsCenter() override;

  // Starts the ops thread and the webhook (throws std::runtime_error on a bad webhook URL).
  void start();
  void stop();

  void onBatch(const BatchSeen& b) override;
  void onDelivered(const BatchDelivered& d) override;
  void onAnomaly(const AnomalyEvent& e) override;
  // A message on {prefix}/{device}/status (MQTT callback thread).
  void onStatus(const std::string& device, std::string_view payload, bool retained);

  // Adds the dashboard and API routes; call before http.start(). The server needs
  // max_stream_clients + 4 handler threads.
  void addRoutes(HttpServer& http);

  DeviceRegistry& devices() { return devices_; }
  // The latest dashboard snapshot (JSON), recomputed once a second by the ops thread.
  std::string snapshot() const;
  // Recomputes the snapshot now (the ops thread does this every second; tests call it).
  void tick();
  // Blocks (at most ~1.1 s) until a snapshot newer than `seen` exists, then returns it and sets
  // `seen` to its generation: the event stream pushes each snapshot as soon as it is computed.
  std::string waitSnapshot(uint64_t& seen) const;

  // HTTP API bodies (exposed for tests).
  HttpServer::Response devicesPage(const HttpServer::Request& req) const;
  HttpServer::Response deviceById(const std::string& id) const;
  // The latest anomalies, newest first; only `device`'s when not empty.
  std::string anomaliesJson(const std::string& device = "") const;

 private:
  void onDeviceChange(const DeviceInfo& d);
  void run();
  void publishPending();

  const OpsOptions opt_;
  metrics::Registry& registry_;
  const Clock& clock_;
  PublishFn publish_;
  ReadinessFn readiness_;
  DeviceRegistry devices_;
  std::unique_ptr<Webhook> webhook_;

  metrics::Histogram& e2e_latency_;
  metrics::CounterVec status_events_;
  metrics::Counter& status_events_dropped_;

  Mutex events_mu_;
  std::deque<std::pair<std::string, std::string>> events_ GUARDED_BY(events_mu_);  // key, json

  mutable Mutex anomalies_mu_;
  std::deque<AnomalyEvent> latest_anomalies_ GUARDED_BY(anomalies_mu_);  // newest first

  struct Sampler;
  std::unique_ptr<Sampler> sampler_;  // tick() only: the ops thread (and the constructor, tests)
  mutable Mutex snapshot_mu_;
  mutable CondVar snapshot_cv_;
  std::string snapshot_ GUARDED_BY(snapshot_mu_);
  uint64_t generation_ GUARDED_BY(snapshot_mu_) = 0;  // snapshots computed so far
  std::deque<std::string> history_ GUARDED_BY(snapshot_mu_);  // chart points, newest last

  Mutex run_mu_;
  CondVar run_cv_;
  bool stopping_ GUARDED_BY(run_mu_) = false;
  std::thread thread_;
  int64_t started_us_ = 0;
};

}  // namespace outpost::aggregator

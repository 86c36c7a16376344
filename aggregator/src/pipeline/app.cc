#include "outpost/aggregator/app.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>

#include "outpost/aggregator/ops.h"
#include "outpost/common/cli.h"
#include "outpost/common/http_server.h"
#include "outpost/common/mqtt_security.h"
#include "outpost/common/signals.h"

namespace outpost::aggregator {

AggregatorApp::AggregatorApp(config::Config settings) : cfg_(std::move(settings)) {
  const config::Config& cfg = cfg_;
  // Typed settings; invalid combinations (no ingest at all, a maximum below its minimum) throw.
  settings_ = readAggregatorSettings(cfg);
  options_ = settings_.pipeline;
  // Roles all and ingest take batches from agents; process takes them from kafka.batches_topic.
  const Role role = settings_.cluster.role;
  const bool from_agents = role == Role::kAll || role == Role::kIngest;
  if (role == Role::kIngest) options_.forward_topic = settings_.cluster.batches_topic;
  with_mqtt_ = from_agents && settings_.ingest.mqtt_enabled;
  with_zmq_ = from_agents && !settings_.ingest.zmq.listen.empty();
  mqtt_options_ = settings_.ingest.mqtt;
  if (with_mqtt_) {
    auto sec = mqttsec::load(cfg, "mqtt.", mqtt_options_.broker);
    if (!sec) throw config::ConfigError(sec.error().message());
    mqtt_options_.security = std::move(*sec);
  }
  zmq_options_ = settings_.ingest.zmq;
}

AggregatorApp::~AggregatorApp() { stop(); }

std::vector<std::string> AggregatorApp::notReadyReasons() {
  auto why = aggregator_->notReadyReasons();
  if (!mqtt_up_()) why.push_back("mqtt: not connected to the broker");
  return why;
}

// /healthz: started and connected to the broker (if any); /readyz adds Kafka and backlog.
bool AggregatorApp::healthy(std::string& d) {
  bool ok = aggregator_->healthy(d);
  if (mqtt_ingest_) {
    ok = ok && mqtt_ingest_->connected();
    d += mqtt_ingest_->connected() ? ", mqtt connected" : ", mqtt disconnected";
  }
  if (zmq_ingest_) d += ", zmq listening";
  return ok;
}

bool AggregatorApp::startProcess() {
  process_ = std::make_unique<ProcessRole>(options_, settings_.cluster, registry_,
                                           SystemClock::instance());
  process_->start();  // throws when it cannot
  ProcessRole& process = *process_;
  http_ = std::make_unique<HttpServer>(
      registry_, [&process](std::string& d) { return process.healthy(d); },
      [&process] { return process.notReadyReasons(); }, 4);
  process.addRoutes(*http_);
  if (process.latest()) process.latest()->addRoutes(*http_, SystemClock::instance());
  if (auto st = cli::serveOps(*http_, cfg_); !st) {
    spdlog::error("http: {}", st.error().toString());
    process.stop();
    return false;
  }
  return true;
}

bool AggregatorApp::start() {
  const config::Config& cfg = cfg_;
  metrics::setCollectionEnabled(settings_.metrics_collect);
  if (settings_.cluster.role == Role::kProcess) return startProcess();
  aggregator_ = std::make_unique<Aggregator>(
      options_, registry_, SystemClock::instance(),
      makeKafkaSink(options_.kafka, options_.recovery_max_messages, options_.recovery_timeout_ms));
  Aggregator& aggregator = *aggregator_;
  if (metrics::collectionEnabled()) {
    ops_ = std::make_unique<OpsCenter>(
        settings_.ops, registry_, SystemClock::instance(),
        [&aggregator](const std::string& t, const std::string& k, const std::string& v) {
          return aggregator.publishEvent(t, k, v);
        },
        [this] { return notReadyReasons(); },
        // mqtt_up_ is set below, before ops_->start() starts the ops thread.
        OpsSources{&aggregator, with_mqtt_ ? std::function<bool()>([this] { return mqtt_up_(); })
                                           : std::function<bool()>()});
    aggregator.setObserver(ops_.get());
    // Alarms that open go to the dashboard and the webhook (ended ones only close them on Kafka).
    OpsCenter* ops = ops_.get();
    aggregator.anomalies().addObserver([ops](const AnomalyRecord& r, std::string_view json) {
      if (r.ended) return;
      AnomalyEvent e;
      e.device = r.device;
      e.sensor = r.sensor;
      e.kind = detect::kindName(r.kind);
      e.value = r.value;
      e.score = r.score;
      e.ts_us = r.timestamp_us;
      e.recent = r.recent;
      e.json.assign(json);
      ops->onAnomaly(e);
    });
  }
  aggregator.start();
  if (with_zmq_) {
    zmq_ingest_ =
        std::make_unique<ZmqIngest>(zmq_options_, aggregator, registry_, SystemClock::instance());
    if (auto st = zmq_ingest_->start(); !st) {
      spdlog::error("ZeroMQ ingest: {}", st.error().message());
      aggregator.stop();
      return false;
    }
  }
  if (with_mqtt_) {
    mqtt_ingest_ =
        std::make_unique<MqttIngest>(mqtt_options_, aggregator, registry_, SystemClock::instance());
    MqttIngest* ingest = mqtt_ingest_.get();
    mqtt_up_ = [ingest] { return ingest->connected(); };
  } else {
    mqtt_up_ = [] { return true; };  // no broker configured: nothing to be connected to
  }
  if (ops_) {
    if (mqtt_ingest_) {
      OpsCenter* ops = ops_.get();
      mqtt_ingest_->setStatusHandler([ops](const std::string& d, std::string_view p,
                                           bool retained) { ops->onStatus(d, p, retained); });
    }
    ops_->start();
  }

  http_ = std::make_unique<HttpServer>(
      registry_, [this](std::string& d) { return healthy(d); },
      [this] { return notReadyReasons(); },
      ops_ ? settings_.ops.max_stream_clients + 4 : 2);
  if (ops_) ops_->addRoutes(*http_);
  if (aggregator.latest()) aggregator.latest()->addRoutes(*http_, SystemClock::instance());
  if (auto st = cli::serveOps(*http_, cfg); !st) {
    spdlog::error("http: {}", st.error().toString());
    aggregator.stop();
    return false;
  }
  return true;
}

void AggregatorApp::run() {
  if (process_) {
    spdlog::info("aggregator running (role process, instance {}): {} -> kafka {} ({})",
                 settings_.cluster.instance_id, settings_.cluster.batches_topic,
                 options_.kafka.bootstrap_servers, options_.readings_topic);
    while (!signals::waitForStop(std::chrono::seconds(1))) {
      if (signals::takeReloadRequest()) {
        spdlog::warn("configuration reload (SIGHUP) is not implemented; restart to apply a "
                     "new configuration");
      }
    }
    return;
  }
  if (mqtt_ingest_ && !mqtt_ingest_->start([] { return signals::stopRequested(); })) return;
  spdlog::info("aggregator running (role {}, instance {}): {}{}{} -> kafka {} ({})",
               roleNames().name(settings_.cluster.role), settings_.cluster.instance_id,
               with_mqtt_ ? mqtt_options_.broker : "", with_mqtt_ && with_zmq_ ? " + " : "",
               with_zmq_ ? zmq_options_.listen : "", options_.kafka.bootstrap_servers,
               options_.forward_topic.empty() ? options_.readings_topic : options_.forward_topic);
  while (!signals::waitForStop(std::chrono::seconds(1))) {
    if (signals::takeReloadRequest()) {
      if (zmq_ingest_) {
        (void)zmq_ingest_->reloadAllowList();  // logs and counts its outcome
      } else {
        spdlog::warn("configuration reload (SIGHUP) is not implemented; restart to apply a "
                     "new configuration");
      }
    }
  }
}

void AggregatorApp::stop() {
  if (process_ && !stopped_) {
    stopped_ = true;
    if (http_) http_->stop();  // its handlers read the process role
    process_->stop();          // commits what is open
    return;
  }
  if (stopped_ || !aggregator_) return;
  stopped_ = true;
  // Drain first (acks still go out), then disconnect.
  if (ops_) ops_->stop();  // last status events go out before the producer stops
  aggregator_->stop();
  if (zmq_ingest_) zmq_ingest_->stop();
  if (mqtt_ingest_) mqtt_ingest_->stop();
  if (http_) http_->stop();
}

}  // namespace outpost::aggregator

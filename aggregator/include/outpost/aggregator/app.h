#pragma once

// The outpost-aggregator service as one object: the Aggregator (aggregator.h), its ingests (MQTT
// and/or ZeroMQ), the ops layer (ops.h) and the HTTP endpoint, wired from the configuration.
//
// Thread-safety: every method from the one thread that owns the object (main). The parts run
// their own threads between start() and stop().

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "outpost/aggregator/aggregator.h"
#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/mqtt_ingest.h"
#include "outpost/aggregator/process_role.h"
#include "outpost/aggregator/zmq_ingest.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"

namespace outpost {
class HttpServer;
}

namespace outpost::aggregator {

class OpsCenter;

class AggregatorApp {
 public:
  // Reads and checks the settings; starts nothing. Throws config::ConfigError naming the key
  // (e.g. neither MQTT nor ZeroMQ enabled, bad MQTT TLS files, a bad cluster.instance_id).
  explicit AggregatorApp(config::Config settings);
  ~AggregatorApp();
  AggregatorApp(const AggregatorApp&) = delete;
  AggregatorApp& operator=(const AggregatorApp&) = delete;

  // Builds and starts the aggregator (dedup store, Kafka recovery, producer, workers; in
  // cluster.role = ingest only the producer and the workers), the ZeroMQ ingest, the ops layer
  // and the HTTP endpoint. Throws std::runtime_error when the
  // aggregator cannot start; returns false (logged) when the ZeroMQ ingest or HTTP cannot, with
  // the aggregator stopped again.
  bool start();
  // Connects the MQTT ingest (retrying until connected or a stop is requested), then serves
  // until signals::stopRequested(); a SIGHUP reloads the ZeroMQ allow-list.
  void run();
  // Drains first (acks still go out), then disconnects the ingests and stops HTTP. Idempotent.
  void stop();

 private:
  // cluster.role = process: the consumer group member and its HTTP endpoint, nothing else.
  bool startProcess();
  std::vector<std::string> notReadyReasons();
  bool healthy(std::string& detail);

  config::Config cfg_;
  AggregatorSettings settings_;  // typed view of cfg_ (aggregator_config.h)
  AggregatorOptions options_;
  bool with_mqtt_ = false;
  bool with_zmq_ = false;
  MqttIngestOptions mqtt_options_;
  ZmqIngestOptions zmq_options_;

  // Declared in construction order; destroyed in reverse.
  metrics::Registry registry_;
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<ProcessRole> process_;  // role process (instead of aggregator_)
  std::function<bool()> mqtt_up_ = [] { return false; };
  std::unique_ptr<OpsCenter> ops_;  // off with metrics.collect = false
  std::unique_ptr<ZmqIngest> zmq_ingest_;
  std::unique_ptr<MqttIngest> mqtt_ingest_;
  std::unique_ptr<HttpServer> http_;
  bool stopped_ = false;
};

}  // namespace outpost::aggregator

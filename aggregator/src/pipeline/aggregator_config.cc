#include "outpost/aggregator/aggregator_config.h"

#include <unistd.h>

#include <algorithm>

#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/aggregator/latest_store.h"
#include "outpost/common/cli.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::aggregator {

const config::EnumNames<Role>& roleNames() {
  static const config::EnumNames<Role> names{
      {Role::kAll, "all"}, {Role::kIngest, "ingest"}, {Role::kProcess, "process"}};
  return names;
}

bool isValidInstanceId(std::string_view id) {
  if (id.empty() || id.size() > 249) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

bool isValidSharedGroup(std::string_view group) {
  return !group.empty() && group.find_first_of("/+#") == std::string_view::npos;
}

const config::EnumNames<ReadingsFormat>& readingsFormatNames() {
  static const config::EnumNames<ReadingsFormat> names{{ReadingsFormat::kBatch, "batch"},
                                                       {ReadingsFormat::kReading, "reading"}};
  return names;
}

namespace {

const config::SettingsTable<MqttIngestOptions>& mqttIngestTable() {
  using M = MqttIngestOptions;
  static const auto t =
      config::SettingsTable<M>("mqtt.")
          .string("broker", &M::broker, "tcp://127.0.0.1:1883",
                  "MQTT broker URI (tcp://host:port, or ssl://host:port for TLS)")
          .string("client_id", &M::client_id, "outpost-aggregator",
                  "MQTT client id; must be unique per aggregator instance (cluster.role = "
                  "ingest, when not set: outpost-ingest-<cluster.instance_id>)")
          .string("topic_prefix", &M::topic_prefix, "outpost/v1", "Prefix of the batch/ack topics")
          .string("shared_group", &M::shared_group, "",
                  "Non-empty: batches are received through the MQTT shared subscription "
                  "$share/<group>/<topic_prefix>/+/batch, so the broker hands each message to one "
                  "instance of the group (no '/', '+' or '#'). Empty: a plain subscription, except "
                  "in cluster.role = ingest, where empty means \"outpost-ingest\". The status "
                  "topic is always a plain subscription")
          .boolean("clean_session", &M::clean_session, false,
                   "false: the broker keeps the subscription and queues batches while the "
                   "aggregator restarts (within its queue limits)")
          .string("username", [](M& m, const std::string& v) { m.security.username = v; }, "",
                  "MQTT user name (empty: anonymous)")
          .string("password", [](M& m, const std::string& v) { m.security.password = v; }, "",
                  "MQTT password; never logged (prefer mqtt.password_file)")
          .integer("keepalive_s", &M::keepalive_s, 30, 2, 3600, "MQTT keep-alive interval")
          .integer("reconnect_min_ms", &M::reconnect_min_ms, 1000, 100, 600000,
                   "First reconnect delay after the broker connection is lost; doubles up to "
                   "mqtt.reconnect_max_ms while the broker is down")
          .integer("reconnect_max_ms", &M::reconnect_max_ms, 30000, 100, 3600000,
                   "Longest reconnect delay (>= mqtt.reconnect_min_ms; how long after a broker's "
                   "return the aggregator may take to notice it)")
          .declaredBy(mqttsec::addSettings);  // TLS, password_file; all read by mqttsec::load
  return t;
}

const config::SettingsTable<ZmqIngestOptions>& zmqIngestTable() {
  using Z = ZmqIngestOptions;
  static const auto t =
      config::SettingsTable<Z>("zmq.")
          .string("listen", &Z::listen, "",
                  "ZeroMQ ROUTER endpoint for agents, e.g. tcp://0.0.0.0:7450 (empty: no ZeroMQ "
                  "ingest). Always CURVE with the allow-list")
          .string("secret_key_file", &Z::secret_key_file, "/etc/outpost/aggregator.key",
                  "The aggregator's CURVE key pair (outpost-agent keygen; mode 0600)")
          .string("allow_list_file", &Z::allow_list_file, "/etc/outpost/allow-list.toml",
                  "Agent CURVE public keys and their device ids ([devices] \"<key>\" = "
                  "\"<device>\"); its contents are re-read on SIGHUP (the path is not)")
          .integer("heartbeat_ms", &Z::heartbeat_ms, 1000, 50, 600000,
                   "Socket poll interval; a device silent for 3 intervals is forgotten (an ack "
                   "for it is then dropped and the agent resends). Keep agents' "
                   "uplink.zmq.heartbeat_ms at or below it");
  return t;
}

const config::SettingsTable<IngestSettings>& ingestTable() {
  using I = IngestSettings;
  static const auto t =
      config::SettingsTable<I>()
          .boolean("mqtt.enabled", &I::mqtt_enabled, true,
                   "Receive batches over MQTT (false: ZeroMQ only, no broker needed; then "
                   "zmq.listen must be set)")
          .nested(&I::mqtt, mqttIngestTable())
          .nested(&I::zmq, zmqIngestTable());
  return t;
}

const config::SettingsTable<KafkaOptions>& kafkaTable() {
  using K = KafkaOptions;
  static const auto t =
      config::SettingsTable<K>("kafka.")
          .string("bootstrap_servers", &K::bootstrap_servers, "127.0.0.1:9092",
                  "Kafka bootstrap servers (host:port,...)")
          .string("client_id", &K::client_id, "outpost-aggregator", "Kafka client.id")
          .integer("linger_ms", &K::linger_ms, 5, 0, 60000,
                   "librdkafka linger.ms (batching delay)")
          .oneOf("compression", &K::compression, {"none", "gzip", "snappy", "lz4", "zstd"}, "lz4",
                 "librdkafka compression.type")
          .integer("message_timeout_ms", &K::message_timeout_ms, 0, 0, 3600000,
                   "0: a message is retried until Kafka has it (intake pauses when the queue is "
                   "full). N: it fails after N ms and its batch is not acked; one that timed out "
                   "after the broker wrote it is produced again when resent (a duplicate on Kafka)")
          .integer("queue_max_messages", &K::queue_max_messages, 100000, 100, 10000000,
                   "librdkafka queue.buffering.max.messages; when full, intake pauses")
          .integer("queue_max_kbytes", &K::queue_max_kbytes, 1048576, 1024, 2097151,
                   "librdkafka queue.buffering.max.kbytes; when full, intake pauses");
  return t;
}

// Verify, ingest workers, dedup and the Kafka producer ([detect] and [latest] are their stages'
// tables: anomaly_stage.cc, latest_store.cc).
const config::SettingsTable<AggregatorOptions>& pipelineTable() {
  using A = AggregatorOptions;
  static const auto t =
      config::SettingsTable<A>()
          .integer("verify.max_batch_bytes",
                   [](A& a, int64_t v) { a.limits.max_bytes = static_cast<size_t>(v); }, 4 << 20,
                   1024, 256 << 20, "Larger batch messages are rejected before any parsing")
          .integer("verify.max_readings",
                   [](A& a, int64_t v) { a.limits.max_readings = static_cast<size_t>(v); },
                   100000, 1, 10000000, "Batches with more readings are rejected")
          .integer("verify.max_future_skew_s",
                   [](A& a, int64_t v) { a.limits.max_future_skew_us = v * 1000000; }, 86400, 0,
                   31536000, "Readings stamped further than this in the future are rejected")
          .integer("ingest.workers", &A::workers, 2, 1, 256,
                   "Worker threads that verify, dedup and produce; each device is pinned to one")
          .integer("ingest.queue_capacity", &A::queue_capacity, 256, 1, 1000000,
                   "Batches waiting per worker; when full, intake from the broker waits")
          .string("dedup.path", &A::dedup_path, "/var/lib/outpost/dedup.db",
                  "SQLite file remembering delivered (device, epoch, seq) across restarts")
          .integer("dedup.flush_interval_ms", &A::flush_interval_ms, 100, 1, 60000,
                   "How often the dedup store is written")
          .integer("dedup.recovery_max_messages", &A::recovery_max_messages, 1000000, 0,
                   1000000000,
                   "At start-up, read at most this many messages per partition from the tail of "
                   "the readings and dead-letter topics to recover batches delivered after the "
                   "last flush")
          .integer("dedup.recovery_timeout_ms", &A::recovery_timeout_ms, 60000, 1000, 3600000,
                   "Give up start-up if that recovery read takes longer")
          .nested(&A::kafka, kafkaTable())
          .string("kafka.readings_topic", &A::readings_topic, "outpost.readings",
                  "Topic for readings (JSON, key = device)")
          .string("kafka.deadletter_topic", &A::deadletter_topic, "outpost.deadletter",
                  "Topic for rejected batches (raw payload, reason in headers)")
          .integer("kafka.readings_per_message", &A::items_per_message, 1000, 1, 100000,
                   "A batch is split into Kafka messages of at most this many readings + windows "
                   "(batch format)")
          .oneOf("kafka.readings_format", &A::readings_format, readingsFormatNames(),
                 ReadingsFormat::kBatch,
                 "batch: one JSON object per batch part (readings in an array); reading: one "
                 "flat JSON object per reading (device, sensor, unit, ts, value, quality, epoch, "
                 "seq, dropped), keyed by device, for generic sinks. Dedup, recovery and acks "
                 "work the same for both (docs/kafka.md)");
  return t;
}

const config::SettingsTable<ClusterOptions>& clusterTable() {
  using C = ClusterOptions;
  static const auto t =
      config::SettingsTable<C>()
          .oneOf("cluster.role", &C::role, roleNames(), Role::kAll,
                 "all: one process does everything (ingest, verify, dedup, detect, produce, ack). "
                 "ingest: stateless, any number; verified batches go unchanged to "
                 "kafka.batches_topic and the agent is acked after that delivery (no dedup "
                 "store, no detection). process: a consumer group on kafka.batches_topic that "
                 "dedups, detects and produces in Kafka transactions (docs/kafka.md, Roles)")
          .string("cluster.instance_id", &C::instance_id, "",
                  "This instance's name in the cluster (the process role's group.instance.id and "
                  "part of its transactional.id): letters, digits, '.', '_', '-', at most 249; "
                  "unique per instance and stable across restarts. Empty: the host name")
          .string("cluster.group", &C::group, "outpost-process",
                  "The process role's Kafka consumer group id")
          .integer("cluster.commit_interval_ms", &C::commit_interval_ms, 100, 10, 60000,
                   "The process role's transaction interval: outputs and consumer offsets are "
                   "committed together this often")
          .integer("cluster.session_timeout_ms", &C::session_timeout_ms, 10000, 1000, 300000,
                   "The process role's consumer group session timeout: a member that stops "
                   "without leaving (crash, or a clean stop: static members do not leave) keeps "
                   "its partitions this long, so a restart within it moves nothing. The broker "
                   "bounds it (group.min/max.session.timeout.ms, 6 s to 30 min by default)")
          .integer("cluster.transaction_timeout_ms", &C::transaction_timeout_ms, 10000, 1000,
                   900000,
                   "The process role's Kafka transaction timeout: a crashed member's open "
                   "transaction is aborted after this, and until then its partitions' next owner "
                   "waits (failover time is about the larger of this and the session timeout)")
          .integer("cluster.restore_timeout_ms", &C::restore_timeout_ms, 60000, 1000, 3600000,
                   "The process role's limit for reading newly assigned partitions' device "
                   "state from kafka.state_topic; beyond it the process stops (exit status 1) "
                   "rather than process without state")
          .integer("cluster.reorder_wait_ms", &C::reorder_wait_ms, 1000, 0, 60000,
                   "The process role's wait for a device's missing seq: ingest instances share "
                   "a device's batches, so seq 8 can reach the batches topic before seq 7; seq 8 "
                   "then waits up to this long so that readings, detection and events keep the "
                   "device's order. 0: no waiting (order as the batches topic has it)")
          .integer("cluster.reorder_max_batches", &C::reorder_max_batches, 64, 1, 10000,
                   "The process role's limit of batches one device may hold waiting for a "
                   "missing seq (beyond it they go on, in seq order)")
          .string("kafka.batches_topic", &C::batches_topic, "outpost.batches",
                  "Verified batches from ingest to process instances (FlatBuffers bytes as "
                  "received, key = device id, outpost-* headers)")
          .string("kafka.state_topic", &C::state_topic, "outpost.state",
                  "The process role's per-device state changelog (compacted, key = device id)");
  return t;
}

const config::SettingsTable<DeviceRegistryOptions>& devicesTable() {
  using D = DeviceRegistryOptions;
  static const auto t =
      config::SettingsTable<D>("devices.")
          .integer("offline_after_s", &D::offline_after_us, 90, 1, 86400,
                   "An online device silent (no batch, no status) this long is marked offline",
                   1000000)
          .integer("max", &D::max_devices, 1000000, 1, 100000000,
                   "Devices the registry records; more are counted, not recorded");
  return t;
}

const config::SettingsTable<WebhookOptions>& alertsTable() {
  using W = WebhookOptions;
  static const auto t =
      config::SettingsTable<W>("alerts.")
          .string("webhook_url", &W::url, "",
                  "POST anomaly and device-offline events here as JSON (http:// only); empty: off")
          .real("rate_per_minute", &W::rate_per_minute, 30, 0.1, 100000,
                "Alerts sent per minute on average (token bucket); the excess is summarised")
          .integer("burst", &W::burst, 10, 1, 100000,
                   "Alerts that may be sent at once (bucket size)")
          .integer("max_attempts", &W::max_attempts, 5, 1, 100,
                   "Tries per alert (5xx, 429, network errors)")
          .integer("backoff_min_ms", &W::backoff_min_ms, 500, 1, 600000,
                   "First retry delay; doubles per retry")
          .integer("backoff_max_ms", &W::backoff_max_ms, 30000, 1, 3600000,
                   "Longest retry delay (>= alerts.backoff_min_ms)")
          .integer("timeout_ms", &W::timeout_ms, 5000, 100, 600000,
                   "Connect/read timeout of one attempt")
          .integer("queue_capacity", &W::queue_capacity, 1000, 1, 1000000,
                   "Alerts waiting to be sent; when full, new ones are dropped (counted)");
  return t;
}

const config::SettingsTable<OpsOptions>& opsTable() {
  using O = OpsOptions;
  static const auto t =
      config::SettingsTable<O>()
          .string("kafka.device_status_topic", &O::status_topic, "outpost.device-status",
                  "Topic for device status events (JSON, key = device id)")
          .nested(&O::devices, devicesTable())
          .integer("dashboard.max_stream_clients", &O::max_stream_clients, 8, 1, 256,
                   "Live dashboard connections at once (each holds an HTTP thread); more get 503")
          .nested(&O::webhook, alertsTable())
          .boolean("alerts.on_online", &O::alert_online, true,
                   "Also alert when a device that was offline comes back online");
  return t;
}

const config::SettingsTable<AggregatorSettings>& aggregatorTable() {
  using S = AggregatorSettings;
  static const auto t =
      config::SettingsTable<S>()
          .declaredBy([](config::Schema& s, const std::string&) {
            cli::addProcessSettings(s, "127.0.0.1:9100");  // log_level, http.listen
          })
          .nested(&S::ingest, ingestTable())
          .nested(&S::pipeline, pipelineTable())
          .nested(&S::ops, opsTable())
          .nested(&S::cluster, clusterTable())
          .boolean("metrics.collect", &S::metrics_collect, true,
                   "false: counters and histograms are not updated and the ops layer (device "
                   "registry, dashboard, alerts, end-to-end latency) is off; only for measuring "
                   "what metrics cost")
          .declaredBy([](config::Schema& s, const std::string&) {
            addDetectSettings(s);  // [detect], [[detect.classes]]: anomaly_stage.cc
            addLatestSettings(s);  // [latest]: latest_store.cc
          });
  return t;
}

// Rejects `max` below `min` (no silent repair); both are full key names.
void checkAtLeast(const char* max_key, int64_t max, const char* min_key, int64_t min) {
  if (max < min) {
    throw config::ConfigError(std::string(max_key) + " = " + std::to_string(max) + " is below " +
                              min_key + " = " + std::to_string(min) + "; allowed: " + max_key +
                              " >= " + min_key);
  }
}

std::string hostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

// [cluster] beyond the table: the instance id's default and check, the role's effect on the
// MQTT subscription and client id.
void readClusterSettings(const config::Config& cfg, AggregatorSettings& s) {
  ClusterOptions& c = s.cluster;
  if (c.instance_id.empty()) {
    c.instance_id = hostName();
    if (!isValidInstanceId(c.instance_id)) {
      throw config::ConfigError("cluster.instance_id is empty and the host name \"" +
                                c.instance_id +
                                "\" is not a valid instance id; set cluster.instance_id (allowed: "
                                "letters, digits, '.', '_', '-', 1 to 249 characters)");
    }
  } else if (!isValidInstanceId(c.instance_id)) {
    throw config::ConfigError("cluster.instance_id = \"" + c.instance_id +
                              "\" is not allowed; allowed: letters, digits, '.', '_', '-', 1 to "
                              "249 characters (a Kafka client id)");
  }
  if (c.commit_interval_ms >= c.transaction_timeout_ms) {
    throw config::ConfigError("cluster.commit_interval_ms (" +
                              std::to_string(c.commit_interval_ms) +
                              ") must be below cluster.transaction_timeout_ms (" +
                              std::to_string(c.transaction_timeout_ms) + ")");
  }
  MqttIngestOptions& mqtt = s.ingest.mqtt;
  if (c.role == Role::kIngest) {
    if (mqtt.shared_group.empty()) mqtt.shared_group = kDefaultIngestSharedGroup;
    // Instances of one shared group must not share a client id (the broker would disconnect
    // one for the other, back and forth).
    if (!cfg.isSet("mqtt.client_id")) mqtt.client_id = "outpost-ingest-" + c.instance_id;
  }
  if (s.ingest.mqtt_enabled && !mqtt.shared_group.empty() &&
      !isValidSharedGroup(mqtt.shared_group)) {
    throw config::ConfigError("mqtt.shared_group = \"" + mqtt.shared_group +
                              "\" is not allowed; allowed: a non-empty name without '/', '+' "
                              "or '#'");
  }
}

}  // namespace

const config::Schema& aggregatorSchema() {
  static const config::Schema schema = [] {
    config::Schema s("outpost-aggregator");
    aggregatorTable().declare(s);
    return s;
  }();
  return schema;
}

AggregatorOptions aggregatorOptionsFrom(const config::Config& cfg) {
  AggregatorOptions o = pipelineTable().read(cfg);
  o.anomalies = anomalyOptionsFrom(cfg);
  o.latest = latestOptionsFrom(cfg);
  return o;
}

OpsOptions opsOptionsFrom(const config::Config& cfg) { return opsTable().read(cfg); }

AggregatorSettings readAggregatorSettings(const config::Config& cfg) {
  AggregatorSettings s = aggregatorTable().read(cfg);
  s.pipeline.anomalies = anomalyOptionsFrom(cfg);
  s.pipeline.latest = latestOptionsFrom(cfg);
  readClusterSettings(cfg, s);
  if (s.cluster.role != Role::kProcess && !s.ingest.mqtt_enabled && s.ingest.zmq.listen.empty()) {
    throw config::ConfigError(
        "mqtt.enabled = false and zmq.listen is empty: no way for agents to reach the "
        "aggregator; enable at least one");
  }
  if (s.ingest.mqtt_enabled) {
    checkAtLeast("mqtt.reconnect_max_ms", s.ingest.mqtt.reconnect_max_ms, "mqtt.reconnect_min_ms",
                 s.ingest.mqtt.reconnect_min_ms);
  }
  checkAtLeast("alerts.backoff_max_ms", s.ops.webhook.backoff_max_ms, "alerts.backoff_min_ms",
               s.ops.webhook.backoff_min_ms);
  return s;
}

}  // namespace outpost::aggregator

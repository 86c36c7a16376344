#include "outpost/aggregator/aggregator_config.h"

#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/aggregator/latest_store.h"
#include "outpost/common/cli.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::aggregator {
namespace {

config::Schema buildSchema() {
  config::Schema s("outpost-aggregator");
  cli::addProcessSettings(s, "127.0.0.1:9100");
  s.boolean("mqtt.enabled", true,
            "Receive batches over MQTT (false: ZeroMQ only, no broker needed; then zmq.listen "
            "must be set)")
      .string("mqtt.broker", "tcp://127.0.0.1:1883",
              "MQTT broker URI (tcp://host:port, or ssl://host:port for TLS)")
      .string("mqtt.client_id", "outpost-aggregator",
              "MQTT client id; must be unique per aggregator instance")
      .string("mqtt.topic_prefix", "outpost/v1", "Prefix of the batch/ack topics")
      .boolean("mqtt.clean_session", false,
               "false: the broker keeps the subscription and queues batches while the aggregator "
               "restarts (within its queue limits)")
      .integer("mqtt.keepalive_s", 30, 2, 3600, "MQTT keep-alive interval")
      .integer("mqtt.reconnect_min_ms", 1000, 100, 600000,
               "First reconnect delay after the broker connection is lost; doubles up to "
               "mqtt.reconnect_max_ms while the broker is down")
      .integer("mqtt.reconnect_max_ms", 30000, 100, 3600000,
               "Longest reconnect delay (how long after a broker's return the aggregator may "
               "take to notice it)");
  mqttsec::addSettings(s, "mqtt.");
  s.string("zmq.listen", "",
           "ZeroMQ ROUTER endpoint for agents, e.g. tcp://0.0.0.0:7450 (empty: no ZeroMQ ingest). "
           "Always CURVE with the allow-list")
      .string("zmq.secret_key_file", "/etc/outpost/aggregator.key",
              "The aggregator's CURVE key pair (outpost-agent keygen; mode 0600)")
      .string("zmq.allow_list_file", "/etc/outpost/allow-list.toml",
              "Agent CURVE public keys and their device ids ([devices] \"<key>\" = \"<device>\"); "
              "re-read on SIGHUP")
      .integer("zmq.heartbeat_ms", 1000, 50, 600000,
               "Socket poll interval; a device silent for 3 intervals is forgotten (an ack for it "
               "is then dropped and the agent resends). Keep agents' uplink.zmq.heartbeat_ms at "
               "or below it")
      .integer("verify.max_batch_bytes", 4 << 20, 1024, 256 << 20,
               "Larger batch messages are rejected before any parsing")
      .integer("verify.max_readings", 100000, 1, 10000000,
               "Batches with more readings are rejected")
      .integer("verify.max_future_skew_s", 86400, 0, 31536000,
               "Readings stamped further than this in the future are rejected")
      .integer("ingest.workers", 2, 1, 256,
               "Worker threads that verify, dedup and produce; each device is pinned to one")
      .integer("ingest.queue_capacity", 256, 1, 1000000,
               "Batches waiting per worker; when full, intake from the broker waits")
      .string("dedup.path", "/var/lib/outpost/dedup.db",
              "SQLite file remembering delivered (device, epoch, seq) across restarts")
      .integer("dedup.flush_interval_ms", 100, 1, 60000, "How often the dedup store is written")
      .integer("dedup.recovery_max_messages", 1000000, 0, 1000000000,
               "At start-up, read at most this many messages per partition from the tail of the "
               "readings and dead-letter topics to recover batches delivered after the last flush")
      .integer("dedup.recovery_timeout_ms", 60000, 1000, 3600000,
               "Give up start-up if that recovery read takes longer")
      .string("kafka.bootstrap_servers", "127.0.0.1:9092", "Kafka bootstrap servers (host:port,...)")
      .string("kafka.client_id", "outpost-aggregator", "Kafka client.id")
      .string("kafka.readings_topic", "outpost.readings", "Topic for readings (JSON, key = device)")
      .string("kafka.deadletter_topic", "outpost.deadletter",
              "Topic for rejected batches (raw payload, reason in headers)")
      .integer("kafka.readings_per_message", 1000, 1, 100000,
               "A batch is split into Kafka messages of at most this many readings + windows "
               "(batch format)")
      .oneOf("kafka.readings_format", "batch", {"batch", "reading"},
             "batch: one JSON object per batch part (readings in an array); reading: one flat "
             "JSON object per reading (device, sensor, unit, ts, value, quality, epoch, seq, "
             "dropped), keyed by device, for generic sinks. Dedup, recovery and acks work the "
             "same for both (docs/kafka.md)")
      .integer("kafka.linger_ms", 5, 0, 60000, "librdkafka linger.ms (batching delay)")
      .oneOf("kafka.compression", "lz4", {"none", "gzip", "snappy", "lz4", "zstd"},
             "librdkafka compression.type")
      .integer("kafka.message_timeout_ms", 30000, 1000, 3600000,
               "A message not delivered within this time fails; its batch is not acked")
      .integer("kafka.queue_max_messages", 100000, 100, 10000000,
               "librdkafka queue.buffering.max.messages; when full, intake pauses")
      .integer("kafka.queue_max_kbytes", 1048576, 1024, 2097151,
               "librdkafka queue.buffering.max.kbytes; when full, intake pauses")
      .string("kafka.device_status_topic", "outpost.device-status",
              "Topic for device status events (JSON, key = device id)")
      .boolean("metrics.collect", true,
               "false: counters and histograms are not updated and the ops layer (device "
               "registry, dashboard, alerts, end-to-end latency) is off; only for measuring what "
               "metrics cost")
      .integer("devices.offline_after_s", 90, 1, 86400,
               "An online device silent (no batch, no status) this long is marked offline")
      .integer("devices.max", 1000000, 1, 100000000,
               "Devices the registry records; more are counted, not recorded")
      .integer("dashboard.max_stream_clients", 8, 1, 256,
               "Live dashboard connections at once (each holds an HTTP thread); more get 503")
      .string("alerts.webhook_url", "",
              "POST anomaly and device-offline events here as JSON (http:// only); empty: off")
      .real("alerts.rate_per_minute", 30, 0.1, 100000,
            "Alerts sent per minute on average (token bucket); the excess is summarised")
      .integer("alerts.burst", 10, 1, 100000, "Alerts that may be sent at once (bucket size)")
      .integer("alerts.max_attempts", 5, 1, 100, "Tries per alert (5xx, 429, network errors)")
      .integer("alerts.backoff_min_ms", 500, 1, 600000, "First retry delay; doubles per retry")
      .integer("alerts.backoff_max_ms", 30000, 1, 3600000, "Longest retry delay")
      .integer("alerts.timeout_ms", 5000, 100, 600000, "Connect/read timeout of one attempt")
      .integer("alerts.queue_capacity", 1000, 1, 1000000,
               "Alerts waiting to be sent; when full, new ones are dropped (counted)")
      .boolean("alerts.on_online", true,
               "Also alert when a device that was offline comes back online");
  addDetectSettings(s);
  addLatestSettings(s);
  return s;
}

}  // namespace

const config::Schema& aggregatorSchema() {
  static const config::Schema schema = buildSchema();
  return schema;
}

}  // namespace outpost::aggregator

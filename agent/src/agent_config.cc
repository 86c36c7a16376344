#include "outpost/agent/agent_config.h"

#include "outpost/agent/inputs.h"
#include "outpost/common/cli.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::agent {

const config::EnumNames<UplinkTransport>& uplinkTransportNames() {
  static const config::EnumNames<UplinkTransport> names{{UplinkTransport::kMqtt, "mqtt"},
                                                        {UplinkTransport::kZmq, "zmq"}};
  return names;
}

namespace {

const config::SettingsTable<BatchSettings>& batchTable() {
  using B = BatchSettings;
  static const auto t =
      config::SettingsTable<B>("batch.")
          .integer("max_readings", &B::max_readings, 500, 1, 100000,
                   "Close a batch at this many readings")
          .integer("linger_ms", &B::linger_us, 1000, 1, 3600000,
                   "Close a non-empty batch this long after its first reading (bounds the "
                   "readings held only in memory)",
                   1000);
  return t;
}

const config::SettingsTable<OutboxOptions>& outboxTable() {
  using O = OutboxOptions;
  static const auto t =
      config::SettingsTable<O>("outbox.")
          .string("path", &O::path, "/var/lib/outpost/outbox.db", "SQLite outbox file")
          .integer("max_bytes", &O::max_bytes, 256ll << 20, 65536, 1ll << 40,
                   "Limit on stored batch payload bytes (the file is somewhat larger: SQLite "
                   "pages, index); what happens when it is reached is outbox.full_policy")
          .live()
          .oneOf("full_policy", &O::full_policy, fullPolicyNames(), FullPolicy::kDropOldest,
                 "When the outbox is full (byte limit, or the disk is full): drop_oldest evicts "
                 "the oldest stored batches, drop_newest refuses the new batch, block stops "
                 "reading the sources until there is room. Dropped readings are counted "
                 "(outpost_agent_readings_dropped_total) and reported in the next batch")
          .live()
          .integer("max_age_s", &O::max_age_s, 0, 0, 10ll * 365 * 86400,
                   "Drop stored batches older than this many seconds (counted as dropped, reason "
                   "max_age); 0: no age limit")
          .live()
          .integer("group_max_batches", &O::group_max_batches, 64, 1, 4096,
                   "At most this many closed batches are committed in one transaction (one "
                   "fsync under synchronous=full); batches closed in the same pipeline round are "
                   "grouped")
          .oneOf("synchronous", &O::synchronous, {"full", "normal"}, "full",
                 "full: a batch is accepted only once on disk (survives power loss); normal: "
                 "faster, survives a process crash but may lose the last batches on power loss");
  return t;
}

const config::SettingsTable<MqttUplinkOptions>& mqttUplinkTable() {
  using M = MqttUplinkOptions;
  static const auto t =
      config::SettingsTable<M>("uplink.mqtt.")
          .string("broker", &M::broker, "tcp://127.0.0.1:1883",
                  "MQTT broker URI (tcp://host:port, or ssl://host:port for TLS)")
          .string("client_id", &M::client_id, "",
                  "MQTT client id; empty: outpost-agent-<device_id>")
          .string("topic_prefix", &M::topic_prefix, "outpost/v1",
                  "Prefix of the batch/ack/status topics")
          .string("username", [](M& m, const std::string& v) { m.security.username = v; }, "",
                  "MQTT user name (empty: anonymous)")
          .string("password", [](M& m, const std::string& v) { m.security.password = v; }, "",
                  "MQTT password; never logged (prefer uplink.mqtt.password_file)")
          .integer("max_inflight", &M::max_inflight, 16, 1, 1024,
                   "Batches sent and not yet acknowledged, at most")
          .integer("ack_timeout_ms", &M::ack_timeout_ms, 10000, 100, 3600000,
                   "Send a batch again if the aggregator has not acknowledged it within this "
                   "time")
          .integer("keepalive_s", &M::keepalive_s, 30, 2, 3600, "MQTT keep-alive interval")
          .integer("reconnect_min_ms", &M::reconnect_min_ms, 500, 10, 600000,
                   "First reconnect delay; doubles up to reconnect_max_ms while the broker is "
                   "down")
          .integer("reconnect_max_ms", &M::reconnect_max_ms, 30000, 10, 3600000,
                   "Longest reconnect delay (>= reconnect_min_ms)")
          .declaredBy(mqttsec::addSettings);  // TLS, password_file; all read by mqttsec::load
  return t;
}

const config::SettingsTable<DrainSettings>& drainTable() {
  using D = DrainSettings;
  static const auto t =
      config::SettingsTable<D>("uplink.drain.")
          .oneOf("order", &D::order, drainOrderNames(), ReadOrder::kOldestFirst,
                 "After an outage, send the backlog (batches stored before the connection "
                 "opened) oldest first or newest first; live batches always go first")
          .live()
          .real("rate", &D::rate_readings_per_s, 0, 0, 1e9,
                "Backlog drain rate in readings per second (0: as fast as acknowledgements "
                "allow); live batches are not limited")
          .live();
  return t;
}

const config::SettingsTable<ZmqUplinkSettings>& zmqUplinkTable() {
  using Z = ZmqUplinkSettings;
  static const auto t =
      config::SettingsTable<Z>("uplink.zmq.")
          .string("endpoint", &Z::endpoint, "tcp://127.0.0.1:7450",
                  "The aggregator's ZeroMQ endpoint (its zmq.listen)")
          .string("server_public_key_file", &Z::server_public_key_file,
                  "/etc/outpost/aggregator.pub",
                  "The aggregator's CURVE public key (file from outpost-agent keygen)")
          .string("key_file", &Z::key_file, "/etc/outpost/agent.key",
                  "This device's CURVE key pair (outpost-agent keygen; mode 0600); its public "
                  "key must be on the aggregator's allow-list under this device_id")
          .integer("max_inflight", &Z::max_inflight, 16, 1, 1024,
                   "Batches sent and not yet acknowledged, at most")
          .integer("ack_timeout_ms", &Z::ack_timeout_ms, 10000, 100, 3600000,
                   "Send a batch again if the aggregator has not acknowledged it within this "
                   "time")
          .integer("heartbeat_ms", &Z::heartbeat_ms, 1000, 50, 600000,
                   "Ping interval; keep at or below the aggregator's zmq.heartbeat_ms")
          .integer("heartbeat_liveness", &Z::heartbeat_liveness, 3, 1, 100,
                   "Heartbeat intervals without any reply before the socket is remade")
          .integer("reconnect_min_ms", &Z::reconnect_min_ms, 500, 10, 600000,
                   "First reconnect delay; doubles up to reconnect_max_ms while the aggregator "
                   "is away")
          .integer("reconnect_max_ms", &Z::reconnect_max_ms, 30000, 10, 3600000,
                   "Longest reconnect delay (>= reconnect_min_ms)");
  return t;
}

const config::SettingsTable<AgentSettings>& agentTable() {
  using A = AgentSettings;
  static const auto t =
      config::SettingsTable<A>()
          .string("device_id", &A::device_id, "",
                  "Identity of this device: 1..64 of [A-Za-z0-9._-]. Required (here or "
                  "--device-id)")
          .declaredBy([](config::Schema& s, const std::string&) {
            cli::addProcessSettings(s, "127.0.0.1:9101");  // log_level (live), http.listen
          })
          .nested(&A::batch, batchTable())
          .nested(&A::outbox, outboxTable())
          .oneOf("uplink.transport", &A::transport, uplinkTransportNames(),
                 UplinkTransport::kMqtt,
                 "Transport to the aggregator: mqtt (through a broker) or zmq (direct to the "
                 "aggregator, CURVE; no broker)")
          .nested(&A::mqtt, mqttUplinkTable())
          .nested(&A::drain, drainTable())
          .nested(&A::zmq, zmqUplinkTable());
  return t;
}

// Rejects reconnect_max_ms < reconnect_min_ms under `prefix` (no silent repair).
void checkBackoff(const std::string& prefix, int64_t min_ms, int64_t max_ms) {
  if (max_ms < min_ms) {
    throw config::ConfigError(prefix + "reconnect_max_ms = " + std::to_string(max_ms) +
                              " is below " + prefix + "reconnect_min_ms = " +
                              std::to_string(min_ms) +
                              "; allowed: " + prefix + "reconnect_max_ms >= " + prefix +
                              "reconnect_min_ms");
  }
}

config::Schema buildSchema() {
  config::Schema s("outpost-agent");
  agentTable().declare(s);
  s.markReloadable("log_level");
  addInputSettings(s);  // [sources.*], [[sensors]] with filters and windows (inputs_config.cc)
  return s;
}

}  // namespace

const config::Schema& agentSchema() {
  static const config::Schema schema = buildSchema();
  return schema;
}

AgentSettings readAgentSettings(const config::Config& cfg) {
  AgentSettings a = agentTable().read(cfg);
  a.mqtt.device_id = a.device_id;
  a.mqtt.drain = a.drain;
  checkBackoff("uplink.mqtt.", a.mqtt.reconnect_min_ms, a.mqtt.reconnect_max_ms);
  checkBackoff("uplink.zmq.", a.zmq.reconnect_min_ms, a.zmq.reconnect_max_ms);
  return a;
}

}  // namespace outpost::agent

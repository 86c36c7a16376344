#include "outpost/agent/agent_config.h"

#include "outpost/agent/inputs.h"
#include "outpost/common/cli.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::agent {
namespace {

config::Schema buildSchema() {
  config::Schema s("outpost-agent");
  s.string("device_id", "",
           "Identity of this device: 1..64 of [A-Za-z0-9._-]. Required (here or --device-id)");
  cli::addProcessSettings(s, "127.0.0.1:9101");
  s.integer("batch.max_readings", 500, 1, 100000, "Close a batch at this many readings")
      .integer("batch.linger_ms", 1000, 1, 3600000,
               "Close a non-empty batch this long after its first reading (bounds the readings "
               "held only in memory)")
      .string("outbox.path", "/var/lib/outpost/outbox.db", "SQLite outbox file")
      .integer("outbox.max_bytes", 256ll << 20, 65536, 1ll << 40,
               "Limit on stored batch payload bytes (the file is somewhat larger: SQLite pages, "
               "index); what happens when it is reached is outbox.full_policy. Reloadable")
      .oneOf("outbox.full_policy", "drop_oldest", {"drop_oldest", "drop_newest", "block"},
             "When the outbox is full (byte limit, or the disk is full): drop_oldest evicts the "
             "oldest stored batches, drop_newest refuses the new batch, block stops reading the "
             "sources until there is room. Dropped readings are counted "
             "(outpost_agent_readings_dropped_total) and reported in the next batch. Reloadable")
      .integer("outbox.max_age_s", 0, 0, 10ll * 365 * 86400,
               "Drop stored batches older than this many seconds (counted as dropped, reason "
               "max_age); 0: no age limit. Reloadable")
      .integer("outbox.group_max_batches", 64, 1, 4096,
               "At most this many closed batches are committed in one transaction (one fsync "
               "under synchronous=full); batches closed in the same pipeline round are grouped")
      .oneOf("outbox.synchronous", "full", {"full", "normal"},
             "full: a batch is accepted only once on disk (survives power loss); normal: faster, "
             "survives a process crash but may lose the last batches on power loss")
      .oneOf("uplink.transport", "mqtt", {"mqtt", "zmq"},
             "Transport to the aggregator: mqtt (through a broker) or zmq (direct to the "
             "aggregator, CURVE; no broker)")
      .string("uplink.mqtt.broker", "tcp://127.0.0.1:1883",
              "MQTT broker URI (tcp://host:port, or ssl://host:port for TLS)")
      .string("uplink.mqtt.client_id", "", "MQTT client id; empty: outpost-agent-<device_id>")
      .string("uplink.mqtt.topic_prefix", "outpost/v1", "Prefix of the batch/ack/status topics")
      .string("uplink.mqtt.username", "", "MQTT user name (empty: anonymous)")
      .string("uplink.mqtt.password", "",
              "MQTT password; never logged (prefer uplink.mqtt.password_file)")
      .integer("uplink.mqtt.max_inflight", 16, 1, 1024,
               "Batches sent and not yet acknowledged, at most")
      .integer("uplink.mqtt.ack_timeout_ms", 10000, 100, 3600000,
               "Send a batch again if the aggregator has not acknowledged it within this time")
      .oneOf("uplink.drain.order", "oldest_first", {"oldest_first", "newest_first"},
             "After an outage, send the backlog (batches stored before the connection opened) "
             "oldest first or newest first; live batches always go first. Reloadable")
      .real("uplink.drain.rate", 0, 0, 1e9,
            "Backlog drain rate in readings per second (0: as fast as acknowledgements allow); "
            "live batches are not limited. Reloadable")
      .integer("uplink.mqtt.keepalive_s", 30, 2, 3600, "MQTT keep-alive interval")
      .integer("uplink.mqtt.reconnect_min_ms", 500, 10, 600000,
               "First reconnect delay; doubles up to reconnect_max_ms while the broker is down")
      .integer("uplink.mqtt.reconnect_max_ms", 30000, 10, 3600000, "Longest reconnect delay");
  mqttsec::addSettings(s, "uplink.mqtt.");
  s.string("uplink.zmq.endpoint", "tcp://127.0.0.1:7450",
           "The aggregator's ZeroMQ endpoint (its zmq.listen)")
      .string("uplink.zmq.server_public_key_file", "/etc/outpost/aggregator.pub",
              "The aggregator's CURVE public key (file from outpost-agent keygen)")
      .string("uplink.zmq.key_file", "/etc/outpost/agent.key",
              "This device's CURVE key pair (outpost-agent keygen; mode 0600); its public key "
              "must be on the aggregator's allow-list under this device_id")
      .integer("uplink.zmq.max_inflight", 16, 1, 1024,
               "Batches sent and not yet acknowledged, at most")
      .integer("uplink.zmq.ack_timeout_ms", 10000, 100, 3600000,
               "Send a batch again if the aggregator has not acknowledged it within this time")
      .integer("uplink.zmq.heartbeat_ms", 1000, 50, 600000,
               "Ping interval; keep at or below the aggregator's zmq.heartbeat_ms")
      .integer("uplink.zmq.heartbeat_liveness", 3, 1, 100,
               "Heartbeat intervals without any reply before the socket is remade")
      .integer("uplink.zmq.reconnect_min_ms", 500, 10, 600000,
               "First reconnect delay; doubles up to reconnect_max_ms while the aggregator is away")
      .integer("uplink.zmq.reconnect_max_ms", 30000, 10, 3600000, "Longest reconnect delay");
  addInputSettings(s);  // [sources.*], [[sensors]] with filters and windows (inputs_config.cc)
  return s;
}

}  // namespace

const config::Schema& agentSchema() {
  static const config::Schema schema = buildSchema();
  return schema;
}

}  // namespace outpost::agent

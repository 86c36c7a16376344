#pragma once

// The settings of outpost-aggregator: one table per stage (settings.h) bound to the stage's
// options struct (ingest: MqttIngestOptions, ZmqIngestOptions; pipeline: AggregatorOptions with
// KafkaOptions, [detect] in anomaly_stage.cc, [latest] in latest_store.cc; ops: OpsOptions). The
// tables build the schema (validates aggregator.toml and --set overrides, renders the aggregator
// part of docs/configuration.md) and read a validated config into AggregatorSettings.
// SIGHUP re-reads only zmq.allow_list_file's contents; every setting needs a restart.

#include "outpost/aggregator/aggregator.h"
#include "outpost/aggregator/cluster.h"
#include "outpost/aggregator/json.h"
#include "outpost/aggregator/mqtt_ingest.h"
#include "outpost/aggregator/ops.h"
#include "outpost/aggregator/zmq_ingest.h"
#include "outpost/common/config.h"
#include "outpost/common/settings.h"

namespace outpost::aggregator {

const config::EnumNames<ReadingsFormat>& readingsFormatNames();  // "batch", "reading"

// How agents reach the aggregator: [mqtt] and/or [zmq].
struct IngestSettings {
  bool mqtt_enabled = true;
  MqttIngestOptions mqtt;  // `security` is not read here (it reads files: mqttsec::load)
  ZmqIngestOptions zmq;    // zmq.listen empty: no ZeroMQ ingest
};

struct AggregatorSettings {
  IngestSettings ingest;
  AggregatorOptions pipeline;  // [verify], [ingest], [dedup], [kafka], [detect], [latest]
  OpsOptions ops;              // device status topic, [devices], [dashboard], [alerts]
  ClusterOptions cluster;      // [cluster], kafka.batches_topic, kafka.state_topic (cluster.h)
  bool metrics_collect = true;
};

// The settings table of outpost-aggregator.
const config::Schema& aggregatorSchema();

// Typed view of a validated config. Resolves the [cluster] defaults: cluster.instance_id empty
// -> the host name; in role ingest an empty mqtt.shared_group -> "outpost-ingest" and an unset
// mqtt.client_id -> "outpost-ingest-<instance_id>". Throws config::ConfigError naming the keys of
// an invalid value or combination: a bad cluster.instance_id or mqtt.shared_group, cluster.role =
// process (not in this build), mqtt.enabled = false with zmq.listen empty (roles all and ingest),
// mqtt.reconnect_max_ms below
// mqtt.reconnect_min_ms, alerts.backoff_max_ms below alerts.backoff_min_ms, and the [detect]
// checks (anomalyOptionsFrom). Reads no files.
AggregatorSettings readAggregatorSettings(const config::Config& cfg);

}  // namespace outpost::aggregator

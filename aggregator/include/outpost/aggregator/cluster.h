#pragma once

// The roles of outpost-aggregator when it runs as several instances (design.md, "Scaling past one
// machine"; docs/kafka.md, "Roles"): [cluster] settings, read by aggregator_config.cc.

#include <string>
#include <string_view>

#include "outpost/common/settings.h"

namespace outpost::aggregator {

// kAll: one process does everything (ingest, verify, dedup, detect, produce, ack).
// kIngest: stateless; verified batches go unchanged to kafka.batches_topic, the agent is acked
// after that delivery. kProcess: a consumer group on kafka.batches_topic owns dedup and detection.
enum class Role { kAll, kIngest, kProcess };

const config::EnumNames<Role>& roleNames();  // "all", "ingest", "process"

struct ClusterOptions {
  Role role = Role::kAll;
  // The process role's group.instance.id and part of its transactional.id (a valid Kafka client
  // id: isValidInstanceId). The configured value, or the host name when that is left empty.
  std::string instance_id;
  std::string group = "outpost-process";  // the process role's consumer group id
  int commit_interval_ms = 100;           // the process role's transaction interval
  int session_timeout_ms = 10000;      // process: how long a crashed member keeps its partitions
  int transaction_timeout_ms = 10000;  // process: how long a crashed member's transaction blocks
  int restore_timeout_ms = 60000;      // process: reading a partition's state records
  int reorder_wait_ms = 1000;          // process: how long a batch waits for a lower seq
  int reorder_max_batches = 64;        // process: batches one device may hold waiting
  std::string batches_topic = "outpost.batches";  // ingest -> process, key = device id
  std::string state_topic = "outpost.state";      // compacted changelog, key = device id
};

// The shared subscription group of role ingest when mqtt.shared_group is left empty.
inline constexpr const char* kDefaultIngestSharedGroup = "outpost-ingest";

// Letters, digits, '.', '_', '-'; 1 to 249 characters (what Kafka accepts as group.instance.id
// and in a transactional.id).
bool isValidInstanceId(std::string_view id);

// An MQTT shared-subscription group name: non-empty, without '/', '+' or '#' (MQTT 5, 4.8.2).
bool isValidSharedGroup(std::string_view group);

}  // namespace outpost::aggregator

#pragma once

// The cluster as any instance can see it from Kafka (docs/scaling.md, "Operations"): the members
// of the process role's consumer group (cluster.group) with the partitions of kafka.batches_topic
// each one owns, and the group's lag (its committed offsets against the partitions' ends).
//
// How: librdkafka 2.0.2's rd_kafka_list_groups (ListGroups + DescribeGroups), a long-standing
// call, gives each member's id, client id, host and its assignment as raw bytes in the consumer
// protocol's format, parsed here (parseMemberAssignment: bytes from the network, checked before
// use). The Admin API's rd_kafka_DescribeConsumerGroups (new in 2.0.0) parses them itself and
// names group.instance.id; it works against the test broker (Kafka 4.4), also mid-rebalance, but
// the upstream source copies a member's partition list without a null check and
// rd_kafka_topic_partition_list_copy(NULL) segfaults in 2.0.2, so a broker that sends an empty
// assignment might crash the instance that looks (a precaution, not reproduced; docs/scaling.md).
// The committed offsets come from rd_kafka_committed on a handle with group.id = cluster.group
// that never subscribes (it does not join the group), the ends from one ListOffsets request
// (rd_kafka_offsets_for_times, latest). rd_kafka_list_groups does not report group.instance.id;
// the broker names a static member "<group.instance.id>-<uuid>" (KIP-345), so the instance is
// read back from the member id (staticInstanceOf).
//
// Thread-safety: start()/stop() from the owning thread; snapshot() and writeMembers() from any
// thread. One background thread refreshes the view every `interval`.

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "outpost/aggregator/kafka.h"
#include "outpost/aggregator/cluster.h"
#include "outpost/common/clock.h"
#include "outpost/common/json.h"
#include "outpost/common/status.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::aggregator {

// One topic of a consumer protocol assignment (ConsumerProtocolAssignment, versions 0-3: int16
// version, int32 count of {int16-length topic name, int32 count of int32 partitions}, int32-length
// user data; big-endian).
struct AssignedTopic {
  std::string topic;
  std::vector<int32_t> partitions;
};

// Parses a member assignment from the wire. Empty bytes: no assignment (an empty list; the broker
// sends that while the group rebalances). Errors (kCorrupt) name what is wrong and where: a
// negative version, a count below -1 or beyond what the remaining bytes can hold, a name or user
// data running past the end, a negative partition. Trailing bytes after the user data are
// ignored (later versions may add fields), as Kafka's own parser does.
Result<std::vector<AssignedTopic>> parseMemberAssignment(std::span<const uint8_t> bytes);

// The group.instance.id of a static member from its member id ("<instance>-<uuid>", as the broker
// makes it), or "" when `member_id` does not have that form or the prefix is just `client_id`
// (a dynamic member: "<client id>-<uuid>").
std::string staticInstanceOf(std::string_view member_id, std::string_view client_id);

struct GroupMember {
  std::string member_id;
  std::string instance;  // group.instance.id ("" when dynamic)
  std::string client_id;
  std::string host;
  std::vector<int32_t> partitions;  // of the batches topic, sorted
  int64_t lag = 0;                  // the group's lag summed over those partitions
};

struct GroupView {
  bool described = false;  // the last refresh worked
  std::string error;       // why it did not (empty when it did)
  int64_t updated_us = 0;  // when the last refresh finished (wall clock), 0: never
  std::string state;       // "Stable", "PreparingRebalance", "CompletingRebalance", "Empty", "Dead"
  std::string protocol;    // the assignor ("range")
  std::vector<GroupMember> members;  // by instance, then member id
  int32_t partition_count = 0;       // of the batches topic (0: unknown)
  struct Partition {
    int32_t partition = 0;
    int64_t committed = -1;  // the group's committed offset; -1: none yet
    int64_t end = -1;        // the partition's end (high watermark); -1: unknown
    int64_t lag = -1;        // end - committed (end - 0 when nothing is committed); -1: unknown
  };
  std::vector<Partition> partitions;  // every partition of the batches topic
  int64_t lag_total = -1;             // -1: unknown
  std::vector<int32_t> unassigned;    // partitions no member owns
  bool exists() const { return !members.empty() || lag_total >= 0; }
};

class ClusterView {
 public:
  ClusterView(KafkaOptions kafka, ClusterOptions cluster, const Clock& clock,
              int interval_ms = 2000);
  ~ClusterView();
  ClusterView(const ClusterView&) = delete;
  ClusterView& operator=(const ClusterView&) = delete;

  // Creates the Kafka handle and starts refreshing (the first refresh at once). Throws
  // std::runtime_error on a bad Kafka configuration; an unreachable broker is not an error (the
  // view says so).
  void start();
  void stop();  // idempotent

  GroupView snapshot() const;
  // Members: "group_state", "protocol", "members": [{"member_id", "instance", "client_id",
  // "host", "partitions", "lag"}], "unassigned", "group_lag" ({"total", "partitions": [{
  // "partition", "committed", "end", "lag"}]}, null when unknown), "view_updated_us",
  // "view_error" (null when the last refresh worked), into an open object.
  void writeMembers(json::Writer& w) const;

  // One refresh now (the background thread calls this; exposed for tests).
  void refresh();

 private:
  bool stopRequested();
  struct Kafka;
  const KafkaOptions kafka_;
  const ClusterOptions cluster_;
  const Clock& clock_;
  const int interval_ms_;
  std::unique_ptr<Kafka> rk_;
  mutable Mutex mu_;
  GroupView view_ GUARDED_BY(mu_);
  Mutex run_mu_;
  CondVar run_cv_;
  bool stopping_ GUARDED_BY(run_mu_) = false;
  std::thread thread_;
  bool logged_error_ = false;  // refresh thread only
};

// The /api/cluster answer of a role that owns no partition (all, ingest): {"instance", "role",
// "group", "topic", "partitions": [], "partition_count", + writeMembers}; without a view (it
// could not start) the same fields, empty, with "view_error" saying so.
std::string clusterJson(const ClusterOptions& cluster, const ClusterView* view);

}  // namespace outpost::aggregator

#pragma once

// The `process` role of a scaled-out aggregator (docs/scaling.md): a member of a Kafka consumer
// group on `outpost.batches` (verified batches, produced by the `ingest` role, key = device).
// Owning a partition means owning its devices: their dedup memory and detector state.
//
// One thread consumes, processes and produces inside Kafka transactions: the readings, anomaly
// events and latest values of the batches consumed, one `outpost.state` record per device they
// touched (its dedup memory and detectors, same partition number as the batch) and the consumed
// offsets commit together, every `cluster.commit_interval_ms`. A crash or a rebalance therefore
// neither loses nor repeats anything as a read_committed consumer sees it: what was not committed
// is aborted and consumed again by the partition's next owner, which restores the devices'
// state from `outpost.state` first. Static membership (group.instance.id) keeps a quick restart
// from moving partitions; the range assignor (eager) is used, not cooperative-sticky (librdkafka
// 2.0.2's has known bugs). Zombies are fenced by the transaction coordinator (KIP-447: the
// offsets commit carries the consumer group generation); a fatal error stops the process.
//
// Thread-safety: start()/stop() from the owning thread; the stats accessors from any thread.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "outpost/aggregator/aggregator.h"
#include "outpost/aggregator/cluster.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/thread_annotations.h"

namespace outpost {
class HttpServer;
}

namespace outpost::aggregator {

class ProcessRole {
 public:
  // `pipeline`: the verify limits, topics, readings format, Kafka client, [detect] and [latest]
  // settings of the single-process aggregator (the dedup.* settings do not apply).
  ProcessRole(AggregatorOptions pipeline, ClusterOptions options, metrics::Registry& registry,
              const Clock& clock);
  ~ProcessRole();
  ProcessRole(const ProcessRole&) = delete;
  ProcessRole& operator=(const ProcessRole&) = delete;

  // Connects (checks that both topics exist with the same partition count), initialises the
  // transactional producer (fencing an earlier incarnation of this instance id), subscribes and
  // starts the processing thread. Throws std::runtime_error when it cannot.
  void start();
  // Commits what is open, leaves the loop and closes the consumer. Idempotent.
  void stop();

  // Live detection (observers before start()) and the latest values of the owned devices.
  AnomalyDetection& anomalies() { return anomaly_; }
  LatestStore* latest() { return latest_.get(); }

  // Empty when ready: started, partitions assigned and their state restored.
  std::vector<std::string> notReadyReasons() const;
  bool healthy(std::string& detail) const;
  // GET /api/cluster: this instance, its group and the partitions it owns.
  void addRoutes(HttpServer& http);

 private:
  struct Impl;
  AggregatorOptions pipeline_;
  ClusterOptions opt_;
  metrics::Registry& registry_;
  const Clock& clock_;
  AnomalyDetection anomaly_;
  std::unique_ptr<LatestStore> latest_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> started_{false};
};

}  // namespace outpost::aggregator

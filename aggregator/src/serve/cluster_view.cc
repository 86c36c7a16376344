#include "outpost/aggregator/cluster_view.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "kafka/conf.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {
namespace {

bool isHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, lower-case hex (java.util.UUID.toString()).
bool isUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !isHex(s[i])) return false;
  }
  return true;
}

struct ListFree {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, ListFree>;

}  // namespace

std::string staticInstanceOf(std::string_view member_id, std::string_view client_id) {
  if (member_id.size() < 38 || member_id[member_id.size() - 37] != '-' ||
      !isUuid(member_id.substr(member_id.size() - 36))) {
    return "";
  }
  const std::string_view prefix = member_id.substr(0, member_id.size() - 37);
  return prefix == client_id ? "" : std::string(prefix);
}

// --- ClusterView ---

struct ClusterView::Kafka {
  rd_kafka_t* rk = nullptr;
  ~Kafka() {
    // Never subscribed: nothing to leave or commit, and no wait on a coordinator that is gone.
    if (rk) rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
};

ClusterView::ClusterView(KafkaOptions kafka, ClusterOptions cluster, const Clock& clock,
                         int interval_ms)
    : kafka_(std::move(kafka)), cluster_(std::move(cluster)), clock_(clock),
      interval_ms_(std::max(100, interval_ms)) {}

ClusterView::~ClusterView() { stop(); }

void ClusterView::start() {
  // group.id = the process role's group, so that rd_kafka_committed reads its offsets. This
  // handle never subscribes: it does not join the group. read_uncommitted: the committed offsets
  // are asked for without require_stable (an open transaction does not hold the answer back).
  const KafkaProps props = {{"group.id", cluster_.group},
                            {"enable.auto.commit", "false"},
                            {"enable.auto.offset.store", "false"},
                            {"isolation.level", "read_uncommitted"}};
  rd_kafka_t* rk = newClient(RD_KAFKA_CONSUMER, clientConf(kafka_, props), "cluster view");
  rk_ = std::make_unique<Kafka>();
  rk_->rk = rk;
  thread_ = std::thread([this] {
    setThreadName("op-clusterview");
    for (;;) {
      refresh();
      MutexLock lock(run_mu_);
      if (run_cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_),
                           [this]() REQUIRES(run_mu_) { return stopping_; })) {
        return;
      }
    }
  });
}

void ClusterView::stop() {
  {
    MutexLock lock(run_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  run_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  rk_.reset();
}

bool ClusterView::stopRequested() {
  MutexLock lock(run_mu_);
  return stopping_;
}

GroupView ClusterView::snapshot() const {
  MutexLock lock(mu_);
  return view_;
}

void ClusterView::refresh() {
  if (!rk_) return;
  rd_kafka_t* rk = rk_->rk;
  rd_kafka_poll(rk, 0);  // serves the handle's error events (they would pile up unread)
  // Short: a stop waits for the refresh under way (SIGTERM must stay quick with a broker down).
  constexpr int kTimeoutMs = 1500;
  GroupView v;
  bool unsupported = false;
  auto finish = [&](std::string error) {
    v.described = error.empty();
    v.error = std::move(error);
    v.updated_us = clock_.nowUs();
    if (!v.error.empty() && !logged_error_) {
      // The development broker (outpost-devkafka) has no ListGroups: not worth a warning.
      spdlog::log(unsupported ? spdlog::level::info : spdlog::level::warn,
                  "cluster view of group {}: {} (retrying every {} ms)", cluster_.group, v.error,
                  interval_ms_);
      logged_error_ = true;
    } else if (v.error.empty() && logged_error_) {
      spdlog::info("cluster view of group {}: described", cluster_.group);
      logged_error_ = false;
    }
    MutexLock lock(mu_);
    view_ = std::move(v);
  };

  // The batches topic's partition count.
  {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, cluster_.batches_topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, kTimeoutMs);
    rd_kafka_topic_destroy(rkt);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return finish(std::string("metadata of ") + cluster_.batches_topic + ": " +
                    rd_kafka_err2str(err));
    }
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      v.partition_count = md->topics[0].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
  }

  if (stopRequested()) return;
  // The group's members and their assignments.
  const struct rd_kafka_group_list* groups = nullptr;
  const rd_kafka_resp_err_t gerr =
      rd_kafka_list_groups(rk, cluster_.group.c_str(), &groups, kTimeoutMs);
  if (gerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (groups) rd_kafka_group_list_destroy(groups);
    unsupported = gerr == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE;
    return finish(std::string("describing the group: ") + rd_kafka_err2str(gerr));
  }
  for (int g = 0; groups && g < groups->group_cnt; ++g) {
    const rd_kafka_group_info& gi = groups->groups[g];
    if (!gi.group || cluster_.group != gi.group) continue;
    if (gi.err != RD_KAFKA_RESP_ERR_NO_ERROR && gi.err != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
      const std::string why = rd_kafka_err2str(gi.err);
      rd_kafka_group_list_destroy(groups);
      return finish("describing the group: " + why);
    }
    v.state = gi.state ? gi.state : "";
    v.protocol = gi.protocol ? gi.protocol : "";
    for (int m = 0; m < gi.member_cnt; ++m) {
      const rd_kafka_group_member_info& mi = gi.members[m];
      GroupMember gm;
      gm.member_id = mi.member_id ? mi.member_id : "";
      gm.client_id = mi.client_id ? mi.client_id : "";
      gm.host = mi.client_host ? mi.client_host : "";
      if (!gm.host.empty() && gm.host[0] == '/') gm.host.erase(0, 1);  // Kafka writes "/1.2.3.4"
      gm.instance = staticInstanceOf(gm.member_id, gm.client_id);
      const size_t n = mi.member_assignment_size > 0 && mi.member_assignment
                           ? static_cast<size_t>(mi.member_assignment_size)
                           : 0;
      auto parsed = parseMemberAssignment(
          std::span<const uint8_t>(static_cast<const uint8_t*>(mi.member_assignment), n));
      if (!parsed) {
        spdlog::debug("cluster view: member {}: {}", gm.member_id, parsed.error().toString());
      } else {
        for (const AssignedTopic& t : *parsed) {
          if (t.topic != cluster_.batches_topic) continue;
          gm.partitions.insert(gm.partitions.end(), t.partitions.begin(), t.partitions.end());
        }
      }
      std::sort(gm.partitions.begin(), gm.partitions.end());
      gm.partitions.erase(std::unique(gm.partitions.begin(), gm.partitions.end()),
                          gm.partitions.end());
      v.members.push_back(std::move(gm));
    }
  }
  if (groups) rd_kafka_group_list_destroy(groups);
  std::sort(v.members.begin(), v.members.end(), [](const GroupMember& a, const GroupMember& b) {
    return std::tie(a.instance, a.member_id) < std::tie(b.instance, b.member_id);
  });

  // The group's committed offsets and the partitions' ends: its lag, seen from outside.
  if (!stopRequested() && v.partition_count > 0 && (!v.members.empty() || v.state == "Empty")) {
    PartitionList committed{rd_kafka_topic_partition_list_new(v.partition_count)};
    PartitionList ends{rd_kafka_topic_partition_list_new(v.partition_count)};
    for (int32_t p = 0; p < v.partition_count; ++p) {
      rd_kafka_topic_partition_list_add(committed.get(), cluster_.batches_topic.c_str(), p);
      rd_kafka_topic_partition_list_add(ends.get(), cluster_.batches_topic.c_str(), p)->offset =
          RD_KAFKA_OFFSET_END;  // ListOffsets "latest"
    }
    const rd_kafka_resp_err_t cerr = rd_kafka_committed(rk, committed.get(), kTimeoutMs);
    const rd_kafka_resp_err_t eerr = rd_kafka_offsets_for_times(rk, ends.get(), kTimeoutMs);
    if (cerr == RD_KAFKA_RESP_ERR_NO_ERROR && eerr == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::map<int32_t, int64_t> end_of, committed_of;
      for (int i = 0; i < ends->cnt; ++i) {
        if (ends->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && ends->elems[i].offset >= 0) {
          end_of[ends->elems[i].partition] = ends->elems[i].offset;
        }
      }
      for (int i = 0; i < committed->cnt; ++i) {
        if (committed->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          committed_of[committed->elems[i].partition] = committed->elems[i].offset;
        }
      }
      int64_t total = 0;
      bool complete = true;
      for (int32_t p = 0; p < v.partition_count; ++p) {
        GroupView::Partition gp;
        gp.partition = p;
        auto c = committed_of.find(p);
        gp.committed = c != committed_of.end() && c->second >= 0 ? c->second : -1;
        auto e = end_of.find(p);
        if (e != end_of.end()) {
          gp.end = e->second;
          // Nothing committed yet: the whole partition is to do (auto.offset.reset = earliest;
          // a partition whose start was deleted counts high).
          gp.lag = std::max<int64_t>(0, gp.end - std::max<int64_t>(0, gp.committed));
          total += gp.lag;
        } else {
          complete = false;
        }
        v.partitions.push_back(gp);
      }
      v.lag_total = complete ? total : -1;
      for (GroupMember& gm : v.members) {
        for (int32_t p : gm.partitions) {
          if (p < static_cast<int32_t>(v.partitions.size()) && v.partitions[p].lag > 0) {
            gm.lag += v.partitions[p].lag;
          }
        }
      }
    } else {
      spdlog::debug("cluster view: offsets of {}: committed {}, ends {}", cluster_.group,
                    rd_kafka_err2str(cerr), rd_kafka_err2str(eerr));
    }
  }
  if (!v.members.empty()) {
    std::vector<bool> owned(static_cast<size_t>(std::max(0, v.partition_count)), false);
    for (const GroupMember& gm : v.members) {
      for (int32_t p : gm.partitions) {
        if (p < v.partition_count) owned[static_cast<size_t>(p)] = true;
      }
    }
    for (int32_t p = 0; p < v.partition_count; ++p) {
      if (!owned[static_cast<size_t>(p)]) v.unassigned.push_back(p);
    }
  }
  finish("");
}

void ClusterView::writeMembers(json::Writer& w) const {
  const GroupView v = snapshot();
  w.key("group_state");
  if (v.state.empty()) {
    w.null();
  } else {
    w.string(v.state);
  }
  w.key("protocol");
  if (v.protocol.empty()) {
    w.null();
  } else {
    w.string(v.protocol);
  }
  w.key("members").beginArray();
  for (const GroupMember& m : v.members) {
    w.beginObject().member("member_id", m.member_id).key("instance");
    if (m.instance.empty()) {
      w.null();
    } else {
      w.string(m.instance);
    }
    w.member("client_id", m.client_id).member("host", m.host).key("partitions").beginArray();
    for (int32_t p : m.partitions) w.integer(p);
    w.endArray().member("lag", m.lag).endObject();
  }
  w.endArray().key("unassigned").beginArray();
  for (int32_t p : v.unassigned) w.integer(p);
  w.endArray().key("group_lag");
  if (v.lag_total < 0) {
    w.null();
  } else {
    w.beginObject().member("total", v.lag_total).key("partitions").beginArray();
    for (const auto& p : v.partitions) {
      w.beginObject()
          .member("partition", static_cast<int64_t>(p.partition))
          .member("committed", p.committed)
          .member("end", p.end)
          .member("lag", p.lag)
          .endObject();
    }
    w.endArray().endObject();
  }
  w.member("view_updated_us", v.updated_us).key("view_error");
  if (v.updated_us == 0) {
    w.string("not described yet");
  } else if (v.error.empty()) {
    w.null();
  } else {
    w.string(v.error);
  }
}

std::string clusterJson(const ClusterOptions& cluster, const ClusterView* view) {
  std::string body;
  json::Writer w(body);
  w.beginObject()
      .member("instance", cluster.instance_id)
      .member("role", roleNames().name(cluster.role))
      .member("group", cluster.group)
      .member("topic", cluster.batches_topic);
  w.key("partitions").beginArray().endArray();
  const int64_t count = view ? view->snapshot().partition_count : 0;
  w.member("partition_count", count);
  if (view) {
    view->writeMembers(w);
  } else {  // the view could not start: the same fields, saying so
    w.key("group_state").null().key("protocol").null();
    w.key("members").beginArray().endArray().key("unassigned").beginArray().endArray();
    w.key("group_lag").null().member("view_updated_us", int64_t{0});
    w.member("view_error", "the cluster view is not running (see the log)");
  }
  w.endObject();
  return body;
}

}  // namespace outpost::aggregator

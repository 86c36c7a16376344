// outpost-kafka-tool: topic creation and a client-compatibility check for a real Kafka broker,
// with the same librdkafka the aggregator links (Debian 12: 2.0.2). Development and test tool;
// scripts/kafka.sh and the real-Kafka tests use it (docs/kafka.md).
//
//   outpost-kafka-tool create-topics --bootstrap HOST:PORT [--partitions N]
//                      [--replication-factor N] [--min-insync-replicas N] NAME[:compact]...
//   outpost-kafka-tool check --bootstrap HOST:PORT
//   outpost-kafka-tool group-offsets --bootstrap HOST:PORT --group GROUP TOPIC
//
// `check` proves what Outpost needs from the broker with this librdkafka, each step asserting
// what an outside client sees: (1) the idempotent producer with the aggregator's settings,
// (2) transactions: a committed and an aborted one, read back with isolation.level=read_committed,
// and consume-transform-produce with the consumer group's offsets committed inside the
// transaction, (3) a consumer group of two members sharing a topic's partitions, committing,
// and a later member resuming from the committed offsets. Exit status 0 only if all pass.
//
// `group-offsets` prints, per partition of TOPIC, GROUP's committed offset and the partition's end
// offset (high watermark) and their difference, then "total LAG": what an outside observer sees of
// a consumer group's progress (the cluster test's drain and failover checks). It does not join the
// group. Offsets pending in an open transaction do not count (read_uncommitted: no RequireStable),
// so it never waits for a transaction; a partition without a committed offset counts from 0.

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "outpost-kafka-tool: %s\n", msg.c_str());
  std::exit(1);
}

void check(rd_kafka_error_t* err, const std::string& what) {
  if (!err) return;
  std::string m = what + ": " + rd_kafka_error_string(err);
  rd_kafka_error_destroy(err);
  die(m);
}

void check(rd_kafka_resp_err_t err, const std::string& what) {
  if (err) die(what + ": " + rd_kafka_err2str(err));
}

// Protocol features librdkafka switched on and off for the broker (its "feature,protocol" debug
// log), for the report: against a broker that dropped old API versions some stay off.
std::set<std::string> g_enabled, g_disabled;

void logCb(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  for (auto [prefix, set] : {std::pair{"Enabling feature ", &g_enabled},
                             std::pair{"Disabling feature ", &g_disabled}}) {
    if (const char* p = std::strstr(buf, prefix)) {
      set->insert(p + std::strlen(prefix));
      return;
    }
  }
  if (level <= 4) std::fprintf(stderr, "librdkafka %s: %s\n", fac, buf);
}

std::string joined(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += (out.empty() ? "" : ",") + x;
  return out.empty() ? "-" : out;
}

rd_kafka_t* makeClient(rd_kafka_type_t type, const std::string& bootstrap,
                       const std::vector<std::pair<std::string, std::string>>& props,
                       std::pair<int, std::string>* deliveries = nullptr) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::vector<std::pair<std::string, std::string>> all = {{"bootstrap.servers", bootstrap},
                                                          {"log_level", "4"}};
  all.insert(all.end(), props.begin(), props.end());
  for (const auto& [k, v] : all) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      die("property " + k + "=" + v + ": " + err);
    }
  }
  rd_kafka_conf_set_log_cb(conf, logCb);
  if (deliveries) {  // counts successful delivery reports, keeps the last failure
    rd_kafka_conf_set_opaque(conf, deliveries);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* op) {
      auto* counts = static_cast<std::pair<int, std::string>*>(op);
      if (m->err) counts->second = rd_kafka_err2str(m->err);
      else ++counts->first;
    });
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) die(std::string("rd_kafka_new: ") + err);
  if (type == RD_KAFKA_CONSUMER) rd_kafka_poll_set_consumer(rk);
  return rk;
}

// --- create-topics -------------------------------------------------------------------------------

// Retention: readings, anomalies and dead letters are a log (kept 7 days; dead letters 14 so
// someone can look at them); a ":compact" topic is a state keyed by its key (latest value kept).
// A replication factor above 1 (a multi-node cluster, scripts/kafka.sh start --nodes N) with
// min.insync.replicas set per topic: producing with acks=all then needs that many replicas in sync.
int createTopics(const std::string& bootstrap, int partitions, int replication, int min_insync,
                 const std::vector<std::string>& names) {
  rd_kafka_t* rk = makeClient(RD_KAFKA_PRODUCER, bootstrap, {});
  std::vector<rd_kafka_NewTopic_t*> topics;
  char err[512];
  for (const auto& spec : names) {
    std::string name = spec;
    bool compact = false;
    if (auto c = spec.find(':'); c != std::string::npos) {
      name = spec.substr(0, c);
      if (spec.substr(c + 1) != "compact") {
        die("topic '" + spec + "': allowed is NAME or NAME:compact");
      }
      compact = true;
    }
    if (name.empty()) die("topic '" + spec + "': the name is empty");
    rd_kafka_NewTopic_t* t =
        rd_kafka_NewTopic_new(name.c_str(), partitions, replication, err, sizeof err);
    if (!t) die("topic " + name + ": " + err);
    if (min_insync > 0) {
      const std::string isr = std::to_string(min_insync);
      check(rd_kafka_NewTopic_set_config(t, "min.insync.replicas", isr.c_str()), name);
    }
    if (compact) {
      check(rd_kafka_NewTopic_set_config(t, "cleanup.policy", "compact"), name);
      check(rd_kafka_NewTopic_set_config(t, "min.cleanable.dirty.ratio", "0.1"), name);
      check(rd_kafka_NewTopic_set_config(t, "segment.ms", "600000"), name);
    } else {
      const char* days = name.find("deadletter") != std::string::npos ? "1209600000" : "604800000";
      check(rd_kafka_NewTopic_set_config(t, "retention.ms", days), name);
    }
    topics.push_back(t);
  }
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, topics.data(), topics.size(), nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  if (!ev) die("no answer to CreateTopics within 30 s from " + bootstrap);
  if (rd_kafka_event_error(ev)) {
    die(std::string("CreateTopics: ") + rd_kafka_event_error_string(ev));
  }
  size_t n = 0;
  const rd_kafka_topic_result_t** res =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
  int failed = 0;
  for (size_t i = 0; i < n; ++i) {
    rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
    const char* name = rd_kafka_topic_result_name(res[i]);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::printf("created %s (%d partitions, replication factor %d)\n", name, partitions,
                  replication);
    } else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      std::printf("exists %s\n", name);
    } else {
      std::fprintf(stderr, "outpost-kafka-tool: topic %s: %s\n", name,
                   rd_kafka_topic_result_error_string(res[i]));
      ++failed;
    }
  }
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  for (auto* t : topics) rd_kafka_NewTopic_destroy(t);
  rd_kafka_destroy(rk);
  return failed ? 1 : 0;
}

// --- check ---------------------------------------------------------------------------------------

std::string uniqueSuffix() {
  return std::to_string(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
          .count());
}

void produce(rd_kafka_t* rk, const std::string& topic, const std::string& key,
             const std::string& value) {
  for (int tries = 0;; ++tries) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || tries > 1000) check(e, "produce to " + topic);
    rd_kafka_poll(rk, 10);
  }
}

// The log end offset (high watermark) of each partition of a topic, as the broker has it now.
std::map<int32_t, int64_t> endOffsets(rd_kafka_t* rk, const std::string& topic, int partitions) {
  std::map<int32_t, int64_t> ends;
  for (int32_t p = 0; p < partitions; ++p) {
    int64_t lo = 0, hi = 0;
    check(rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &lo, &hi, 10000),
          "watermarks of " + topic);
    ends[p] = hi;
  }
  return ends;
}

// Consumes from a subscribed consumer until `want` messages arrived or `secs` passed; values
// are counted by content. With `ends` (partition -> log end offset) it also stops once the
// consumer has fetched every one of those partitions up to its end (an end-of-partition event at
// or past it): a wait for messages that must not come (want = one more than expected) then ends
// as soon as nothing can come any more, not only when the time is up.
std::map<std::string, int> consume(rd_kafka_t* c, size_t want, int secs,
                                   const std::map<int32_t, int64_t>* ends = nullptr) {
  std::map<std::string, int> seen;
  std::set<int32_t> at_end;
  size_t total = 0;
  auto end = Clock::now() + std::chrono::seconds(secs);
  while (total < want && Clock::now() < end && !(ends && at_end.size() == ends->size())) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 200);
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++seen[std::string(static_cast<const char*>(m->payload), m->len)];
      ++total;
      at_end.erase(m->partition);
    } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (ends) {
        auto it = ends->find(m->partition);
        if (it != ends->end() && m->offset >= it->second) at_end.insert(m->partition);
      }
    } else {
      std::string e = rd_kafka_message_errstr(m);
      rd_kafka_message_destroy(m);
      die("consume: " + e);
    }
    rd_kafka_message_destroy(m);
  }
  return seen;
}

rd_kafka_t* subscribed(const std::string& bootstrap, const std::string& group,
                       const std::string& topic, bool read_committed) {
  rd_kafka_t* c = makeClient(RD_KAFKA_CONSUMER, bootstrap,
                             {{"group.id", group},
                              {"auto.offset.reset", "earliest"},
                              {"enable.auto.commit", "false"},
                              {"session.timeout.ms", "6000"},
                              {"enable.partition.eof", "true"},  // consume(..., ends)
                              {"isolation.level", read_committed ? "read_committed"
                                                                 : "read_uncommitted"}});
  rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, topic.c_str(), RD_KAFKA_PARTITION_UA);
  check(rd_kafka_subscribe(c, l), "subscribe " + topic);
  rd_kafka_topic_partition_list_destroy(l);
  return c;
}

template <typename T>
std::string num(T v) {
  return std::to_string(v);
}

void pass(const char* what) { std::printf("PASS %s\n", what); }

int checkBroker(const std::string& bootstrap) {
  const std::string sfx = uniqueSuffix();
  const int kN = 600;
  // The topics are auto-created by the broker's defaults, or created here with 6 partitions.
  const std::string t_idem = "outpost.check.idem." + sfx, t_in = "outpost.check.in." + sfx,
                    t_out = "outpost.check.out." + sfx, t_grp = "outpost.check.group." + sfx;
  if (createTopics(bootstrap, 6, 1, 0, {t_idem, t_in, t_out, t_grp}) != 0) {
    die("could not create topics");
  }

  // (1) Idempotent producer with the aggregator's settings (aggregator/src/kafka/kafka.cc).
  std::pair<int, std::string> dr{0, ""};
  rd_kafka_t* p = makeClient(RD_KAFKA_PRODUCER, bootstrap,
                             {{"enable.idempotence", "true"},
                              {"acks", "all"},
                              {"max.in.flight.requests.per.connection", "5"},
                              {"compression.type", "lz4"},
                              {"linger.ms", "5"},
                              {"debug", "feature,protocol"}},
                             &dr);
  for (int i = 0; i < kN; ++i) produce(p, t_idem, "dev-" + num(i % 7), num(i));
  check(rd_kafka_flush(p, 30000), "flush (idempotent producer)");
  if (!dr.second.empty()) die("idempotent producer: delivery failed: " + dr.second);
  if (dr.first != kN) die("idempotent producer: " + std::to_string(dr.first) + " of " +
                          std::to_string(kN) + " delivered");
  char fatal[256];
  if (rd_kafka_fatal_error(p, fatal, sizeof fatal)) die(std::string("idempotent: fatal ") + fatal);
  std::printf("librdkafka %s; features enabled: %s; disabled: %s\n", rd_kafka_version_str(),
              joined(g_enabled).c_str(), joined(g_disabled).c_str());
  rd_kafka_destroy(p);
  {
    rd_kafka_t* c = subscribed(bootstrap, "outpost-check-idem-" + sfx, t_idem, false);
    auto seen = consume(c, kN, 30);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    if (seen.size() != static_cast<size_t>(kN)) {
      die("idempotent: read back " + num(seen.size()) + " distinct of " + num(kN));
    }
    for (const auto& [v, n] : seen) {
      if (n != 1) die("idempotent: value " + v + " read " + std::to_string(n) + " times");
    }
  }
  pass("idempotent producer (acks=all, max.in.flight=5, lz4): every message once");

  // (2) Transactions: one committed, one aborted; read_committed sees only the committed one.
  dr = {0, ""};
  p = makeClient(RD_KAFKA_PRODUCER, bootstrap,
                 {{"transactional.id", "outpost-check-" + sfx}, {"compression.type", "lz4"}}, &dr);
  check(rd_kafka_init_transactions(p, 30000), "init_transactions");
  check(rd_kafka_begin_transaction(p), "begin_transaction");
  for (int i = 0; i < kN; ++i) produce(p, t_in, "dev-" + num(i % 7), "c" + num(i));
  check(rd_kafka_commit_transaction(p, 30000), "commit_transaction");
  check(rd_kafka_begin_transaction(p), "begin_transaction (2)");
  for (int i = 0; i < kN; ++i) produce(p, t_in, "dev-x", "aborted" + std::to_string(i));
  check(rd_kafka_flush(p, 30000), "flush before abort");
  check(rd_kafka_abort_transaction(p, 30000), "abort_transaction");
  {
    rd_kafka_t* c = subscribed(bootstrap, "outpost-check-rc-" + sfx, t_in, true);
    // One more than committed: waits to see none aborted, for 3 s or until the consumer has
    // fetched past the aborted messages (and the abort markers) to the end of every partition.
    const auto ends = endOffsets(c, t_in, 6);
    auto seen = consume(c, kN + 1, 3, &ends);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    for (const auto& [v, n] : seen) {
      if (v.rfind("aborted", 0) == 0) die("read_committed consumer saw an aborted message " + v);
      if (n != 1) die("transactional: " + v + " read " + std::to_string(n) + " times");
    }
    if (seen.size() != static_cast<size_t>(kN)) {
      die("transactional: read back " + num(seen.size()) + " of " + num(kN) + " committed");
    }
  }
  pass("transactions: committed visible once, aborted invisible to read_committed");

  // Consume-transform-produce: a group member reads t_in, the producer writes t_out and commits
  // the group's offsets inside the same transaction.
  const std::string group = "outpost-check-ctp-" + sfx;
  {
    rd_kafka_t* c = subscribed(bootstrap, group, t_in, true);
    check(rd_kafka_begin_transaction(p), "begin_transaction (ctp)");
    std::map<std::pair<int32_t, std::string>, int64_t> next;  // (partition, topic) -> offset
    int moved = 0;
    auto end = Clock::now() + std::chrono::seconds(30);
    while (moved < kN && Clock::now() < end) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 200);
      if (!m) continue;
      if (!m->err) {
        std::string v(static_cast<const char*>(m->payload), m->len);
        produce(p, t_out, std::string(static_cast<const char*>(m->key), m->key_len), "t" + v);
        next[{m->partition, t_in}] = m->offset + 1;
        ++moved;
      }
      rd_kafka_message_destroy(m);
    }
    if (moved != kN) die("ctp: consumed " + std::to_string(moved) + " of " + std::to_string(kN));
    rd_kafka_topic_partition_list_t* offs = rd_kafka_topic_partition_list_new(next.size());
    for (const auto& [tp, off] : next) {
      rd_kafka_topic_partition_list_add(offs, tp.second.c_str(), tp.first)->offset = off;
    }
    rd_kafka_consumer_group_metadata_t* md = rd_kafka_consumer_group_metadata(c);
    check(rd_kafka_send_offsets_to_transaction(p, offs, md, 30000), "send_offsets_to_transaction");
    rd_kafka_consumer_group_metadata_destroy(md);
    check(rd_kafka_commit_transaction(p, 30000), "commit_transaction (ctp)");
    // The group's committed offsets are the transaction's.
    check(rd_kafka_committed(c, offs, 10000), "committed");
    for (int i = 0; i < offs->cnt; ++i) {
      int64_t want = next[{offs->elems[i].partition, t_in}];
      if (offs->elems[i].offset != want) {
        die("ctp: committed offset of partition " + std::to_string(offs->elems[i].partition) +
            " is " + std::to_string(offs->elems[i].offset) + ", expected " + std::to_string(want));
      }
    }
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    rd_kafka_t* r = subscribed(bootstrap, "outpost-check-out-" + sfx, t_out, true);
    auto seen = consume(r, kN, 30);
    rd_kafka_consumer_close(r);
    rd_kafka_destroy(r);
    if (seen.size() != static_cast<size_t>(kN)) {
      die("ctp: output has " + num(seen.size()) + " of " + num(kN));
    }
  }
  rd_kafka_destroy(p);
  pass("consume-transform-produce: outputs and the group's offsets committed in one transaction");

  // (3) Consumer group: two members share the partitions; commit; a third resumes after them.
  dr = {0, ""};
  p = makeClient(RD_KAFKA_PRODUCER, bootstrap, {{"enable.idempotence", "true"}}, &dr);
  for (int i = 0; i < kN; ++i) produce(p, t_grp, "dev-" + num(i), "g" + num(i));
  check(rd_kafka_flush(p, 30000), "flush (group)");
  const std::string g = "outpost-check-grp-" + sfx;
  rd_kafka_t* a = subscribed(bootstrap, g, t_grp, false);
  rd_kafka_t* b = subscribed(bootstrap, g, t_grp, false);
  auto end = Clock::now() + std::chrono::seconds(45);
  // The first member may be given all 6 partitions and read before the second joins; the
  // rebalance then hands some to the second, which reads them again (nothing is committed yet):
  // on a loaded machine that made this check fail about half the time. So first wait until the
  // group has settled with both members owning partitions (what either read meanwhile is
  // dropped), then both start their partitions from the beginning and the counting starts.
  auto owned = [](rd_kafka_t* c) {
    rd_kafka_topic_partition_list_t* asg = nullptr;
    check(rd_kafka_assignment(c, &asg), "assignment");
    const int n = asg->cnt;
    rd_kafka_topic_partition_list_destroy(asg);
    return n;
  };
  while (Clock::now() < end) {
    for (rd_kafka_t* c : {a, b}) {
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 100)) rd_kafka_message_destroy(m);
    }
    const int na = owned(a), nb = owned(b);
    if (na > 0 && nb > 0 && na + nb == 6) break;
  }
  for (rd_kafka_t* c : {a, b}) {
    rd_kafka_topic_partition_list_t* asg = nullptr;
    check(rd_kafka_assignment(c, &asg), "assignment");
    for (int i = 0; i < asg->cnt; ++i) asg->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
    if (rd_kafka_error_t* e = rd_kafka_seek_partitions(c, asg, 10000)) {
      const std::string why = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      die("group: seek to the beginning: " + why);
    }
    for (int i = 0; i < asg->cnt; ++i) {
      if (asg->elems[i].err) {
        die("group: seek partition " + std::to_string(asg->elems[i].partition) + ": " +
            rd_kafka_err2str(asg->elems[i].err));
      }
    }
    rd_kafka_topic_partition_list_destroy(asg);
  }
  std::map<std::string, int> seen;
  std::set<int32_t> parts_a, parts_b;
  size_t total = 0;
  while ((total < static_cast<size_t>(kN) || parts_a.empty() || parts_b.empty()) &&
         Clock::now() < end) {
    for (auto [c, parts] : {std::pair{a, &parts_a}, std::pair{b, &parts_b}}) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(c, 100);
      if (!m) continue;
      if (!m->err) {
        ++seen[std::string(static_cast<const char*>(m->payload), m->len)];
        ++total;
        parts->insert(m->partition);
      }
      rd_kafka_message_destroy(m);
    }
  }
  for (auto* c : {a, b}) {
    rd_kafka_topic_partition_list_t* asg = nullptr;
    check(rd_kafka_assignment(c, &asg), "assignment");
    if (asg->cnt == 0) die("group: a member has no partition (both must share the 6)");
    rd_kafka_topic_partition_list_destroy(asg);
  }
  // Both members read, and no message went to both (each partition has one owner).
  if (parts_a.empty() || parts_b.empty()) die("group: one member read nothing");
  for (int32_t x : parts_a) {
    if (parts_b.count(x)) die("group: partition " + std::to_string(x) + " read by both members");
  }
  if (seen.size() != static_cast<size_t>(kN) || total != static_cast<size_t>(kN)) {
    die("group: read " + std::to_string(total) + " (" + std::to_string(seen.size()) +
        " distinct) of " + std::to_string(kN));
  }
  for (auto* c : {a, b}) {
    rd_kafka_resp_err_t e = rd_kafka_commit(c, nullptr, 0);
    if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET) check(e, "commit");
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
  }
  for (int i = 0; i < 10; ++i) produce(p, t_grp, "dev-late", "late" + std::to_string(i));
  check(rd_kafka_flush(p, 30000), "flush (late)");
  rd_kafka_destroy(p);
  rd_kafka_t* late = subscribed(bootstrap, g, t_grp, false);
  // One more than the 10 new: none of the old comes again, for 3 s or until it has fetched
  // every partition to its end.
  const auto grp_ends = endOffsets(late, t_grp, 6);
  auto after = consume(late, 11, 3, &grp_ends);
  rd_kafka_consumer_close(late);
  rd_kafka_destroy(late);
  if (after.size() != 10) {
    die("group: a new member read " + num(after.size()) +
        " messages after the commit, expected the 10 new ones");
  }
  for (const auto& [v, n] : after) {
    if (v.rfind("late", 0) != 0) die("group: committed message " + v + " read again");
  }
  pass("consumer group: 2 members split 6 partitions, commits, a new member resumes after them");
  return 0;
}

// --- group-offsets -------------------------------------------------------------------------------

int groupOffsets(const std::string& bootstrap, const std::string& group, const std::string& topic) {
  if (group.empty()) die("group-offsets: --group GROUP is required");
  rd_kafka_t* rk = makeClient(RD_KAFKA_CONSUMER, bootstrap,
                              {{"group.id", group},
                               {"enable.auto.commit", "false"},
                               {"isolation.level", "read_uncommitted"}});
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  check(rd_kafka_metadata(rk, 0, t, &md, 10000), "metadata of " + topic);
  if (md->topic_cnt != 1 || md->topics[0].err) {
    die("topic " + topic + ": " +
        (md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not in the metadata"));
  }
  int n = md->topics[0].partition_cnt;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(n);
  for (int p = 0; p < n; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  check(rd_kafka_committed(rk, list, 10000), "committed offsets of group " + group);
  int64_t total = 0;
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err) check(tp.err, "committed offset of " + topic + " [" + num(tp.partition) + "]");
    int64_t lo = 0, hi = 0;
    check(rd_kafka_query_watermark_offsets(rk, topic.c_str(), tp.partition, &lo, &hi, 10000),
          "end offset of " + topic + " [" + num(tp.partition) + "]");
    int64_t committed = tp.offset >= 0 ? tp.offset : 0;
    int64_t lag = hi > committed ? hi - committed : 0;
    total += lag;
    std::printf("%d %lld %lld %lld\n", static_cast<int>(tp.partition),
                static_cast<long long>(committed), static_cast<long long>(hi),
                static_cast<long long>(lag));
  }
  std::printf("total %lld\n", static_cast<long long>(total));
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy(rk);
  return 0;
}

void usage() {
  std::fputs(
      "usage: outpost-kafka-tool create-topics --bootstrap HOST:PORT [--partitions N] "
      "[--replication-factor N]\n"
      "                          [--min-insync-replicas N] NAME[:compact]...\n"
      "       outpost-kafka-tool check --bootstrap HOST:PORT\n"
      "       outpost-kafka-tool group-offsets --bootstrap HOST:PORT --group GROUP TOPIC\n"
      "Creates topics (retention 7 days, dead letters 14; :compact = a compacted state topic) or\n"
      "checks idempotent production, transactions and consumer groups against a real broker, or\n"
      "prints a consumer group's committed offsets, end offsets and lag per partition of TOPIC.\n",
      stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1], bootstrap, group;
  int partitions = 6, replication = 1, min_insync = 0;
  std::vector<std::string> names;
  // A count option's value: an integer in [lo, hi], or a clear error naming the option.
  auto count = [&](const std::string& opt, const std::string& v, long lo, long hi) {
    char* end = nullptr;
    long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || n < lo || n > hi) {
      die(opt + " '" + v + "': allowed is " + std::to_string(lo) + "-" + std::to_string(hi));
    }
    return static_cast<int>(n);
  };
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--bootstrap" && i + 1 < argc) {
      bootstrap = argv[++i];
    } else if (a == "--group" && i + 1 < argc) {
      group = argv[++i];
    } else if (a == "--partitions" && i + 1 < argc) {
      std::string v = argv[++i];
      char* end = nullptr;
      long n = std::strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || n < 1 || n > 1000) {
        die("--partitions '" + v + "': allowed is 1-1000");
      }
      partitions = static_cast<int>(n);
    } else if (a == "--replication-factor" && i + 1 < argc) {
      replication = count(a, argv[++i], 1, 9);
    } else if (a == "--min-insync-replicas" && i + 1 < argc) {
      min_insync = count(a, argv[++i], 1, 9);
    } else if (a.rfind("--", 0) == 0) {
      die("unknown option '" + a + "' (see --help)");
    } else {
      names.push_back(a);
    }
  }
  if (bootstrap.empty()) die("--bootstrap HOST:PORT is required");
  if (cmd == "create-topics") {
    if (names.empty()) die("create-topics: name at least one topic");
    if (min_insync > replication) {
      die("--min-insync-replicas " + std::to_string(min_insync) + ": allowed is at most the " +
          "replication factor (" + std::to_string(replication) + ")");
    }
    return createTopics(bootstrap, partitions, replication, min_insync, names);
  }
  if (cmd == "check") return checkBroker(bootstrap);
  if (cmd == "group-offsets") {
    if (names.size() != 1) die("group-offsets: name exactly one topic");
    return groupOffsets(bootstrap, group, names[0]);
  }
  die("unknown command '" + cmd + "': allowed are create-topics, check, group-offsets");
}

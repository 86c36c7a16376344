// kafka.cc without a real broker (the last case uses librdkafka's in-process mock cluster): the bookkeeping of start-up recovery (RecoveryScan), and the
// librdkafka producer's QUEUE_FULL back-pressure and delivery reports against a closed port.

#include "outpost/aggregator/kafka.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "support/temp_dir.h"

namespace agg = outpost::aggregator;
namespace metrics = outpost::metrics;
using agg::BatchKey;
using agg::RecoveryScan;
using agg::TopicPartition;

namespace {

std::unique_ptr<agg::DedupStore> openStore(const outpost::testing::TempDir& dir) {
  auto store = agg::DedupStore::open(dir.file("dedup.db"));
  if (!store) FAIL("DedupStore::open: " << store.error().toString());
  return std::move(*store);
}

const TopicPartition kReadings0{"outpost.readings", 0};
const TopicPartition kReadings1{"outpost.readings", 1};

}  // namespace

TEST_CASE("RecoveryScan: where to start reading a partition", "[aggregator][kafka]") {
  uint64_t lost = 0;
  SECTION("no checkpoint: the last max_messages, never below the low watermark") {
    CHECK(RecoveryScan::startOffset(0, 100, nullptr, 10, lost) == 90);
    CHECK(RecoveryScan::startOffset(95, 100, nullptr, 10, lost) == 95);
    CHECK(RecoveryScan::startOffset(0, 0, nullptr, 10, lost) == -1);  // empty partition
    CHECK(lost == 0);
  }
  SECTION("after the checkpoint, however far back (max_messages does not apply)") {
    const int64_t cp = 41;
    CHECK(RecoveryScan::startOffset(0, 100, &cp, 10, lost) == 42);
    CHECK(lost == 0);
  }
  SECTION("nothing after the checkpoint") {
    const int64_t cp = 99;
    CHECK(RecoveryScan::startOffset(0, 100, &cp, 10, lost) == -1);
  }
  SECTION("retention removed messages after the checkpoint: counted as lost") {
    const int64_t cp = 9;
    CHECK(RecoveryScan::startOffset(50, 100, &cp, 10, lost) == 50);
    CHECK(lost == 40);  // offsets 10..49
    CHECK(RecoveryScan::startOffset(50, 100, &cp, 10, lost) == 50);
    CHECK(lost == 80);  // adds up over partitions
  }
}

TEST_CASE("RecoveryScan: complete batches are marked done and incomplete ones hold the checkpoint",
          "[aggregator][kafka]") {
  outpost::testing::TempDir dir("outpost-recovery-test");
  auto store = openStore(dir);
  RecoveryScan scan;
  // Partition 0: batch 1 in two parts (10, 11), an ops event without headers (12), part 1 of 2 of
  // batch 2 (13; part 2 never made it), batch 3 in one message without part headers (14).
  scan.add(kReadings0, 10, "dev-a", "1", "1", "1", "2");
  scan.add(kReadings0, 11, "dev-a", "1", "1", "2", "2");
  scan.add(kReadings0, 12, "", "", "", "", "");
  scan.add(kReadings0, 13, "dev-a", "1", "2", "1", "2");
  scan.add(kReadings0, 14, "dev-b", "3", "3", "", "");
  // Partition 1: one complete batch and a message whose headers do not parse.
  scan.add(kReadings1, 5, "dev-c", "1", "9", "1", "1");
  scan.add(kReadings1, 6, "dev-c", "x", "10", "1", "1");

  const auto out = scan.apply(*store);
  CHECK(out.scanned == 7);
  CHECK(out.recovered == 3);
  CHECK(out.partial == 1);
  CHECK(store->isDone(BatchKey{"dev-a", 1, 1}));
  CHECK_FALSE(store->isDone(BatchKey{"dev-a", 1, 2}));
  CHECK(store->isDone(BatchKey{"dev-b", 3, 3}));
  CHECK(store->isDone(BatchKey{"dev-c", 1, 9}));
  const auto cps = store->checkpoints();
  // Not past the first message of the incomplete batch (13), so a resend of it is produced again
  // and the next recovery reads it again.
  CHECK(cps.at(kReadings0) == 12);
  CHECK(cps.at(kReadings1) == 6);  // the end of what was scanned
}

TEST_CASE("RecoveryScan: parts may arrive in any order and twice", "[aggregator][kafka]") {
  outpost::testing::TempDir dir("outpost-recovery-test");
  auto store = openStore(dir);
  RecoveryScan scan;
  scan.add(kReadings0, 20, "dev-a", "2", "5", "3", "3");
  scan.add(kReadings0, 21, "dev-a", "2", "5", "1", "3");
  scan.add(kReadings0, 22, "dev-a", "2", "5", "1", "3");  // a retried part: still 2 of 3
  auto out = scan.apply(*store);
  CHECK(out.recovered == 0);
  CHECK(out.partial == 1);
  CHECK(store->checkpoints().at(kReadings0) == 19);
  scan.add(kReadings0, 23, "dev-a", "2", "5", "2", "3");
  out = scan.apply(*store);
  CHECK(out.recovered == 1);
  CHECK(store->isDone(BatchKey{"dev-a", 2, 5}));
  CHECK(store->checkpoints().at(kReadings0) == 23);
}

namespace {

// Waits for one report.
class OneReport final : public agg::DeliveryListener {
 public:
  void onDelivery(const agg::Delivery& d) override {
    std::lock_guard lock(mu_);
    ++count_;
    last_ = d;
    cv_.notify_all();
  }
  bool wait(std::chrono::seconds bound) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return count_ > 0; });
  }
  int count() {
    std::lock_guard lock(mu_);
    return count_;
  }
  agg::Delivery last() {
    std::lock_guard lock(mu_);
    return last_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0;
  agg::Delivery last_;
};

agg::KafkaOptions unreachable(int message_timeout_ms) {
  agg::KafkaOptions o;
  o.bootstrap_servers = "127.0.0.1:1";  // nothing listens: every message waits, then times out
  o.message_timeout_ms = message_timeout_ms;
  o.queue_max_messages = 1;
  o.linger_ms = 0;
  return o;
}

}  // namespace

TEST_CASE("KafkaProducer: the message's listener gets its one report", "[aggregator][kafka]") {
  metrics::Registry registry;
  OneReport report;  // outlives the producer
  auto producer = agg::KafkaProducer::create(unreachable(200), registry);
  REQUIRE(producer);
  REQUIRE((*producer)->produce("t", "k", "v", {{"h", "1"}}, &report));
  REQUIRE(report.wait(std::chrono::seconds(30)));  // message.timeout.ms: a failed report
  CHECK_FALSE(report.last().ok);
  CHECK_FALSE(report.last().error.empty());
  CHECK(report.last().topic == "t");
  CHECK(registry.counter("outpost_aggregator_kafka_messages_failed_total", "").value() == 1);
  // Without a listener nothing is reported (ops events that only count failures use one).
  REQUIRE((*producer)->produce("t", "k", "v", {}, nullptr));
  (*producer)->stop(5000);
  CHECK(report.count() == 1);
}

TEST_CASE("KafkaProducer: a full queue pauses the producing thread instead of dropping",
          "[aggregator][kafka]") {
  metrics::Registry registry;
  OneReport first;  // outlives the producer
  auto created = agg::KafkaProducer::create(unreachable(600000), registry);
  REQUIRE(created);
  agg::KafkaProducer& producer = **created;
  auto& paused = registry.gauge("outpost_aggregator_intake_paused", "");
  auto& queue_full = registry.counter("outpost_aggregator_kafka_queue_full_total", "");
  REQUIRE(producer.produce("t", "k", "1", {}, &first));  // fills the queue (1 message)

  std::atomic<bool> returned{false};
  outpost::Status second_status;
  std::thread worker([&] {
    second_status = producer.produce("t", "k", "2", {}, nullptr);
    returned = true;
  });
  for (int i = 0; i < 2000 && paused.value() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(paused.value() == 1);
  CHECK(queue_full.value() == 1);  // counted once per pause, not per retry
  CHECK_FALSE(returned.load());
  // rd_kafka_outq_len also counts events not yet served (e.g. the connection error): at least 1.
  CHECK(producer.outstanding() >= 1);

  // Stopping releases the waiting producer with an error: nothing is silently dropped.
  producer.stop(0);
  worker.join();
  CHECK_FALSE(second_status.has_value());
  CHECK(paused.value() == 0);
  CHECK(first.count() == 0);  // still undelivered: no report, so its batch would not be acked
}

// Issue 16 regression (torture net-agg-kafka, seed 1617): with a finite message.timeout.ms, a
// Kafka-link outage timed out messages the broker had already written; their batches were not
// acked, the agents resent them and they were on Kafka twice. The default is now 0 (never time out:
// the idempotent producer retries, intake pauses when the queue fills).
TEST_CASE("KafkaProducer: by default a message waits for the broker instead of failing",
          "[aggregator][kafka]") {
  CHECK(agg::KafkaOptions{}.message_timeout_ms == 0);
  metrics::Registry registry;
  OneReport report;  // outlives the producer
  agg::KafkaOptions o = unreachable(0);
  o.queue_max_messages = 10;
  auto producer = agg::KafkaProducer::create(o, registry);
  REQUIRE(producer);
  REQUIRE((*producer)->produce("t", "k", "v", {}, &report));
  // The same wait in which a 200 ms timeout reports a failure (the test above) brings nothing.
  CHECK_FALSE(report.wait(std::chrono::seconds(2)));
  CHECK(registry.counter("outpost_aggregator_kafka_messages_failed_total", "").value() == 0);
  (*producer)->stop(0);
}

// Start-up recovery against librdkafka's in-process mock cluster whose Metadata answers carry a
// topic-level error. Such an error used to read as "no partitions": the recovery skipped the
// topic and batches on Kafka but not yet acknowledged were produced again when their agents resent
// them (found by the torture scenario realkafka-proxy, docs/reliability.md).
namespace {

struct MockCluster {
  rd_kafka_t* rk = nullptr;
  rd_kafka_mock_cluster_t* mc = nullptr;
  std::string bootstrap;
  MockCluster() {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    REQUIRE(rk);
    mc = rd_kafka_mock_cluster_new(rk, 1);
    REQUIRE(mc);
    bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    REQUIRE(rd_kafka_mock_topic_create(mc, "outpost.readings", 2, 1) == RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  ~MockCluster() {
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
  }
  // One complete batch (dev-a, epoch 1, seq 7) on outpost.readings, as the aggregator writes it.
  void produceBatch() {
    char err[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    REQUIRE(rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err) ==
            RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof err);
    rd_kafka_t* p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    REQUIRE(p);
    const auto e = rd_kafka_producev(
        p, RD_KAFKA_V_TOPIC("outpost.readings"), RD_KAFKA_V_KEY("dev-a", 5),
        RD_KAFKA_V_VALUE(const_cast<char*>("x"), 1), RD_KAFKA_V_HEADER(agg::kHeaderDevice, "dev-a", -1),
        RD_KAFKA_V_HEADER(agg::kHeaderEpoch, "1", -1), RD_KAFKA_V_HEADER(agg::kHeaderSeq, "7", -1),
        RD_KAFKA_V_HEADER(agg::kHeaderPart, "1", -1), RD_KAFKA_V_HEADER(agg::kHeaderParts, "1", -1),
        RD_KAFKA_V_END);
    REQUIRE(e == RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_flush(p, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(p);
  }
};

}  // namespace

TEST_CASE("recoverFromKafka: a topic-level Metadata error is asked again, never read as empty",
          "[aggregator][kafka]") {
  MockCluster cluster;
  cluster.produceBatch();
  outpost::testing::TempDir dir("outpost-recovery-test");
  auto store = openStore(dir);
  agg::KafkaOptions o;
  o.bootstrap_servers = cluster.bootstrap;
  o.client_id = "recovery-test";
  const std::vector<std::string> topics{"outpost.readings"};

  SECTION("a passing LEADER_NOT_AVAILABLE: recovered once it is gone") {
    rd_kafka_mock_topic_set_error(cluster.mc, "outpost.readings",
                                  RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
    std::thread cure([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(800));
      rd_kafka_mock_topic_set_error(cluster.mc, "outpost.readings", RD_KAFKA_RESP_ERR_NO_ERROR);
    });
    auto got = agg::recoverFromKafka(o, topics, *store, 1000, 20000);
    cure.join();
    REQUIRE(got);
    CHECK(*got == 1);
    CHECK(store->isDone(BatchKey{"dev-a", 1, 7}));
  }
  SECTION("a lasting LEADER_NOT_AVAILABLE: an error naming it, not an empty recovery") {
    rd_kafka_mock_topic_set_error(cluster.mc, "outpost.readings",
                                  RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
    auto got = agg::recoverFromKafka(o, topics, *store, 1000, 2500);
    REQUIRE_FALSE(got);
    CHECK_THAT(got.error().message(), Catch::Contains("LEADER_NOT_AVAILABLE"));
    CHECK_FALSE(store->isDone(BatchKey{"dev-a", 1, 7}));
  }
  SECTION("an error that waiting does not cure fails at once") {
    rd_kafka_mock_topic_set_error(cluster.mc, "outpost.readings",
                                  RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    const auto t0 = std::chrono::steady_clock::now();
    auto got = agg::recoverFromKafka(o, topics, *store, 1000, 60000);
    REQUIRE_FALSE(got);
    CHECK_THAT(got.error().message(), Catch::Contains("TOPIC_AUTHORIZATION_FAILED"));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30));  // not the timeout
  }
  SECTION("a topic the store never delivered to may not exist yet: nothing to recover") {
    rd_kafka_mock_topic_set_error(cluster.mc, "outpost.nothing",
                                  RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    auto got = agg::recoverFromKafka(o, {"outpost.readings", "outpost.nothing"}, *store, 1000,
                                     20000);
    REQUIRE(got);
    CHECK(*got == 1);
  }
}

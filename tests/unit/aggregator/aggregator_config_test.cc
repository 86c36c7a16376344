// The aggregator's settings tables (aggregator_config.cc): typed reads and invalid combinations
// rejected with the key names instead of repaired.
#include "outpost/aggregator/aggregator_config.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "outpost/common/config.h"

namespace agg = outpost::aggregator;
namespace config = outpost::config;
using Catch::Matchers::Contains;

namespace {

config::Config load(const std::string& toml) {
  return config::parseToml(toml, agg::aggregatorSchema(), "test.toml");
}

}  // namespace

TEST_CASE("readAggregatorSettings reads every stage's table", "[aggregator][config]") {
  SECTION("defaults") {
    const agg::AggregatorSettings s = agg::readAggregatorSettings(load(""));
    CHECK(s.ingest.mqtt_enabled);
    CHECK(s.ingest.mqtt.client_id == "outpost-aggregator");
    CHECK(s.ingest.mqtt.reconnect_min_ms == 1000);
    CHECK(s.ingest.zmq.listen.empty());
    CHECK(s.ingest.zmq.heartbeat_ms == 1000);
    CHECK(s.pipeline.limits.max_bytes == 4u << 20);
    CHECK(s.pipeline.limits.max_future_skew_us == 86400LL * 1000000);
    CHECK(s.pipeline.readings_format == agg::ReadingsFormat::kBatch);
    CHECK(s.pipeline.kafka.compression == "lz4");
    CHECK(s.pipeline.kafka.queue_max_kbytes == 1048576);
    CHECK(s.pipeline.anomalies.enabled);
    CHECK(s.pipeline.latest.topic == "outpost.latest");
    CHECK(s.ops.devices.offline_after_us == 90LL * 1000000);
    CHECK(s.ops.webhook.backoff_max_ms == 30000);
    CHECK(s.ops.max_stream_clients == 8);
    CHECK(s.metrics_collect);
  }
  SECTION("set values") {
    const agg::AggregatorSettings s = agg::readAggregatorSettings(
        load("[mqtt]\nenabled = false\n[zmq]\nlisten = \"tcp://127.0.0.1:0\"\n[kafka]\n"
             "readings_format = \"reading\"\ncompression = \"zstd\"\n[devices]\noffline_after_s "
             "= 5\n[metrics]\ncollect = false\n"));
    CHECK_FALSE(s.ingest.mqtt_enabled);
    CHECK(s.ingest.zmq.listen == "tcp://127.0.0.1:0");
    CHECK(s.pipeline.readings_format == agg::ReadingsFormat::kReading);
    CHECK(s.pipeline.kafka.compression == "zstd");
    CHECK(s.ops.devices.offline_after_us == 5000000);
    CHECK_FALSE(s.metrics_collect);
    // The split readers give the same values.
    CHECK(agg::aggregatorOptionsFrom(load("[kafka]\nreadings_format = \"reading\"\n"))
              .readings_format == agg::ReadingsFormat::kReading);
    CHECK(agg::opsOptionsFrom(load("[alerts]\nburst = 3\n")).webhook.burst == 3);
  }
  CHECK(std::string(agg::readingsFormatNames().name(agg::ReadingsFormat::kReading)) == "reading");
}

TEST_CASE("invalid combinations are rejected with the key names and not repaired",
          "[aggregator][config]") {
  SECTION("mqtt.reconnect_max_ms below mqtt.reconnect_min_ms") {
    const auto cfg = load("[mqtt]\nreconnect_min_ms = 5000\nreconnect_max_ms = 1000\n");
    CHECK_THROWS_AS(agg::readAggregatorSettings(cfg), config::ConfigError);
    CHECK_THROWS_WITH(agg::readAggregatorSettings(cfg),
                      Contains("mqtt.reconnect_max_ms = 1000") &&
                          Contains("mqtt.reconnect_min_ms = 5000") &&
                          Contains("allowed: mqtt.reconnect_max_ms >= mqtt.reconnect_min_ms"));
  }
  SECTION("alerts.backoff_max_ms below alerts.backoff_min_ms") {
    CHECK_THROWS_WITH(
        agg::readAggregatorSettings(load("[alerts]\nbackoff_min_ms = 800\nbackoff_max_ms = 10\n")),
        Contains("alerts.backoff_max_ms = 10") && Contains("alerts.backoff_min_ms = 800"));
  }
  SECTION("neither MQTT nor ZeroMQ") {
    CHECK_THROWS_WITH(agg::readAggregatorSettings(load("[mqtt]\nenabled = false\n")),
                      Contains("mqtt.enabled = false") && Contains("zmq.listen is empty"));
  }
  SECTION("an unknown readings format names the allowed ones") {
    CHECK_THROWS_WITH(load("[kafka]\nreadings_format = \"row\"\n"),
                      Contains("kafka.readings_format") && Contains("\"batch\", \"reading\""));
  }
}

TEST_CASE("[cluster]: roles, instance id and the ingest role's MQTT defaults",
          "[aggregator][config][cluster]") {
  SECTION("defaults: role all, the host name as instance id") {
    const agg::AggregatorSettings s = agg::readAggregatorSettings(load(""));
    CHECK(s.cluster.role == agg::Role::kAll);
    char host[256] = {};
    REQUIRE(::gethostname(host, sizeof host - 1) == 0);
    CHECK(s.cluster.instance_id == host);
    CHECK(s.cluster.group == "outpost-process");
    CHECK(s.cluster.commit_interval_ms == 100);
    CHECK(s.cluster.batches_topic == "outpost.batches");
    CHECK(s.cluster.state_topic == "outpost.state");
    CHECK(s.ingest.mqtt.shared_group.empty());  // role all: a plain subscription, as before
    CHECK(s.ingest.mqtt.client_id == "outpost-aggregator");
  }
  SECTION("role ingest: the shared group and a client id per instance") {
    const agg::AggregatorSettings s = agg::readAggregatorSettings(
        load("[cluster]\nrole = \"ingest\"\ninstance_id = \"ingest-1\"\n"
             "[kafka]\nbatches_topic = \"b\"\nstate_topic = \"s\"\n"));
    CHECK(s.cluster.role == agg::Role::kIngest);
    CHECK(s.cluster.instance_id == "ingest-1");
    CHECK(s.cluster.batches_topic == "b");
    CHECK(s.cluster.state_topic == "s");
    CHECK(s.ingest.mqtt.shared_group == "outpost-ingest");
    CHECK(s.ingest.mqtt.client_id == "outpost-ingest-ingest-1");
  }
  SECTION("role ingest keeps what is set") {
    const agg::AggregatorSettings s = agg::readAggregatorSettings(
        load("[cluster]\nrole = \"ingest\"\n[mqtt]\nshared_group = \"g1\"\nclient_id = \"c\"\n"));
    CHECK(s.ingest.mqtt.shared_group == "g1");
    CHECK(s.ingest.mqtt.client_id == "c");
  }
  SECTION("role all with a shared group") {
    CHECK(agg::readAggregatorSettings(load("[mqtt]\nshared_group = \"g\"\n"))
              .ingest.mqtt.shared_group == "g");
  }
  CHECK(std::string(agg::roleNames().name(agg::Role::kProcess)) == "process");
}

TEST_CASE("[cluster]: bad values name the key and what is allowed",
          "[aggregator][config][cluster]") {
  SECTION("an unknown role") {
    CHECK_THROWS_AS(load("[cluster]\nrole = \"worker\"\n"), config::ConfigError);
    CHECK_THROWS_WITH(load("[cluster]\nrole = \"worker\"\n"),
                      Contains("cluster.role") && Contains("worker") &&
                          Contains("\"all\", \"ingest\", \"process\""));
  }
  SECTION("role process needs no ingest, and its commit interval is below the transaction "
          "timeout") {
    const auto s = agg::readAggregatorSettings(
        load("[cluster]\nrole = \"process\"\ninstance_id = \"p1\"\n[mqtt]\nenabled = false\n"));
    CHECK(s.cluster.role == agg::Role::kProcess);
    CHECK(s.cluster.session_timeout_ms == 10000);
    CHECK(s.cluster.transaction_timeout_ms == 10000);
    CHECK_THROWS_WITH(
        agg::readAggregatorSettings(load("[cluster]\nrole = \"process\"\ncommit_interval_ms = "
                                         "5000\ntransaction_timeout_ms = 5000\n")),
        Contains("cluster.commit_interval_ms") && Contains("cluster.transaction_timeout_ms"));
  }
  SECTION("an instance id Kafka would not take") {
    for (const char* bad : {"has space", "a/b", "ünïcode", "x:y"}) {
      INFO(bad);
      const auto cfg = load(std::string("[cluster]\ninstance_id = \"") + bad + "\"\n");
      CHECK_THROWS_AS(agg::readAggregatorSettings(cfg), config::ConfigError);
      CHECK_THROWS_WITH(agg::readAggregatorSettings(cfg),
                        Contains("cluster.instance_id = \"" + std::string(bad) + "\"") &&
                            Contains("letters, digits, '.', '_', '-'"));
    }
    CHECK_THROWS_WITH(agg::readAggregatorSettings(load("[cluster]\ninstance_id = \"" +
                                                       std::string(250, 'a') + "\"\n")),
                      Contains("cluster.instance_id") && Contains("1 to 249 characters"));
    CHECK(agg::isValidInstanceId("proc-1.eu_west"));
    CHECK(agg::isValidInstanceId(std::string(249, 'a')));
    CHECK_FALSE(agg::isValidInstanceId(""));
  }
  SECTION("a shared group MQTT does not allow") {
    CHECK_THROWS_WITH(agg::readAggregatorSettings(load("[mqtt]\nshared_group = \"a/b\"\n")),
                      Contains("mqtt.shared_group = \"a/b\"") && Contains("'/', '+' or '#'"));
    CHECK_THROWS_AS(agg::readAggregatorSettings(load("[mqtt]\nshared_group = \"a+\"\n")),
                    config::ConfigError);
  }
  SECTION("commit interval out of range") {
    CHECK_THROWS_WITH(load("[cluster]\ncommit_interval_ms = 5\n"),
                      Contains("cluster.commit_interval_ms"));
  }
  SECTION("role ingest still needs MQTT or ZeroMQ") {
    CHECK_THROWS_WITH(
        agg::readAggregatorSettings(load("[cluster]\nrole = \"ingest\"\n[mqtt]\nenabled = false\n")),
        Contains("zmq.listen is empty"));
  }
}

// The aggregator's settings tables (aggregator_config.cc): typed reads and invalid combinations
// rejected with the key names instead of repaired.
#include "outpost/aggregator/aggregator_config.h"

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

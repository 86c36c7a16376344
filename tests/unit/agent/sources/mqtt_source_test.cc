#include "outpost/agent/mqtt_source.h"


#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "support/mosquitto.h"
#include "support/mqtt_publisher.h"
#include "support/wait_for.h"

using namespace outpost;
using namespace outpost::agent;
using namespace std::chrono_literals;

using outpost::testing::waitFor;

namespace {

constexpr int64_t k2024 = 1714564800LL * 1000000;

SensorSpec mqttSensor(uint16_t id, const char* name, const char* topic, const char* field = "",
                      const char* ts_field = "") {
  SensorSpec s;
  s.id = id;
  s.name = name;
  s.source = SourceKind::kMqtt;
  s.mqtt_topic = topic;
  s.mqtt_field = field;
  s.mqtt_timestamp_field = ts_field;
  return s;
}

}  // namespace

TEST_CASE("decodeMqttPayload: plain numbers and JSON fields", "[agent][source][mqtt]") {
  double v = 0;
  int64_t ts = 0;
  const int64_t now = k2024 + 1000;
  CHECK(decodeMqttPayload(" 21.5\n", "", "", now, v, ts) == MqttPayloadError::kNone);
  CHECK(v == 21.5);
  CHECK(ts == now);
  CHECK(decodeMqttPayload("warm", "", "", now, v, ts) == MqttPayloadError::kBadPayload);
  CHECK(decodeMqttPayload(R"({"env":{"t":3}})", "env.t", "", now, v, ts) ==
        MqttPayloadError::kNone);
  CHECK(v == 3);
  CHECK(decodeMqttPayload(R"({"t":3,"at":"2024-05-01T12:00:00Z"})", "t", "at", now, v, ts) ==
        MqttPayloadError::kNone);
  CHECK(ts == k2024);
  CHECK(decodeMqttPayload(R"({"t":3})", "h", "", now, v, ts) == MqttPayloadError::kMissingField);
  CHECK(decodeMqttPayload(R"({"t":3)", "t", "", now, v, ts) == MqttPayloadError::kBadPayload);
  CHECK(decodeMqttPayload(R"({"t":"hot"})", "t", "", now, v, ts) == MqttPayloadError::kBadValue);
  CHECK(decodeMqttPayload(R"({"t":3})", "t", "at", now, v, ts) == MqttPayloadError::kBadTimestamp);
  CHECK(decodeMqttPayload(R"({"t":3,"at":1})", "t", "at", now, v, ts) ==
        MqttPayloadError::kBadTimestamp);  // 1970: implausible
}

TEST_CASE("MqttSource subscribes to a real Mosquitto and maps topics to sensors",
          "[agent][source][mqtt]") {
  outpost::testing::MosquittoBroker broker;
  metrics::Registry reg;
  SourcesSpec opt;
  opt.mqtt_broker = broker.uri();
  opt.mqtt_client_id = outpost::testing::clientId("src");
  opt.mqtt_max_payload_bytes = 256;
  std::vector<SensorSpec> specs = {
      mqttSensor(0, "temp", "home/+/env", "temp", "ts"),
      mqttSensor(1, "hum", "home/+/env", "hum"),
      mqttSensor(2, "power", "meter/power"),
  };
  MqttSource src(specs, opt, SystemClock::instance(), &reg);
  REQUIRE(waitFor([&] { return src.subscribed(); }));

  outpost::testing::MqttPublisher pub(broker.uri(), outpost::testing::clientId("pub"));
  auto send = [&](const std::string& topic, const std::string& payload) {
    pub.publish(topic, payload, 1, false);
  };
  send("home/kitchen/env", R"({"temp": 21.5, "hum": 40, "ts": 1714564800000})");
  send("meter/power", "1234.5");
  send("home/attic/env", R"({"temp": "n/a", "hum": 41})");  // temp bad, hum fine
  send("home/attic/env", "not json");                       // both bad
  send("meter/power", std::string(300, '1'));               // too large
  send("meter/power", "77");

  std::vector<wire::Reading> got;
  REQUIRE(waitFor([&] {
    src.poll(SystemClock::instance().nowUs(), got);
    return got.size() >= 5;
  }));
  std::this_thread::sleep_for(100ms);
  src.poll(SystemClock::instance().nowUs(), got);
  REQUIRE(got.size() == 5);
  CHECK(got[0].sensor() == 0);
  CHECK(got[0].value() == 21.5);
  CHECK(got[0].ts_us() == k2024);
  CHECK(got[1].sensor() == 1);
  CHECK(got[1].value() == 40);
  CHECK(got[2].sensor() == 2);
  CHECK(got[2].value() == 1234.5);
  CHECK(got[3].sensor() == 1);
  CHECK(got[3].value() == 41);
  CHECK(got[4].value() == 77);
  CHECK(src.errors(MqttPayloadError::kBadValue) == 1);
  CHECK(src.errors(MqttPayloadError::kBadPayload) == 2);
  CHECK(src.errors(MqttPayloadError::kTooLarge) == 1);
  CHECK(reg.render().find("outpost_agent_mqtt_source_messages_total 6") != std::string::npos);

  pub.disconnect();
}

TEST_CASE("MqttSource never blocks Paho: a full queue drops and counts", "[agent][source][mqtt]") {
  outpost::testing::MosquittoBroker broker;
  metrics::Registry reg;
  SourcesSpec opt;
  opt.mqtt_broker = broker.uri();
  opt.mqtt_client_id = outpost::testing::clientId("src");
  opt.queue_chunks = 2;
  MqttSource src({mqttSensor(0, "power", "meter/power")}, opt, SystemClock::instance(), &reg);
  REQUIRE(waitFor([&] { return src.subscribed(); }));
  outpost::testing::MqttPublisher pub(broker.uri(), outpost::testing::clientId("pub"));
  for (int i = 0; i < 20; ++i) {
    const std::string v = std::to_string(i);
    pub.publish("meter/power", v, 1, false);
  }
  REQUIRE(waitFor([&] { return src.dropped() + 2 >= 20; }));
  std::vector<wire::Reading> got;
  src.poll(SystemClock::instance().nowUs(), got);
  CHECK(got.size() == 2);
  CHECK(src.dropped() == 18);
  CHECK(got[0].value() == 0);
  CHECK(reg.render().find("outpost_agent_source_dropped_total{source=\"mqtt\"} 18") !=
        std::string::npos);
  pub.disconnect();
}

TEST_CASE("MqttSource reconnects and resubscribes after the broker restarts",
          "[agent][source][mqtt]") {
  outpost::testing::MosquittoBroker broker;
  SourcesSpec opt;
  opt.mqtt_broker = broker.uri();
  opt.mqtt_client_id = outpost::testing::clientId("src");
  MqttSource src({mqttSensor(0, "power", "meter/power")}, opt, SystemClock::instance(), nullptr);
  REQUIRE(waitFor([&] { return src.subscribed(); }));
  broker.stop();
  REQUIRE(waitFor([&] { return !src.connected(); }));
  REQUIRE(broker.restart());
  // Clean session: the subscription is gone with the old broker; the source must make it again.
  REQUIRE(waitFor([&] { return src.subscribed(); }, 30s));
  outpost::testing::MqttPublisher pub(broker.uri(), outpost::testing::clientId("pub"));
  pub.publish("meter/power", "42", 1, false);
  std::vector<wire::Reading> got;
  REQUIRE(waitFor([&] {
    src.poll(SystemClock::instance().nowUs(), got);
    return !got.empty();
  }));
  CHECK(got[0].value() == 42);
  pub.disconnect();
}

TEST_CASE("MqttSource keeps a persistent session: QoS 1 messages sent while it is down arrive",
          "[agent][source][mqtt]") {
  outpost::testing::MosquittoBroker broker;
  SourcesSpec opt;
  opt.mqtt_broker = broker.uri();
  opt.mqtt_client_id = outpost::testing::clientId("src");
  REQUIRE_FALSE(opt.mqtt_clean_session);  // the default: nothing is lost across an agent restart
  {
    MqttSource src({mqttSensor(0, "power", "meter/power")}, opt, SystemClock::instance(), nullptr);
    REQUIRE(waitFor([&] { return src.subscribed(); }));
  }  // the agent stops: the broker keeps the session and queues QoS 1 messages for it
  outpost::testing::MqttPublisher pub(broker.uri(), outpost::testing::clientId("pub"));
  for (const char* v : {"1", "2", "3"}) pub.publish("meter/power", v, 1, false);

  MqttSource again({mqttSensor(0, "power", "meter/power")}, opt, SystemClock::instance(), nullptr);
  std::vector<wire::Reading> got;
  REQUIRE(waitFor([&] {
    again.poll(SystemClock::instance().nowUs(), got);
    return got.size() >= 3;
  }));
  CHECK(got[0].value() == 1);
  CHECK(got[2].value() == 3);

  // With clean_session = true the queued messages are discarded at connect.
  opt.mqtt_client_id = outpost::testing::clientId("clean");
  opt.mqtt_clean_session = true;
  {
    MqttSource src({mqttSensor(0, "power", "meter/power")}, opt, SystemClock::instance(), nullptr);
    REQUIRE(waitFor([&] { return src.subscribed(); }));
  }
  pub.publish("meter/power", "9", 1, false);
  MqttSource fresh({mqttSensor(0, "power", "meter/power")}, opt, SystemClock::instance(), nullptr);
  REQUIRE(waitFor([&] { return fresh.subscribed(); }));
  pub.publish("meter/power", "10", 1, false);
  std::vector<wire::Reading> fresh_got;
  REQUIRE(waitFor([&] {
    fresh.poll(SystemClock::instance().nowUs(), fresh_got);
    return !fresh_got.empty();
  }));
  CHECK(fresh_got[0].value() == 10);
  pub.disconnect();
}

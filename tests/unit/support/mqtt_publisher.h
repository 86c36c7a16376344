#pragma once

// A test publisher on the agent's own MqttClient (mqtt_client.h, plain MQTT): connects at
// construction and waits for each PUBACK; any failure fails the test (REQUIRE).

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "outpost/agent/mqtt_client.h"

namespace outpost::testing {

class MqttPublisher {
 public:
  MqttPublisher(const std::string& uri, const std::string& client_id) {
    auto c = agent::makePahoClient({uri, client_id, 100}, {});
    REQUIRE(c.has_value());
    client_ = std::move(*c);
    auto st = client_->connect({});
    INFO((st ? std::string() : st.error().message()));
    REQUIRE(st.has_value());
  }
  void publish(const std::string& topic, std::string_view payload, int qos, bool retained) {
    auto st = client_->publish(topic, payload.data(), payload.size(), qos, retained,
                               std::chrono::seconds(10));
    INFO((st ? std::string() : st.error().message()));
    REQUIRE(st.has_value());
  }
  void disconnect() { client_->disconnect(std::chrono::milliseconds(0), std::chrono::seconds(5)); }

 private:
  std::unique_ptr<agent::MqttClient> client_;
};

}  // namespace outpost::testing

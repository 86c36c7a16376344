#pragma once

// `outpost-sim fleet -o local-mqtt`: feeds real agents through their MQTT source (sensors with
// source = "mqtt", agent/src/sources/mqtt_source.cc) as a device's local broker would carry
// them: one message per reading on a topic per device and sensor, QoS 1 by default.
//
//   topic    --local-topic TEMPLATE, {device} and {sensor} replaced (default
//            sensors/{device}/{sensor})
//   payload  json:  {"value":21.53,"ts":1714521600123456}   (the agent's mqtt.field = "value",
//                   mqtt.timestamp_field = "ts"; ts in µs of the device's clock)
//            value: 21.53                                   (the agent stamps the receive time)
//
// Thread-safety: none; the fleet's thread owns it.

#include <memory>
#include <string>

#include "outpost/sim/fleet.h"
#include "outpost/sim/outputs.h"

namespace outpost::sim {

struct LocalMqttOptions {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string client_id = "outpost-sim-local";
  std::string topic_template = "sensors/{device}/{sensor}";
  bool json = true;  // false: the bare value
  int qos = 1;
  int keepalive_s = 30;
};

// Connects (kUnavailable when the broker cannot be reached). finish() waits up to 10 s for the
// broker's PUBACKs of everything published, then disconnects.
Result<std::unique_ptr<StepOutput>> makeLocalMqttOutput(const LocalMqttOptions& o,
                                                        const Fleet& fleet);

}  // namespace outpost::sim

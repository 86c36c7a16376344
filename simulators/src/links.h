#pragma once

// The transport under the virtual agents (mqtt_fleet.cc): a Link is one connection that carries
// the batches of one or more virtual devices and brings back their acks.
//   MQTT    (lite_mqtt.h)  few connections shared by many devices; acks via {prefix}/+/ack
//   ZeroMQ  (zmq_link.cc)  one CURVE-authenticated DEALER socket per device, as the agent's
//                          uplink (common/zmq_protocol.h): "batch" <Batch> / "ack" <Ack>, pings
//
// Thread-safety: none; the fleet's thread owns every Link.

#include <zmq.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "outpost/common/status.h"

namespace outpost::sim {

class Link {
 public:
  // Called from io() with each ack message's bytes (unverified: the caller verifies).
  using OnAck = std::function<void(std::span<const uint8_t>)>;

  virtual ~Link() = default;
  // (Re)connects, dropping any previous connection. MQTT: blocking until CONNACK (and SUBACK on
  // the link that receives acks). ZeroMQ: asynchronous (the handshake completes later).
  virtual Status connect() = 0;
  // Writes what is queued, reads what arrived (if `read`), heartbeats. False when the link is
  // lost (lastError() says why); connect() makes it again.
  virtual bool io(int64_t now_mono_us, bool read) = 0;
  // Queues one message (MQTT: QoS 1 to `topic`; ZeroMQ: a "batch" message, `topic` unused).
  virtual bool publish(const std::string& topic, std::span<const uint8_t> payload,
                       bool retained) = 0;
  // The link cannot take more now (its bound on unacknowledged or unsent messages).
  virtual bool busy() const = 0;
  // What wait() polls (zmq_poll takes both sockets and file descriptors).
  virtual zmq_pollitem_t pollItem() const = 0;
  virtual void disconnect() = 0;
  virtual std::string lastError() const = 0;
};

struct MqttLinkOptions {
  std::string broker, client_id, username, password;
  std::vector<std::string> ack_filters;  // subscribed on connect (none: this link gets no acks)
  int ack_qos = 1;
  int64_t connect_timeout_us = 10'000'000;
};
std::unique_ptr<Link> makeMqttLink(MqttLinkOptions o, Link::OnAck on_ack);

struct ZmqLinkOptions {
  std::string endpoint;                // the aggregator's ROUTER, tcp://host:port
  std::string server_public_key;       // Z85
  std::string public_key, secret_key;  // Z85, this device's pair
  int heartbeat_ms = 1000;             // ping when nothing was sent for this long
  int liveness = 3;                    // heartbeats without any reply before the link is lost
  int sndhwm = 64;                     // messages queued in the socket, at most
};
// `ctx` is a zmq context shared by all links (it must outlive them).
std::unique_ptr<Link> makeZmqLink(void* ctx, ZmqLinkOptions o, Link::OnAck on_ack);

// Deterministic CURVE key pairs for load tests: device `index` of `seed` always gets the same
// pair (`index` -1: the aggregator's). The secret keys are derived from the seed, so they are
// NOT secret: for simulators and tests only, never for real devices.
struct SimKeyPair {
  std::string public_key, secret_key;  // Z85
};
Result<SimKeyPair> simCurveKeyPair(uint64_t seed, int64_t index);

}  // namespace outpost::sim

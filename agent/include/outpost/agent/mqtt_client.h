#pragma once

// The agent's MQTT client: the few operations the uplink and the MQTT source use, over Paho's C
// asynchronous library (MQTTAsync). Behind this interface so that an agent without TLS maps no
// SSL library (issue 17): a plain tcp:// / mqtt:// broker is served by the non-SSL build of Paho
// (libpaho-mqtt3a, linked into the executable); an ssl:// / mqtts:// broker by the TLS module
// outpost-agent-mqtt-tls.so (Paho's SSL build and OpenSSL), loaded with dlopen on first use
// (mqtt_tls_module.h), as the ZeroMQ uplink is.
//
// No call throws. Thread-safety: connect, publish, subscribe, unsubscribe, disconnect and
// connected may be called from any thread; the callbacks run on Paho's threads and must not call
// connect, disconnect or the destructor.

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "outpost/common/mqtt_security.h"
#include "outpost/common/status.h"

namespace outpost::agent {

struct MqttClientOptions {
  std::string broker;     // tcp://, mqtt://, ssl:// or mqtts:// host:port
  std::string client_id;  // non-empty
  // Publishes Paho holds (in flight or queued) before it refuses more: at least the caller's
  // in-flight window. Nothing is queued while disconnected (the outbox is the buffer).
  int max_buffered = 100;
};

struct MqttCallbacks {
  // A message on a subscribed topic (Paho's receive thread); the views die with the call.
  std::function<void(std::string_view topic, std::string_view payload)> on_message;
  // The connection dropped (Paho's thread); `cause` may be empty.
  std::function<void(const std::string& cause)> on_connection_lost;
};

struct MqttWill {
  std::string topic;  // empty: no last will
  std::string payload;
  int qos = 1;
  bool retained = true;
};

struct MqttConnectOptions {
  bool clean_session = true;
  int keepalive_s = 30;
  std::chrono::seconds timeout{10};  // of the TCP/TLS connect and CONNACK
  MqttWill will;
  mqttsec::MqttSecurity security;  // user name, password (never logged), TLS files
};

class MqttClient {
 public:
  virtual ~MqttClient() = default;

  // Connects and waits for the broker's CONNACK (at most options.timeout + 1 s). kUnavailable
  // with Paho's reason on failure.
  virtual Status connect(const MqttConnectOptions& options) = 0;
  virtual bool connected() const = 0;
  // Queues a publish and returns without waiting for the PUBACK (`wait` zero) or waits up to
  // `wait` for it. Fails when disconnected or when max_buffered publishes are outstanding.
  virtual Status publish(const std::string& topic, const void* data, size_t size, int qos,
                         bool retained,
                         std::chrono::milliseconds wait = std::chrono::milliseconds(0)) = 0;
  // Subscribes and waits up to `wait` for the SUBACK; a refused subscription is an error.
  virtual Status subscribe(const std::string& filter, int qos, std::chrono::milliseconds wait) = 0;
  virtual Status unsubscribe(const std::string& filter, std::chrono::milliseconds wait) = 0;
  // Sends DISCONNECT, giving in-flight messages up to `quiesce` to complete, and waits up to
  // `wait` for it to finish.
  virtual void disconnect(std::chrono::milliseconds quiesce, std::chrono::milliseconds wait) = 0;
};

// A client for options.broker: the built-in non-SSL client for tcp:// and mqtt://; for ssl:// and
// mqtts:// (`tls` true) the client of the TLS module, loaded on first use. Fails with
// kInvalidArgument for a URI Paho does not accept, kNotFound when the TLS module is missing.
// The callbacks must outlive the client.
Result<std::unique_ptr<MqttClient>> makeMqttClient(const MqttClientOptions& options, bool tls,
                                                   MqttCallbacks callbacks);

// The Paho C client of this binary (the executable: non-SSL Paho; the TLS module: SSL Paho).
Result<std::unique_ptr<MqttClient>> makePahoClient(const MqttClientOptions& options,
                                                   MqttCallbacks callbacks);

}  // namespace outpost::agent

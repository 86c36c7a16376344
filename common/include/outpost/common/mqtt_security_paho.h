#pragma once

// Applies mqttsec::MqttSecurity to Paho C++ connect options. Header-only: include it only in
// targets that link Paho (the agent's uplink, the aggregator's ingest).

#include <mqtt/connect_options.h>

#include "outpost/common/mqtt_security.h"

namespace outpost::mqttsec {

inline void apply(const MqttSecurity& s, mqtt::connect_options_builder& builder) {
  if (!s.username.empty()) builder.user_name(s.username);
  if (!s.password.empty()) builder.password(s.password);
  if (!s.tls) return;
  mqtt::ssl_options ssl;
  if (!s.ca_file.empty()) ssl.set_trust_store(s.ca_file);
  if (!s.cert_file.empty()) ssl.set_key_store(s.cert_file);
  if (!s.key_file.empty()) ssl.set_private_key(s.key_file);
  ssl.set_enable_server_cert_auth(s.verify);
  ssl.set_verify(s.verify);  // host name check
  ssl.set_ssl_version(MQTT_SSL_VERSION_TLS_1_2);
  builder.ssl(std::move(ssl));
}

}  // namespace outpost::mqttsec

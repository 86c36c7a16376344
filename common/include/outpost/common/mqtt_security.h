#pragma once

// MQTT transport security shared by the agent's uplink and the aggregator's ingest: TLS to the
// broker (server certificate verification on by default, TLS 1.2 minimum), user name and
// password (from a file, never logged), client certificates. Both programs declare the same
// settings under their own prefix ("uplink.mqtt." / "mqtt.").

#include <string>

#include "outpost/common/config.h"
#include "outpost/common/status.h"

namespace outpost::mqttsec {

struct MqttSecurity {
  bool tls = false;       // the broker URI is ssl:// (or mqtts://)
  std::string ca_file;    // PEM CA bundle; empty: the system's trust store
  std::string cert_file;  // client certificate (PEM); empty: none
  std::string key_file;   // client private key (PEM, mode 0600)
  bool verify = true;     // verify the broker's certificate chain and host name
  std::string username;
  std::string password;  // never logged
};

// Declares <prefix>ca_file, cert_file, key_file, verify, password_file (the caller declares
// broker, username and password).
void addSettings(config::Schema& schema, const std::string& prefix);

// Reads and checks the settings under `prefix` for a broker URI: files exist, private key and
// password files are not readable by group/other, cert and key come together, TLS options are
// only given with an ssl:// broker, password and password_file are not both set.
Result<MqttSecurity> load(const config::Config& cfg, const std::string& prefix,
                          const std::string& broker);

}  // namespace outpost::mqttsec

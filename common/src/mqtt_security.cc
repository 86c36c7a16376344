#include "outpost/common/mqtt_security.h"

#include <filesystem>

#include "outpost/common/secrets.h"

namespace outpost::mqttsec {

void addSettings(config::Schema& s, const std::string& p) {
  s.string(p + "password_file", "",
           "File holding the MQTT password (mode 0600; preferred over password); never logged")
      .string(p + "ca_file", "",
              "TLS (ssl:// broker): PEM file of the CA(s) that signed the broker's certificate; "
              "empty: the system trust store")
      .string(p + "cert_file", "", "TLS: client certificate (PEM); needs key_file")
      .string(p + "key_file", "", "TLS: client private key (PEM, mode 0600 or stricter)")
      .boolean(p + "verify", true,
               "TLS: verify the broker's certificate and host name (keep true outside tests)");
}

Result<MqttSecurity> load(const config::Config& cfg, const std::string& p,
                          const std::string& broker) {
  MqttSecurity s;
  s.tls = broker.starts_with("ssl://") || broker.starts_with("mqtts://");
  s.ca_file = cfg.getString(p + "ca_file");
  s.cert_file = cfg.getString(p + "cert_file");
  s.key_file = cfg.getString(p + "key_file");
  s.verify = cfg.getBool(p + "verify");
  s.username = cfg.getString(p + "username");
  const std::string& password_file = cfg.getString(p + "password_file");
  const std::string& inline_password = cfg.getString(p + "password");
  auto bad = [&](const std::string& msg) { return fail(ErrorCode::kInvalidArgument, msg); };
  if (!password_file.empty() && !inline_password.empty()) {
    return bad(p + "password and " + p + "password_file are both set; set only one");
  }
  if (!password_file.empty()) {
    auto pw = secrets::readSecretFile(password_file, p + "password_file");
    if (!pw) return std::unexpected(pw.error());
    s.password = std::move(*pw);
  } else {
    s.password = inline_password;
  }
  if (!s.password.empty() && s.username.empty()) {
    return bad(p +
               "username is empty but a password is set; MQTT sends a password only with a "
               "user name");
  }
  if (!s.tls) {
    if (!s.ca_file.empty() || !s.cert_file.empty() || !s.key_file.empty()) {
      return bad(p + "ca_file/cert_file/key_file are set but " + p + "broker = \"" + broker +
                 "\" is not TLS; use ssl://host:port");
    }
    return s;
  }
  if (s.cert_file.empty() != s.key_file.empty()) {
    return bad(p + "cert_file and " + p + "key_file go together; set both or neither");
  }
  for (const auto& [key, path] :
       {std::pair{p + "ca_file", s.ca_file}, {p + "cert_file", s.cert_file}}) {
    std::error_code ec;
    if (!path.empty() && !std::filesystem::is_regular_file(path, ec)) {
      return bad(key + " = \"" + path + "\": no such file");
    }
  }
  if (!s.key_file.empty()) {
    if (auto st = secrets::checkPrivateFile(s.key_file, p + "key_file"); !st) {
      return std::unexpected(st.error());
    }
  }
  return s;
}

}  // namespace outpost::mqttsec

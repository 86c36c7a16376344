#include "outpost/common/secrets.h"

#include <sys/stat.h>

#include <fstream>

#include <catch2/catch.hpp>

#include "outpost/common/config.h"
#include "outpost/common/mqtt_security.h"
#include "support/temp_dir.h"

namespace secrets = outpost::secrets;
using outpost::testing::TempDir;

namespace {

void writeFile(const std::string& path, const std::string& text, mode_t mode) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

// Two fixed, valid Z85 public keys (from zmq_curve_keypair).
std::string keyA() {
  static const std::string k = secrets::generateCurveKeyPair().value().public_key;
  return k;
}
std::string keyB() {
  static const std::string k = secrets::generateCurveKeyPair().value().public_key;
  return k;
}

}  // namespace

TEST_CASE("secret files with group/other permissions are refused", "[common][secrets]") {
  TempDir dir;
  const std::string path = dir.file("pass");
  SECTION("0600 is read, trailing newline removed") {
    writeFile(path, "s3cret\n", 0600);
    auto pw = secrets::readSecretFile(path, "x.password_file");
    REQUIRE(pw);
    CHECK(*pw == "s3cret");
  }
  SECTION("0400 is fine too") {
    writeFile(path, "s3cret", 0400);
    CHECK(secrets::readSecretFile(path, "x.password_file"));
  }
  for (mode_t mode : {0640, 0604, 0644, 0660, 0666, 0610}) {
    DYNAMIC_SECTION("mode " << std::oct << mode) {
      writeFile(path, "s3cret", mode);
      auto pw = secrets::readSecretFile(path, "x.password_file");
      REQUIRE_FALSE(pw);
      const std::string msg = pw.error().message();
      CHECK(msg.find("x.password_file") != std::string::npos);
      CHECK(msg.find("chmod 600 " + path) != std::string::npos);
      CHECK(msg.find("s3cret") == std::string::npos);  // never the secret itself
    }
  }
  SECTION("missing, empty, or not a regular file") {
    CHECK_FALSE(secrets::readSecretFile(dir.file("none"), "k"));
    writeFile(path, "\n", 0600);
    CHECK_FALSE(secrets::readSecretFile(path, "k"));
    CHECK_FALSE(secrets::checkPrivateFile(dir.path().string(), "k"));
  }
}

TEST_CASE("writePrivateFile makes 0600 files and never overwrites", "[common][secrets]") {
  TempDir dir;
  const std::string path = dir.file("k");
  REQUIRE(secrets::writePrivateFile(path, "abc"));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(secrets::writePrivateFile(path, "def"));
}

TEST_CASE("CURVE key pair files round-trip and are checked", "[common][secrets]") {
  TempDir dir;
  auto pair = secrets::generateCurveKeyPair();
  REQUIRE(pair);
  CHECK(secrets::isZ85Key(pair->public_key));
  CHECK(secrets::isZ85Key(pair->secret_key));
  CHECK(pair->public_key != pair->secret_key);
  const std::string path = dir.file("dev.key");
  REQUIRE(secrets::writePrivateFile(path, secrets::formatKeyPairFile(*pair, "test")));

  SECTION("loads back") {
    auto loaded = secrets::loadKeyPairFile(path, "uplink.zmq.key_file");
    REQUIRE(loaded);
    CHECK(loaded->public_key == pair->public_key);
    CHECK(loaded->secret_key == pair->secret_key);
    auto pub = secrets::loadPublicKeyFile(path, "p");
    REQUIRE(pub);
    CHECK(*pub == pair->public_key);
  }
  SECTION("a key pair file readable by others is refused") {
    REQUIRE(::chmod(path.c_str(), 0644) == 0);
    auto loaded = secrets::loadKeyPairFile(path, "uplink.zmq.key_file");
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error().message().find("mode 0644") != std::string::npos);
  }
  SECTION("a public key that does not belong to the secret key is refused") {
    auto other = secrets::generateCurveKeyPair().value();
    writeFile(path, secrets::formatKeyPairFile({other.public_key, pair->secret_key}, "x"), 0600);
    auto loaded = secrets::loadKeyPairFile(path, "k");
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error().message().find("does not belong") != std::string::npos);
  }
  SECTION("missing or malformed keys") {
    writeFile(path, "public_key = \"" + pair->public_key + "\"\n", 0600);
    CHECK_FALSE(secrets::loadKeyPairFile(path, "k"));
    writeFile(path, "public_key = \"short\"\nsecret_key = \"" + pair->secret_key + "\"\n", 0600);
    CHECK_FALSE(secrets::loadKeyPairFile(path, "k"));
    writeFile(path, "this is not toml [", 0600);
    CHECK_FALSE(secrets::loadKeyPairFile(path, "k"));
  }
}

TEST_CASE("Z85 key validation", "[common][secrets]") {
  CHECK(secrets::isZ85Key(keyA()));
  CHECK_FALSE(secrets::isZ85Key(""));
  CHECK_FALSE(secrets::isZ85Key(keyA().substr(0, 39)));
  CHECK_FALSE(secrets::isZ85Key(keyA() + "0"));
  std::string bad = keyA();
  bad[7] = ' ';  // not in the Z85 alphabet
  CHECK_FALSE(secrets::isZ85Key(bad));
  bad[7] = '"';
  CHECK_FALSE(secrets::isZ85Key(bad));
}

TEST_CASE("allow-list parsing", "[common][secrets]") {
  SECTION("keys map to devices; a device may have two keys") {
    auto list = secrets::parseAllowList("# fleet\n[devices]\n\"" + keyA() + "\" = \"pi-1\"\n\"" +
                                            keyB() + "\" = \"pi-1\"\n",
                                        "allow.toml");
    REQUIRE(list);
    CHECK(list->device_by_key.size() == 2);
    CHECK(list->device_by_key.at(keyA()) == "pi-1");
  }
  SECTION("empty file or empty table: nobody is allowed") {
    auto list = secrets::parseAllowList("", "a");
    REQUIRE(list);
    CHECK(list->device_by_key.empty());
    CHECK(secrets::parseAllowList("[devices]\n", "a")->device_by_key.empty());
  }
  auto error = [](const std::string& text) {
    auto list = secrets::parseAllowList(text, "allow.toml");
    REQUIRE_FALSE(list);
    return list.error().message();
  };
  SECTION("a line that is not a key names the line") {
    const auto msg = error("[devices]\n\"" + keyA() + "\" = \"a\"\n\"not-a-key\" = \"b\"\n");
    CHECK(msg.find("allow.toml line 3") != std::string::npos);
    CHECK(msg.find("not a CURVE public key") != std::string::npos);
  }
  SECTION("invalid device ids") {
    CHECK(error("[devices]\n\"" + keyA() + "\" = \"a/b\"\n").find("device id") != std::string::npos);
    CHECK(error("[devices]\n\"" + keyA() + "\" = \"\"\n").find("device id") != std::string::npos);
    CHECK(error("[devices]\n\"" + keyA() + "\" = \".x\"\n").find("device id") != std::string::npos);
    CHECK(error("[devices]\n\"" + keyA() + "\" = 5\n").find("must be a string") != std::string::npos);
  }
  SECTION("a key listed twice is a TOML error") {
    CHECK_FALSE(secrets::parseAllowList(
        "[devices]\n\"" + keyA() + "\" = \"a\"\n\"" + keyA() + "\" = \"b\"\n", "a"));
  }
  SECTION("unknown top-level keys and broken TOML") {
    CHECK(error("devicez = 1\n").find("unknown key 'devicez'") != std::string::npos);
    CHECK(error("devices = 1\n").find("must be a table") != std::string::npos);
    CHECK(error("[devices\n").find("not valid TOML") != std::string::npos);
  }
}

TEST_CASE("MQTT security settings", "[common][secrets][mqtt]") {
  using namespace outpost;
  config::Schema schema("t");
  schema.string("mqtt.username", "", "").string("mqtt.password", "", "");
  mqttsec::addSettings(schema, "mqtt.");
  TempDir dir;
  writeFile(dir.file("ca.pem"), "x", 0644);
  writeFile(dir.file("c.pem"), "x", 0644);
  writeFile(dir.file("k.pem"), "x", 0600);
  writeFile(dir.file("pw"), "hunter2\n", 0600);
  auto load = [&](std::vector<std::string> sets, const std::string& broker) {
    config::Config cfg = config::defaults(schema);
    for (const auto& s : sets) cfg.applyOverride(schema, s);
    return mqttsec::load(cfg, "mqtt.", broker);
  };
  SECTION("plain tcp, anonymous: no TLS, verification on by default") {
    auto s = load({}, "tcp://h:1883");
    REQUIRE(s);
    CHECK_FALSE(s->tls);
    CHECK(s->verify);
  }
  SECTION("full TLS with client certificate and password file") {
    auto s = load({"mqtt.ca_file=" + dir.file("ca.pem"), "mqtt.cert_file=" + dir.file("c.pem"),
                   "mqtt.key_file=" + dir.file("k.pem"), "mqtt.username=dev",
                   "mqtt.password_file=" + dir.file("pw")},
                  "ssl://h:8883");
    REQUIRE(s);
    CHECK(s->tls);
    CHECK(s->password == "hunter2");
  }
  SECTION("refusals") {
    CHECK_FALSE(load({"mqtt.ca_file=" + dir.file("ca.pem")}, "tcp://h:1883"));  // TLS file, no TLS
    CHECK_FALSE(load({"mqtt.cert_file=" + dir.file("c.pem")}, "ssl://h:8883"));  // cert w/o key
    CHECK_FALSE(load({"mqtt.ca_file=" + dir.file("nope")}, "ssl://h:8883"));
    CHECK_FALSE(load({"mqtt.username=u", "mqtt.password=p", "mqtt.password_file=" + dir.file("pw")},
                     "tcp://h:1"));
    CHECK_FALSE(load({"mqtt.password=p"}, "tcp://h:1"));  // password without user name
    REQUIRE(::chmod(dir.file("k.pem").c_str(), 0640) == 0);
    auto s = load({"mqtt.cert_file=" + dir.file("c.pem"), "mqtt.key_file=" + dir.file("k.pem")},
                  "ssl://h:8883");
    REQUIRE_FALSE(s);
    CHECK(s.error().message().find("chmod 600") != std::string::npos);
  }
}

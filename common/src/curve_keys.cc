// CURVE key files and the allow-list (secrets.h). In outpost_common_zmq, apart from the rest of
// secrets.cc: these need libzmq (Z85, key derivation), which the agent loads only with its ZeroMQ
// module.
#include <toml++/toml.h>
#include <zmq.h>

#include <sstream>

#include "outpost/common/codec.h"
#include "outpost/common/secrets.h"

namespace outpost::secrets {
namespace {

Result<toml::table> parseTomlFile(const std::string& path, const std::string& what,
                                  const std::string& text) {
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << what << ": " << path << " is not valid TOML: " << e.description() << " (line "
       << e.source().begin.line << ")";
    return fail(ErrorCode::kInvalidArgument, os.str());
  }
}

}  // namespace

bool isZ85Key(const std::string& text) {
  if (text.size() != 40) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, text.c_str()) != nullptr;
}

Result<CurveKeyPair> generateCurveKeyPair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return fail(ErrorCode::kInternal, std::string("zmq_curve_keypair failed: ") +
                                          zmq_strerror(zmq_errno()) +
                                          " (libzmq built without CURVE?)");
  }
  return CurveKeyPair{pub, sec};
}

std::string formatKeyPairFile(const CurveKeyPair& pair, const std::string& comment) {
  return "# " + comment +
         "\n# SECRET: keep this file private (mode 0600), never copy it off the device.\n" +
         "public_key = \"" + pair.public_key + "\"\nsecret_key = \"" + pair.secret_key + "\"\n";
}

std::string formatPublicKeyFile(const std::string& public_key, const std::string& comment) {
  return "# " + comment + "\npublic_key = \"" + public_key + "\"\n";
}

Result<CurveKeyPair> loadKeyPairFile(const std::string& path, const std::string& what) {
  if (auto st = checkPrivateFile(path, what); !st) return std::unexpected(st.error());
  auto text = readWhole(path, what);
  if (!text) return std::unexpected(text.error());
  auto tbl = parseTomlFile(path, what, *text);
  if (!tbl) return std::unexpected(tbl.error());
  CurveKeyPair pair;
  pair.public_key = (*tbl)["public_key"].value_or(std::string());
  pair.secret_key = (*tbl)["secret_key"].value_or(std::string());
  if (!isZ85Key(pair.public_key)) {
    return fail(ErrorCode::kInvalidArgument,
                what + ": " + path + " has no valid public_key (40 Z85 characters)");
  }
  if (!isZ85Key(pair.secret_key)) {
    return fail(ErrorCode::kInvalidArgument,
                what + ": " + path + " has no valid secret_key (40 Z85 characters)");
  }
  char derived[41];
  if (zmq_curve_public(derived, pair.secret_key.c_str()) != 0 || pair.public_key != derived) {
    return fail(ErrorCode::kInvalidArgument,
                what + ": " + path + ": public_key does not belong to secret_key");
  }
  return pair;
}

Result<std::string> loadPublicKeyFile(const std::string& path, const std::string& what) {
  auto text = readWhole(path, what);
  if (!text) return text;
  auto tbl = parseTomlFile(path, what, *text);
  if (!tbl) return std::unexpected(tbl.error());
  std::string key = (*tbl)["public_key"].value_or(std::string());
  if (!isZ85Key(key)) {
    return fail(ErrorCode::kInvalidArgument,
                what + ": " + path + " has no valid public_key (40 Z85 characters)");
  }
  return key;
}

Result<AllowList> parseAllowList(const std::string& text, const std::string& source) {
  auto tbl = parseTomlFile(source, "allow-list", text);
  if (!tbl) return std::unexpected(tbl.error());
  AllowList list;
  for (const auto& [k, v] : *tbl) {
    if (k.str() != "devices") {
      return fail(ErrorCode::kInvalidArgument,
                  "allow-list " + source + ": unknown key '" + std::string(k.str()) +
                      "'; allowed: a [devices] table of \"<public key>\" = \"<device id>\"");
    }
  }
  const toml::table* devices = (*tbl)["devices"].as_table();
  if (!devices) {
    if (tbl->contains("devices")) {
      return fail(ErrorCode::kInvalidArgument,
                  "allow-list " + source + ": devices must be a table");
    }
    return list;  // no devices: nobody may connect
  }
  for (const auto& [k, v] : *devices) {
    const std::string key(k.str());
    const int line = k.source().begin.line;
    const std::string where = "allow-list " + source + " line " + std::to_string(line);
    if (!isZ85Key(key)) {
      return fail(ErrorCode::kInvalidArgument,
                  where + ": \"" + key + "\" is not a CURVE public key (40 Z85 characters)");
    }
    const auto* dev = v.as_string();
    if (!dev) {
      return fail(ErrorCode::kInvalidArgument, where + ": the device id must be a string");
    }
    if (!codec::isValidDeviceId(dev->get())) {
      return fail(ErrorCode::kInvalidArgument,
                  where + ": device id \"" + dev->get() +
                      "\" is not allowed (1..64 of [A-Za-z0-9._-], not starting with '.')");
    }
    list.device_by_key[key] = dev->get();
  }
  return list;
}

Result<AllowList> loadAllowList(const std::string& path) {
  auto text = readWhole(path, "allow-list");
  if (!text) return std::unexpected(text.error());
  return parseAllowList(*text, path);
}

}  // namespace outpost::secrets

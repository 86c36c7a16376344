#include "outpost/common/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>
#include <zmq.h>

#include "outpost/common/codec.h"

namespace outpost::secrets {
namespace {

std::string modeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Result<std::string> readWhole(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorCode::kNotFound, what + ": cannot read " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

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

Status checkPrivateFile(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(ErrorCode::kNotFound, what + ": cannot open " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument, what + ": " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return fail(ErrorCode::kInvalidArgument,
                what + ": " + path + " has mode " + modeText(st.st_mode) +
                    ", so other users can read or change it; refusing to use it. Fix with: "
                    "chmod 600 " + path);
  }
  return {};
}

Result<std::string> readSecretFile(const std::string& path, const std::string& what) {
  if (auto st = checkPrivateFile(path, what); !st) return std::unexpected(st.error());
  auto text = readWhole(path, what);
  if (!text) return text;
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
  if (text->empty()) return fail(ErrorCode::kInvalidArgument, what + ": " + path + " is empty");
  return text;
}

Status writePrivateFile(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(ErrorCode::kIoError, "cannot create " + path + ": " + std::strerror(errno));
  }
  size_t off = 0;
  while (off < content.size()) {
    const ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      return fail(ErrorCode::kIoError, "cannot write " + path + ": " + err);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return fail(ErrorCode::kIoError, "cannot write " + path + ": " + std::strerror(errno));
  }
  return {};
}

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
  return "# " + comment + "\n# SECRET: keep this file private (mode 0600), never copy it off the device.\n" +
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
      return fail(ErrorCode::kInvalidArgument, "allow-list " + source + ": devices must be a table");
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

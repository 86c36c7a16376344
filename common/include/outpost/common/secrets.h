#pragma once

// Secret and key files: passwords, TLS private keys, CURVE key pairs, and the aggregator's CURVE
// allow-list. Start-up and reload only (not the data path).
//
// A secret file must be a regular file that neither group nor others can read or write (mode
// 0600 or stricter): anything looser is refused with a message that names the file, its mode and
// the chmod that fixes it. Secrets are returned to the caller and never logged by this module.

#include <map>
#include <string>

#include "outpost/common/status.h"

namespace outpost::secrets {

// Checks that `path` is a regular file without group/other permission bits. `what` names the
// file's role in messages ("uplink.mqtt.password_file").
Status checkPrivateFile(const std::string& path, const std::string& what);

// Reads a secret file after checkPrivateFile; trailing newlines are removed. An empty file is an
// error.
Result<std::string> readSecretFile(const std::string& path, const std::string& what);

// The whole file (binary); `what` names its role in the error message.
Result<std::string> readWhole(const std::string& path, const std::string& what);

// Writes `content` to a new file with mode 0600 (refuses to overwrite an existing file).
Status writePrivateFile(const std::string& path, const std::string& content);

// --- CURVE keys and the allow-list: library outpost_common_zmq (links libzmq; the agent has them
// only in its ZeroMQ module, outpost-agent-zmq.so). ---

// CURVE keys in Z85 text (40 characters for 32 bytes).
bool isZ85Key(const std::string& text);

struct CurveKeyPair {
  std::string public_key;  // Z85
  std::string secret_key;  // Z85; never logged
};

// A new key pair (libsodium via zmq_curve_keypair).
Result<CurveKeyPair> generateCurveKeyPair();

// Key files are TOML:  public_key = "<z85>"  and, in a key pair file, secret_key = "<z85>".
std::string formatKeyPairFile(const CurveKeyPair& pair, const std::string& comment);
std::string formatPublicKeyFile(const std::string& public_key, const std::string& comment);
// A key pair file: checked with checkPrivateFile, both keys present and valid, and the public key
// must belong to the secret key.
Result<CurveKeyPair> loadKeyPairFile(const std::string& path, const std::string& what);
// A public key file (or a key pair file, of which only the public key is read; no permission
// check since a public key is no secret).
Result<std::string> loadPublicKeyFile(const std::string& path, const std::string& what);

// The aggregator's CURVE allow-list: which agent public key is which device.
//
//   # comments
//   [devices]
//   "<z85 public key>" = "<device id>"
//
// A device may have several keys (rotation); a key names exactly one device.
struct AllowList {
  std::map<std::string, std::string> device_by_key;  // Z85 public key -> device id
};
// `source` names the text in messages (the file path).
Result<AllowList> parseAllowList(const std::string& text, const std::string& source);
Result<AllowList> loadAllowList(const std::string& path);

}  // namespace outpost::secrets

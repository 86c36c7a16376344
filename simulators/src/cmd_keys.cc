// outpost-sim keys: deterministic CURVE key pairs for ZeroMQ virtual agents (links.h,
// simCurveKeyPair) and the aggregator's allow-list naming them. Load tests only: the secret keys
// follow from the seed, so they are not secret.

#include <filesystem>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "links.h"
#include "outpost/common/secrets.h"
#include "outpost/sim/fleet.h"

namespace outpost::sim {
namespace {

struct KeysCli {
  int devices = 10;
  std::string device_prefix = FleetOptions{}.device_prefix;
  uint64_t key_seed = 1;
  std::string out;
};

int fail(const std::string& msg) {
  std::cerr << "outpost-sim keys: " << msg << "\n";
  return kExitFailure;
}

int runKeys(const KeysCli& c) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(c.out, ec);
  if (ec) return fail("cannot create " + c.out + ": " + ec.message());
  // Device names exactly as the fleet makes them.
  FleetOptions fo;
  fo.devices = c.devices;
  fo.sensors = 1;
  fo.device_prefix = c.device_prefix;
  fo.start_us = 0;
  Fleet fleet(fo);

  auto agg = simCurveKeyPair(c.key_seed, -1);
  if (!agg) return fail(agg.error().message());
  const std::string key_path = c.out + "/aggregator.key";
  fs::remove(key_path, ec);  // regenerated: the same seed gives the same content
  const std::string note = "outpost-sim keys --key-seed " + std::to_string(c.key_seed) +
                           " (derived from the seed: load tests only)";
  if (auto st = secrets::writePrivateFile(
          key_path, secrets::formatKeyPairFile({agg->public_key, agg->secret_key}, note));
      !st) {
    return fail(st.error().message());
  }
  {
    std::ofstream pub(c.out + "/aggregator.pub");
    pub << secrets::formatPublicKeyFile(agg->public_key, note);
    if (!pub) return fail("cannot write " + c.out + "/aggregator.pub");
  }
  std::ofstream allow(c.out + "/allow-list.toml");
  allow << "# " << note << ": " << c.devices << " virtual devices\n[devices]\n";
  for (int i = 0; i < c.devices; ++i) {
    auto pair = simCurveKeyPair(c.key_seed, i);
    if (!pair) return fail(pair.error().message());
    allow << '"' << pair->public_key << "\" = \"" << fleet.deviceName(i) << "\"\n";
  }
  allow.flush();
  if (!allow) return fail("cannot write " + c.out + "/allow-list.toml");
  std::cerr << "outpost-sim keys: wrote " << c.out << "/aggregator.key (0600), " << c.out
            << "/aggregator.pub and " << c.out << "/allow-list.toml (" << c.devices
            << " devices)\n";
  return kExitOk;
}

}  // namespace

Command addKeysCommand(CLI::App& app) {
  auto c = std::make_shared<KeysCli>();
  CLI::App* cmd = app.add_subcommand(
      "keys",
      "Deterministic CURVE keys for ZeroMQ virtual agents: DIR/aggregator.key + .pub and "
      "DIR/allow-list.toml for N devices (load tests only: derived from --key-seed)");
  cmd->add_option("-n,--devices", c->devices, "Devices")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--device-prefix", c->device_prefix, "As fleet --device-prefix")
      ->capture_default_str();
  cmd->add_option("--key-seed", c->key_seed, "As fleet --key-seed")->capture_default_str();
  cmd->add_option("--out", c->out, "Directory for the files")->required();
  return {cmd, [c] { return runKeys(*c); }};
}

}  // namespace outpost::sim

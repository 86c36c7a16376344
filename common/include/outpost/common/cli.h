#pragma once

// The command-line conventions both programs share: -c/--config, -s/--set key=value,
// --check-config, --print-config-reference, -V/--version (CLI11 supplies --help).

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "outpost/common/config.h"
#include "outpost/common/settings.h"
#include "outpost/common/status.h"

namespace outpost::cli {

struct ProgramOptions {
  std::string program;       // e.g. "outpost-agent"
  std::string default_path;  // documented location of the config file
  std::string config_path;
  std::vector<std::string> overrides;
  bool check_only = false;
  bool print_reference = false;
};

void addProgramOptions(CLI::App& app, ProgramOptions& options);

// The file (or every default when no --config was given), then each --set override, in order.
// Throws config::ConfigError naming the key.
config::Config loadConfig(const ProgramOptions& options, const config::Schema& schema);

// The Markdown reference of `schema` for docs/configuration.md.
std::string configReference(const ProgramOptions& options, const config::Schema& schema);

// The settings every long-running program has.
struct ProcessSettings {
  std::string log_level;    // spdlog level name
  std::string http_listen;  // empty: no /metrics endpoint
};
// Declares log_level and http.listen.
void addProcessSettings(config::Schema& schema, const std::string& default_listen);
ProcessSettings readProcessSettings(const config::Config& cfg);

// Logs where /metrics is served ("metrics on http://HOST:PORT/metrics").
void logOpsUrl(const std::string& listen, int port);

// Starts /metrics and /healthz on `http.listen` (nothing when it is empty) and logs the URL.
// `Server`: HttpServer (cpp-httplib, the aggregator) or OpsHttpServer (libevent, the agent).
template <typename Server>
Status serveOps(Server& http, const config::Config& cfg) {
  const std::string listen = readProcessSettings(cfg).http_listen;
  if (listen.empty()) return {};
  if (auto st = http.start(listen); !st) return st;
  logOpsUrl(listen, http.port());
  return {};
}

}  // namespace outpost::cli

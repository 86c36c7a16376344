#pragma once

// The command-line conventions both programs share: -c/--config, -s/--set key=value,
// --check-config, --print-config-reference, -V/--version (CLI11 supplies --help).

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "outpost/common/config.h"
#include "outpost/common/http_server.h"
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

// Declares the settings every long-running program has: log_level and http.listen.
void addProcessSettings(config::Schema& schema, const std::string& default_listen);

// Starts /metrics and /healthz on `http.listen` (nothing when it is empty) and logs the URL.
Status serveOps(HttpServer& http, const config::Config& cfg);

}  // namespace outpost::cli

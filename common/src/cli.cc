#include "outpost/common/cli.h"

#include <spdlog/spdlog.h>

#include "outpost/common/version.h"

namespace outpost::cli {

void addProgramOptions(CLI::App& app, ProgramOptions& o) {
  app.add_option("-c,--config", o.config_path, "TOML configuration file (packages install " + o.default_path + "; without it every setting has its default)")
      ->check(CLI::ExistingFile);
  app.add_option("-s,--set", o.overrides,
                 "Override one setting: key=value (e.g. --set log_level=debug); repeatable; "
                 "every key is in docs/configuration.md");
  app.add_flag("--check-config", o.check_only, "Validate the configuration and exit");
  app.add_flag("--print-config-reference", o.print_reference,
               "Print the configuration reference (Markdown) and exit");
  app.set_version_flag("-V,--version", o.program + " " + kVersion);
}

config::Config loadConfig(const ProgramOptions& o, const config::Schema& schema) {
  config::Config cfg = o.config_path.empty() ? config::defaults(schema)
                                             : config::loadFile(o.config_path, schema);
  for (const auto& assignment : o.overrides) cfg.applyOverride(schema, assignment);
  return cfg;
}

std::string configReference(const ProgramOptions& o, const config::Schema& schema) {
  return config::renderMarkdown(schema, o.program,
                                "File: `" + o.default_path + "` (or `--config FILE`). Any key can "
                                "also be set with `--set key=value`.");
}

namespace {

// The listen default differs per program (it only matters for declaring).
config::SettingsTable<ProcessSettings> processTable(const std::string& default_listen) {
  using P = ProcessSettings;
  return config::SettingsTable<P>()
      .oneOf("log_level", &P::log_level, {"trace", "debug", "info", "warn", "error", "off"},
             "info", "Log verbosity (stderr / journal)")
      .string("http.listen", &P::http_listen, default_listen,
              "host:port of /metrics and /healthz; port 0 picks a free port; empty disables");
}

}  // namespace

void addProcessSettings(config::Schema& schema, const std::string& default_listen) {
  processTable(default_listen).declare(schema);
}

ProcessSettings readProcessSettings(const config::Config& cfg) {
  return processTable("").read(cfg);
}

void logOpsUrl(const std::string& listen, int port) {
  spdlog::info("metrics on http://{}:{}/metrics", listen.substr(0, listen.rfind(':')), port);
}

}  // namespace outpost::cli

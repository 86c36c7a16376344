// outpost-agent: reads sensors, batches readings into a crash-safe outbox and forwards them to the
// aggregator.

#include <iostream>

#include <CLI/CLI.hpp>

#include "outpost/agent/agent.h"
#include "outpost/agent/agent_config.h"
#include "outpost/agent/outbox.h"
#include "outpost/common/http_server.h"
#include "outpost/common/log.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"

int main(int argc, char** argv) {
  using namespace outpost;
  CLI::App app{"outpost-agent " + std::string(kVersion) +
               ": edge telemetry agent (sources -> batcher -> SQLite outbox -> MQTT uplink)"};
  std::string config_path, device_id;
  std::vector<std::string> overrides;
  uint64_t max_readings = 0;
  bool exit_when_drained = false, print_reference = false, check_only = false;
  app.add_option("-c,--config", config_path, "TOML configuration file")->check(CLI::ExistingFile);
  app.add_option("-d,--device-id", device_id, "Device id (overrides device_id in the file)");
  app.add_option("-s,--set", overrides,
                 "Override one setting: key=value (e.g. --set uplink.mqtt.broker=tcp://h:1883); "
                 "repeatable");
  app.add_option("--max-readings", max_readings,
                 "Stop reading sensors after this many readings (testing, benchmarks)");
  app.add_flag("--exit-when-drained", exit_when_drained,
               "With --max-readings: exit once every accepted batch is acknowledged");
  app.add_flag("--check-config", check_only, "Validate the configuration and exit");
  app.add_flag("--print-config-reference", print_reference,
               "Print the configuration reference (Markdown) and exit");
  app.set_version_flag("-V,--version", std::string("outpost-agent ") + kVersion);
  CLI11_PARSE(app, argc, argv);

  const auto& schema = agent::agentSchema();
  if (print_reference) {
    std::cout << config::renderMarkdown(
        schema, "outpost-agent",
        "File: `/etc/outpost/agent.toml` (or `--config FILE`). Any key can also be set with "
        "`--set key=value`.");
    return 0;
  }

  signals::installSignalHandlers();
  try {
    config::Config cfg = config_path.empty() ? config::defaults(schema)
                                             : config::loadFile(config_path, schema);
    for (const auto& o : overrides) cfg.applyOverride(schema, o);
    if (!device_id.empty()) cfg.applyOverride(schema, "device_id=" + device_id);
    initLogging(cfg.getString("log_level"), "outpost-agent");

    if (check_only) {
      agent::validateConfig(cfg);
      std::cout << "configuration OK\n";
      return 0;
    }
    metrics::Registry registry;
    agent::Agent agent(cfg, registry, SystemClock::instance());
    // Declared after the agent: destroyed (stopped) first, so no scrape sees a dead agent.
    HttpServer http(registry, [&agent](std::string& d) { return agent.healthy(d); });
    if (const auto& listen = cfg.getString("http.listen"); !listen.empty()) {
      if (auto st = http.start(listen); !st) {
        spdlog::error("http: {}", st.error().toString());
        return 1;
      }
      spdlog::info("metrics on http://{}:{}/metrics", listen.substr(0, listen.rfind(':')),
                   http.port());
    }
    return agent.run({max_readings, exit_when_drained});
  } catch (const config::ConfigError& e) {
    std::cerr << "outpost-agent: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "outpost-agent: " << e.what() << "\n";
    return 1;
  }
}

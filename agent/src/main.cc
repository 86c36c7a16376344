// outpost-agent: reads sensors, batches readings into a crash-safe outbox and forwards them to the
// aggregator.

#include <malloc.h>

#include <cstdlib>
#include <iostream>

#include "outpost/agent/agent.h"
#include "outpost/agent/agent_config.h"
#include "outpost/agent/inputs.h"
#include "outpost/agent/outbox.h"
#include "outpost/agent/zmq_module_loader.h"
#include "outpost/common/cli.h"
#include "outpost/common/log.h"
#include "outpost/common/ops_http_server.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"


int main(int argc, char** argv) {
  // Memory (issue 17, docs/benchmarks.md), before any thread exists: glibc gives each thread that
  // contends on malloc an arena of its own (up to 8 per core), each keeping freed memory; two are
  // plenty for the agent's few threads. MALLOC_ARENA_MAX, if set, still wins. (OpenSSL is not
  // mapped at all without a TLS broker: mqtt_client.h.)
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
  using namespace outpost;
  CLI::App app{"outpost-agent " + std::string(kVersion) +
               ": edge telemetry agent (sources -> batcher -> SQLite outbox -> MQTT or ZeroMQ uplink)"};
  cli::ProgramOptions po{.program = "outpost-agent", .default_path = "/etc/outpost/agent.toml"};
  cli::addProgramOptions(app, po);
  std::string device_id;
  uint64_t max_readings = 0;
  bool exit_when_drained = false;
  app.add_option("-d,--device-id", device_id, "Device id (overrides device_id in the file)");
  app.add_option("--max-readings", max_readings,
                 "Stop reading sensors after this many readings (testing, benchmarks)");
  app.add_flag("--exit-when-drained", exit_when_drained,
               "With --max-readings: exit once every accepted batch is acknowledged");
  std::string keygen_dir, keygen_name = "agent";
  CLI::App* keygen = app.add_subcommand(
      "keygen",
      "Make a CURVE key pair for the ZeroMQ uplink: DIR/NAME.key (key pair, mode 0600: "
      "uplink.zmq.key_file, or the aggregator's zmq.secret_key_file) and DIR/NAME.pub (public "
      "key: the aggregator's allow-list, or agents' uplink.zmq.server_public_key_file)");
  keygen->add_option("-o,--out", keygen_dir, "Directory for the key files")->required();
  keygen->add_option("-n,--name", keygen_name,
                     "File name stem, e.g. the device id or \"aggregator\" (default: agent)");
  CLI11_PARSE(app, argc, argv);
  if (*keygen) {
    auto pub = agent::zmqKeygen(keygen_dir, keygen_name);
    if (!pub) {
      std::cerr << "outpost-agent keygen: " << pub.error().message() << "\n";
      return 1;
    }
    std::cout << "wrote " << keygen_dir << "/" << keygen_name << ".key (secret, 0600) and "
              << keygen_dir << "/" << keygen_name << ".pub\n"
              << "public key: " << *pub << "\n"
              << "allow-list line for the aggregator ([devices] table):\n\"" << *pub
              << "\" = \"" << keygen_name << "\"\n";
    return 0;
  }

  const auto& schema = agent::agentSchema();
  if (po.print_reference) {
    std::cout << cli::configReference(po, schema);
    return 0;
  }

  signals::installSignalHandlers();
  try {
    config::Config cfg = cli::loadConfig(po, schema);
    if (!device_id.empty()) cfg.applyOverride(schema, "device_id=" + device_id);
    initLogging(cli::readProcessSettings(cfg).log_level, "outpost-agent");

    if (po.check_only) {
      agent::validateConfig(cfg);
      std::cout << "configuration OK\n";
      return 0;
    }
    metrics::Registry registry;
    agent::Agent agent(cfg, registry, SystemClock::instance());
    agent.setConfigLoader([&po, &schema, device_id] {  // SIGHUP: same file, same overrides
      config::Config next = cli::loadConfig(po, schema);
      if (!device_id.empty()) next.applyOverride(schema, "device_id=" + device_id);
      return next;
    });
    // Declared after the agent: destroyed (stopped) first, so no scrape sees a dead agent.
    OpsHttpServer http(
        registry, [&agent](std::string& d) { return agent.healthy(d); },
        [&agent] { return agent.notReadyReasons(); });
    if (auto st = cli::serveOps(http, cfg); !st) {
      spdlog::error("http: {}", st.error().toString());
      return 1;
    }
    // Start-up garbage (the parsed TOML, schema tables) back to the kernel before the long run.
    malloc_trim(0);
    return agent.run({max_readings, exit_when_drained});
  } catch (const config::ConfigError& e) {
    std::cerr << "outpost-agent: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "outpost-agent: " << e.what() << "\n";
    return 1;
  }
}

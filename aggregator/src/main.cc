// outpost-aggregator: receives batches from agents, verifies and deduplicates them, publishes them
// to Kafka and acknowledges each batch once Kafka has it. The wiring is AggregatorApp (app.h); the
// offline `detect` and `score` subcommands are OfflineCommands (offline_commands.h).

#include <iostream>

#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/app.h"
#include "outpost/aggregator/offline_commands.h"
#include "outpost/common/cli.h"
#include "outpost/common/log.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"

int main(int argc, char** argv) {
  using namespace outpost;
  using namespace outpost::aggregator;
  CLI::App app{"outpost-aggregator " + std::string(kVersion) +
               ": receives agent batches over MQTT and/or ZeroMQ, verifies and deduplicates them, "
               "publishes to Kafka, acks after delivery"};
  cli::ProgramOptions po{.program = "outpost-aggregator",
                         .default_path = "/etc/outpost/aggregator.toml"};
  cli::addProgramOptions(app, po);
  OfflineCommands offline(app);
  CLI11_PARSE(app, argc, argv);
  if (auto code = offline.run(po)) return *code;

  const auto& schema = aggregatorSchema();
  if (po.print_reference) {
    std::cout << cli::configReference(po, schema);
    return 0;
  }
  signals::installSignalHandlers();
  try {
    config::Config cfg = cli::loadConfig(po, schema);
    AggregatorApp service(cfg);  // reads and checks every setting
    if (po.check_only) {
      std::cout << "configuration OK\n";
      return 0;
    }
    initLogging(cli::readProcessSettings(cfg).log_level, "outpost-aggregator");
    if (!service.start()) return 1;
    service.run();
    service.stop();
    // A failure the aggregator cannot recover from in place (e.g. the Kafka producer's fatal
    // error): exit non-zero so systemd restarts it, and the start-up recovery reads back what
    // reached Kafka (docs/kafka.md).
    return signals::failedStop() ? 1 : 0;
  } catch (const config::ConfigError& e) {
    std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "outpost-aggregator: " << e.what() << "\n";
    return 1;
  }
}

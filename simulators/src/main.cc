// outpost-sim: the fleet simulator (realistic signals, labelled anomalies; file outputs or virtual
// agents over MQTT), the capture recorder and replayer, CSV export, and an ack responder for
// load tests. docs/simulators.md describes every subcommand.

#include <mqtt/async_client.h>

#include <chrono>
#include <iostream>

#include "commands.h"
#include "outpost/common/log.h"
#include "outpost/common/net.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"

namespace outpost::sim {

void addBrokerOptions(CLI::App& cmd, BrokerOptions& o) {
  cmd.add_option("-b,--broker", o.broker, "MQTT broker URI")->capture_default_str();
  cmd.add_option("--topic-prefix", o.topic_prefix, "MQTT topic prefix")->capture_default_str();
}

void connectBroker(mqtt::async_client& cli, const BrokerOptions& o) {
  auto opts = mqtt::connect_options_builder()
                  .clean_session(true)
                  .keep_alive_interval(std::chrono::seconds(30))
                  .connect_timeout(std::chrono::seconds(10))
                  .finalize();
  cli.connect(opts)->wait_for(std::chrono::seconds(11));
  if (!cli.is_connected()) throw mqtt::exception(-1, "connect timed out");
  net::setTcpNoDelayToPeer(o.broker);  // batches must not wait for a delayed ACK
}

}  // namespace outpost::sim

int main(int argc, char** argv) {
  using namespace outpost;
  CLI::App app{"outpost-sim " + std::string(kVersion) +
                   ": fleet simulator with labelled anomalies, uplink capture and replay.\n"
                   "Exit codes: 0 done, 1 runtime failure, 2 bad command line, 3 MQTT broker "
                   "unreachable.",
               "outpost-sim"};
  app.set_version_flag("-V,--version", std::string(kVersion));
  app.require_subcommand(1);
  std::string log_level = "warn";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  std::vector<sim::Command> commands = {
      sim::addFleetCommand(app),     sim::addRecordCommand(app),       sim::addReplayCommand(app),
      sim::addExportCsvCommand(app), sim::addAckResponderCommand(app), sim::addKeysCommand(app)};
  for (auto& c : commands) c.sub->set_version_flag("-V,--version", std::string(kVersion));
  try {
    app.parse(argc, argv);
    initLogging(log_level, "outpost-sim");
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? sim::kExitOk : sim::kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "outpost-sim: " << e.what() << "\n";
    return sim::kExitUsage;
  }
  signals::installSignalHandlers();
  for (auto& c : commands) {
    if (c.sub->parsed()) {
      try {
        return c.run();
      } catch (const std::exception& e) {
        std::cerr << "outpost-sim " << c.sub->get_name() << ": " << e.what() << "\n";
        return sim::kExitFailure;
      }
    }
  }
  return sim::kExitUsage;
}

#pragma once

// The subcommands of outpost-sim. Each adds itself to the CLI11 app and returns the function that
// runs it (after parsing, logging and signal set-up) and gives the exit code.
//
// Exit codes (all subcommands): 0 done, 1 runtime failure (I/O, corrupt capture, ...),
// 2 bad command line, 3 cannot reach the MQTT broker.

#include <CLI/CLI.hpp>
#include <functional>

namespace mqtt {
class async_client;
}

namespace outpost::sim {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnavailable = 3;

struct Command {
  CLI::App* sub;
  std::function<int()> run;
};
Command addFleetCommand(CLI::App& app);
Command addRecordCommand(CLI::App& app);
Command addReplayCommand(CLI::App& app);
Command addExportCsvCommand(CLI::App& app);
Command addAckResponderCommand(CLI::App& app);
Command addKeysCommand(CLI::App& app);

// Common options of MQTT-speaking subcommands.
struct BrokerOptions {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string topic_prefix = "outpost/v1";
};
void addBrokerOptions(CLI::App& cmd, BrokerOptions& o);
// Connects `cli` (clean session, 30 s keep-alive, 10 s timeout) with TCP_NODELAY to the broker;
// throws mqtt::exception when it cannot.
void connectBroker(mqtt::async_client& cli, const BrokerOptions& o);

}  // namespace outpost::sim

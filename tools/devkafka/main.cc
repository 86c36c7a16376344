// outpost-devkafka: an IN-MEMORY DEVELOPMENT Kafka broker (librdkafka's mock cluster) reachable at
// a fixed bootstrap address. For tests and the local demo only, never for production.
//
// Exit codes: 0 clean stop (SIGTERM/SIGINT), 1 runtime failure, 2 bad command line.

#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "dev_kafka_broker.h"
#include "outpost/common/log.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

constexpr const char* kWarning =
    "IN-MEMORY DEVELOPMENT BROKER: all data is lost when it stops; each partition keeps only about "
    "5 MB or 100,000 message sets (older ones are dropped); never use it in production.";

// Writes `content` to `path` atomically (temporary file + rename), so a script polling for the file
// never reads it half-written. Throws std::runtime_error on failure.
void writeReadyFile(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content << '\n';
    out.close();
    if (!out) throw std::runtime_error("cannot write ready file '" + tmp + "'");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw std::runtime_error("cannot rename ready file to '" + path + "': " + ec.message());
}

int run(int argc, char** argv) {
  outpost::signals::installSignalHandlers();

  const std::string description =
      "outpost-devkafka " + std::string(outpost::kVersion) +
      ": runs librdkafka's mock Kafka cluster in this process and serves it at a fixed bootstrap "
      "address, so kcat and any Kafka client can produce and consume on loopback.\n\n" +
      kWarning +
      "\nThe mock brokers advertise 127.0.0.1 and random ports, so clients must run on this host.";
  CLI::App app{description, "outpost-devkafka"};
  std::string listen = "127.0.0.1:9092";
  outpost::aggregator::DevKafkaBrokerOptions options;
  std::vector<std::string> topics;
  std::string readyFile;
  std::string control;
  std::string logLevel = "info";

  app.add_option("--listen", listen,
                 "Fixed bootstrap address HOST:PORT ([IPV6]:PORT; port 0 = any)")
      ->capture_default_str()
      ->check([](const std::string& v) {
        std::string host;
        uint16_t port = 0;
        return outpost::aggregator::parseHostPort(v, host, port)
                   ? std::string()
                   : "expected HOST:PORT with PORT 0..65535, got '" + v + "'";
      });
  app.add_option("--brokers", options.brokers, "Number of mock brokers")
      ->capture_default_str()
      ->check(CLI::Range(1, outpost::aggregator::DevKafkaBroker::kMaxBrokers));
  app.add_option("--partitions", options.partitions,
                 "Partitions of each pre-created topic (auto-created topics get the mock's "
                 "built-in count)")
      ->capture_default_str()
      ->check(CLI::Range(1, outpost::aggregator::DevKafkaBroker::kMaxPartitions));
  app.add_option("--topic", topics,
                 "Topic to pre-create, repeatable (default: outpost.readings, outpost.anomalies, "
                 "outpost.deadletter, outpost.device-status)");
  app.add_option("--ready-file", readyFile,
                 "Write the bootstrap address to this file once listening (removed on clean stop)");
  app.add_option("--control", control,
                 "Fault injection: accept text commands (request errors, broker down/up, "
                 "round-trip time, partition leader) on this loopback HOST:PORT, one per line; "
                 "send 'help' for the list (docs/devkafka.md). Off by default")
      ->check([](const std::string& v) {
        std::string host;
        uint16_t port = 0;
        return outpost::aggregator::parseHostPort(v, host, port)
                   ? std::string()
                   : "expected HOST:PORT with PORT 0..65535, got '" + v + "'";
      });
  app.add_option("--log-level", logLevel, "trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.set_version_flag("--version", std::string(outpost::kVersion));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints help/version to stdout, errors to stderr
    return code == 0 ? kExitOk : kExitUsage;
  }

  outpost::initLogging(logLevel, "outpost-devkafka");
  if (!outpost::aggregator::parseHostPort(listen, options.listenHost, options.listenPort)) {
    std::cerr << "--listen: expected HOST:PORT\n";  // unreachable: checked by the validator
    return kExitUsage;
  }
  if (!control.empty()) {
    options.control = true;
    outpost::aggregator::parseHostPort(control, options.controlHost, options.controlPort);
  }
  options.topics = topics.empty()
                       ? std::vector<std::string>{"outpost.readings", "outpost.anomalies",
                                                  "outpost.deadletter", "outpost.device-status"}
                       : topics;

  std::unique_ptr<outpost::aggregator::DevKafkaBroker> broker;
  try {
    broker = outpost::aggregator::DevKafkaBroker::start(options);
  } catch (const std::invalid_argument& e) {
    std::cerr << "outpost-devkafka: " << e.what() << "\n";
    return kExitUsage;
  }

  spdlog::warn("outpost-devkafka {} listening on {} ({} mock broker(s): {}). {}", outpost::kVersion,
               broker->bootstrapAddress(), options.brokers, broker->mockBootstraps(), kWarning);
  if (options.listenHost != "127.0.0.1" && options.listenHost != "localhost" &&
      options.listenHost != "::1") {
    spdlog::warn(
        "listening on {}, but the mock brokers advertise 127.0.0.1: clients on other hosts can "
        "bootstrap but cannot produce or consume",
        options.listenHost);
  }
  if (broker->controlPort() != 0) {
    spdlog::warn("fault injection: control commands accepted on {}:{} (send 'help')",
                 options.controlHost, broker->controlPort());
  }
  std::cout << broker->bootstrapAddress() << std::endl;

  if (!readyFile.empty()) writeReadyFile(readyFile, broker->bootstrapAddress());

  int rc = kExitOk;
  while (!outpost::signals::waitForStop(std::chrono::milliseconds(500))) {
    if (!broker->healthy()) {
      spdlog::error("forwarder stopped unexpectedly; shutting down");
      rc = kExitFailure;
      break;
    }
  }
  broker->stop();
  if (!readyFile.empty()) {
    std::error_code ec;
    std::filesystem::remove(readyFile, ec);
  }
  spdlog::info("stopped; all data discarded");
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "outpost-devkafka: " << e.what() << "\n";
    return kExitFailure;
  } catch (...) {
    std::cerr << "outpost-devkafka: unknown fatal error\n";
    return kExitFailure;
  }
}

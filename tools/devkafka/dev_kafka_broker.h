#pragma once

// DevKafkaBroker: an IN-MEMORY DEVELOPMENT Kafka broker for tests and the local demo. It runs
// librdkafka's mock cluster (rdkafka_mock.h) in this process and makes it reachable at a fixed
// bootstrap address through a small TCP forwarder. Everything is kept in memory: data is lost when
// the broker stops, and each partition keeps only about 5 MB or 100,000 message sets (older ones
// are dropped, like retention). Never use it in production; nothing in the aggregator depends on
// it.

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace outpost::aggregator {

class TcpForwarder;
class ControlServer;

// Settings for DevKafkaBroker::start(). Values are validated by start().
struct DevKafkaBrokerOptions {
  // Fixed bootstrap listener. `listenHost` is a numeric IPv4/IPv6 address or a host name; port 0
  // picks a free port (see DevKafkaBroker::bootstrapAddress()).
  std::string listenHost = "127.0.0.1";
  uint16_t listenPort = 9092;
  // Number of mock brokers, 1..kMaxBrokers.
  int brokers = 1;
  // Partition count of each pre-created topic, 1..kMaxPartitions.
  int partitions = 4;
  // Topics created at start-up with `partitions` partitions and replication factor
  // min(brokers, 3). Other topics are auto-created by the mock on first metadata request with the
  // mock's own built-in partition count (librdkafka 2.0.2 has no API to change it).
  std::vector<std::string> topics;
  // Fault-injection control port (docs/devkafka.md, "Fault injection"): off unless `control` is
  // set; `controlHost` must be a loopback address; port 0 picks a free port (see controlPort()).
  bool control = false;
  std::string controlHost = "127.0.0.1";
  uint16_t controlPort = 0;
};

// Parses "HOST:PORT" or "[IPV6]:PORT" into `host` and `port`. Returns false (and leaves the outputs
// unspecified) when the text is malformed or the port is not 0..65535.
bool parseHostPort(const std::string& text, std::string& host, uint16_t& port);

// Owns one mock cluster, the rd_kafka_t handle it needs, and the forwarder thread.
// Thread-safety: start(), stop() and the destructor are called by the owning thread only; the
// const accessors may be called from any thread while the object is alive.
class DevKafkaBroker {
 public:
  static constexpr int kMaxBrokers = 16;
  static constexpr int kMaxPartitions = 1000;

  // Creates the mock cluster, pre-creates `options.topics` and starts listening on the fixed
  // address. Throws std::invalid_argument for bad options and std::runtime_error when the cluster
  // cannot be created or the address cannot be bound (e.g. port in use). On return, clients can
  // connect to bootstrapAddress().
  static std::unique_ptr<DevKafkaBroker> start(const DevKafkaBrokerOptions& options);

  DevKafkaBroker(const DevKafkaBroker&) = delete;
  DevKafkaBroker& operator=(const DevKafkaBroker&) = delete;
  // Calls stop().
  ~DevKafkaBroker();

  // Closes the fixed listener and every forwarded connection, joins the forwarder thread, then
  // destroys the mock cluster (all data is lost). Idempotent.
  void stop();

  // The fixed bootstrap address clients should use, "HOST:PORT" with the actual bound port.
  const std::string& bootstrapAddress() const { return bootstrapAddress_; }
  // The mock cluster's own "127.0.0.1:PORT,..." list (random ports chosen by librdkafka). These are
  // also the addresses the brokers advertise in Metadata, so clients connect there after
  // bootstrapping.
  const std::string& mockBootstraps() const { return mockBootstraps_; }
  // False once the forwarder thread stopped because of an unrecoverable error.
  bool healthy() const;
  // The bound fault-injection control port, 0 when it is off.
  uint16_t controlPort() const;

  // Runs one fault-injection command on the mock cluster (docs/devkafka.md, "Fault injection":
  // push-errors, push-broker-errors, pending-errors, clear-errors, broker-down, broker-up, rtt,
  // leader, brokers, help) and returns its one-line reply, "ok ..." or "error: ..." naming the
  // bad argument and what is allowed. Callable from any thread while the object is alive (the
  // mock cluster API is thread-safe); fault_control.cc.
  std::string control(const std::string& line);

 private:
  DevKafkaBroker() = default;

  rd_kafka_s* rk_ = nullptr;                     // owned; destroyed after mcluster_
  rd_kafka_mock_cluster_s* mcluster_ = nullptr;  // owned
  std::unique_ptr<TcpForwarder> forwarder_;
  std::unique_ptr<ControlServer> controlServer_;  // stopped before the cluster is destroyed
  int brokers_ = 1;
  int partitions_ = 1;
  std::set<std::string> topics_;  // pre-created
  std::string bootstrapAddress_;
  std::string mockBootstraps_;
};

}  // namespace outpost::aggregator

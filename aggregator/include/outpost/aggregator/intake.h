#pragma once

// What a transport (MqttIngest, ZmqIngest) sees of the aggregator: batches go in through
// Intake::submit, each with the AckSink its ack goes back to.

#include <cstdint>
#include <string>

#include "outpost/aggregator/ack_sink.h"

namespace outpost::aggregator {

struct Inbound {
  std::string device;   // identity the transport vouches for (MQTT topic segment)
  std::string payload;  // untrusted bytes
  std::string source;   // where it came from, e.g. the MQTT topic (dead-letter header)
  int64_t received_us = 0;
  AckSink* reply = nullptr;
  const char* transport = "mqtt";  // metrics label: "mqtt", "zmq"
};

// Thread-safety: submit from any thread (each transport's receiving thread).
class Intake {
 public:
  virtual ~Intake() = default;
  // Hands one batch to the pipeline. Blocks while the pipeline is full: back-pressure reaches
  // the transport instead of a queue growing. Returns false once stopping (the batch is dropped
  // unacked; the agent resends it).
  virtual bool submit(Inbound in) = 0;
};

}  // namespace outpost::aggregator

#pragma once

// A minimal MQTT 3.1.1 client for load generation (the fleet's virtual agents and the
// ack-responder): one TCP connection, non-blocking, driven entirely by its owner's thread — no
// threads, no locks, no per-message allocation (publishes are encoded straight into the send
// buffer). QoS 0 and 1 publish, subscribe, keep-alive, clean sessions only, no TLS.
//
// Why not Paho: profiled at 10,000 virtual devices (docs/bench-notes/simulator.md), ~97 % of
// the fleet's CPU was inside Paho C/C++ (its receive and send threads, mutex hand-offs, a malloc
// per message and list walks), against ~3 % for generating and encoding the batches. The agent
// keeps Paho; this client is only for the simulator's load paths.
//
// Thread-safety: none; one thread owns a LiteMqtt.
// Untrusted input: packets from the broker are length-checked (at most max_packet bytes, a
// malformed packet closes the connection) before they are parsed.

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "outpost/common/status.h"

namespace outpost::sim {

struct LiteMqttOptions {
  std::string broker = "tcp://127.0.0.1:1883";  // tcp://host:port or host:port
  std::string client_id;
  std::string username;
  std::string password;  // never logged
  int keepalive_s = 30;
  int64_t connect_timeout_us = 10'000'000;
  size_t max_packet = 16u << 20;  // a larger incoming packet is a protocol error
};

class LiteMqtt {
 public:
  // Called from io() for every PUBLISH received (its PUBACK is already queued for QoS 1). The
  // views are valid during the call only.
  using OnMessage = std::function<void(std::string_view topic, std::span<const uint8_t> payload)>;

  LiteMqtt() = default;
  ~LiteMqtt();
  LiteMqtt(const LiteMqtt&) = delete;
  LiteMqtt& operator=(const LiteMqtt&) = delete;

  void setOnMessage(OnMessage f) { on_message_ = std::move(f); }

  // Blocking: TCP connect, CONNECT (clean session), CONNACK. Drops any previous connection and
  // its state. kUnavailable when the broker cannot be reached or refuses.
  Status connect(const LiteMqttOptions& options);
  // Blocking until SUBACK (other packets are processed meanwhile). Several filters go in one
  // SUBSCRIBE packet; any refused filter fails the call.
  Status subscribe(std::string_view filter, int qos, int64_t timeout_us);
  Status subscribe(std::span<const std::string> filters, int qos, int64_t timeout_us);

  // Queues a publish. False when the connection is down or (QoS 1) 65,535 are already pending.
  bool publish(std::string_view topic, std::span<const uint8_t> payload, int qos, bool retain);
  // QoS 1 publishes sent and not yet acknowledged by the broker (PUBACK).
  int pending() const { return pending_; }
  // Bytes queued and not yet written to the socket.
  size_t unsent() const { return wbuf_.size() - woff_; }

  // Writes what is queued, reads what arrived (if `read`), sends PINGREQ when idle, detects a
  // dead broker (no packet for 1.5 x keep-alive). Never blocks. False when the connection is
  // (now) down.
  bool io(int64_t now_mono_us, bool read = true);
  bool up() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Sends DISCONNECT (best effort, flushing up to `flush_us`) and closes.
  void disconnect(int64_t flush_us = 1'000'000);
  // Why the connection went down (empty while up).
  const std::string& lastError() const { return error_; }

 private:
  void closeWith(std::string why);
  bool flush();
  bool readSome();
  bool parse(int64_t now);
  void putRemainingLength(size_t n);
  void putString(std::string_view s);

  int fd_ = -1;
  OnMessage on_message_;
  std::vector<uint8_t> wbuf_;
  size_t woff_ = 0;
  std::vector<uint8_t> rbuf_;
  size_t roff_ = 0, rlen_ = 0;
  std::vector<uint8_t> in_use_;  // per packet id: 1 while its PUBACK is pending
  uint16_t next_id_ = 0;
  int pending_ = 0;
  int keepalive_s_ = 30;
  size_t max_packet_ = 16u << 20;
  int64_t last_send_us_ = 0, last_recv_us_ = 0;
  bool ping_out_ = false;
  int suback_ = -1;  // granted QoS of the last SUBACK, -1 none yet, 0x80 failure
  bool connack_ = false;
  int connack_rc_ = -1;
  std::string error_;
};

// Splits tcp://host:port (also mqtt:// or host:port). kInvalidArgument for ssl:// and bad forms.
Result<std::pair<std::string, std::string>> splitBrokerUri(const std::string& uri);

}  // namespace outpost::sim

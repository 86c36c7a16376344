#pragma once

// Fault injection for outpost-devkafka (docs/devkafka.md, "Fault injection"): a tiny line protocol
// over a loopback TCP port that drives librdkafka's mock cluster API: request errors, brokers
// down and up, round-trip time, partition leaders. For tests only; off unless --control is given.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace outpost::aggregator {

// Accepts connections on a loopback address, one at a time; each line received is passed to
// `handler` and its result is sent back followed by '\n'. A connection idle for 30 s, or a line
// longer than 4 KiB, is closed. Thread-safety: constructor, stop() and the destructor from the
// owning thread only; `handler` runs on the server's own thread.
class ControlServer {
 public:
  using Handler = std::function<std::string(const std::string& line)>;

  // Binds and listens on HOST:PORT (port 0 = any) and starts the thread. Throws
  // std::invalid_argument when HOST is not a loopback address and std::runtime_error when the
  // address cannot be bound.
  ControlServer(const std::string& host, uint16_t port, Handler handler);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  ~ControlServer();

  // Wakes and joins the thread; closes the listener and any open connection. Idempotent.
  void stop();
  uint16_t boundPort() const { return boundPort_; }

 private:
  void run();
  void serve(int fd);  // one connection, until EOF, error, idle time-out or stop()

  Handler handler_;
  int listenFd_ = -1;
  int wakeFd_ = -1;
  uint16_t boundPort_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace outpost::aggregator

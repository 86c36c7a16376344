#pragma once

// Readings from Modbus slaves (libmodbus), TCP or RTU. One ModbusSource serves one link — a TCP
// connection to one slave, or one serial bus with every slave configured on that device — on its
// own thread, so a slave that does not answer delays only the slaves on its own link (on a shared
// RS-485 bus that is physics). Each slave's sensors are grouped by poll interval, and each group
// into as few read requests as planModbusRequests() allows; due groups are read in turn.
//
// Failures: every failed request attempt is counted by reason (timeout, exception with its code,
// crc, connection, bad_response); timeouts, CRC errors and bad responses are retried up to
// `retries` times, exceptions are not (the slave answered). A connection error closes the link
// and reconnects with exponential backoff (reconnect_min_ms .. reconnect_max_ms); so does, on
// TCP, a request whose attempts all timed out. After such a request the rest of that slave's due
// requests are skipped for this cycle (counted as skipped), so a dead slave costs one timeout
// series per cycle, not one per request. Failed reads produce no reading. A request that holds
// several sensors and is answered with exception 2 (illegal data address: the range covers an
// address the slave does not map) is replaced by one request per sensor, so the others keep
// their readings and only the bad address goes on failing (counted).
//
// Threads: the link's thread does all I/O; readings reach the pipeline thread through a
// ReadingHandoff that never blocks the link (full: dropped and counted). sensors()/poll() from the
// pipeline thread; the counters from any thread.

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "outpost/agent/inputs.h"
#include "outpost/agent/modbus_spec.h"
#include "outpost/agent/reading_handoff.h"
#include "outpost/agent/source.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::agent {

enum class ModbusError { kTimeout, kException, kCrc, kConnection, kBadResponse, kCount };
const char* modbusErrorName(ModbusError e);
// What a libmodbus errno means; `exception_code` is set (1..11) for kException.
ModbusError classifyModbusErrno(int err, int& exception_code);

class ModbusSource final : public Source {
 public:
  // `slaves`: the slaves of one link (same linkKey(), non-empty); the sensors with source modbus
  // naming one of them are read. Throws config::ConfigError when libmodbus rejects the settings.
  // The thread starts here; connecting happens on it.
  ModbusSource(const std::vector<ModbusSlaveSpec>& slaves, const std::vector<SensorSpec>& sensors,
               const SourcesSpec& opt, const Clock& clock, metrics::Registry* registry);
  ~ModbusSource() override;
  // Starts the link's thread (it connects and polls). Once.
  void start();
  // Asks the thread to stop after the request in flight (at most one response timeout); the
  // destructor waits for it. Lets several links wind down at once. Any thread.
  void requestStop();

  const std::vector<codec::SensorInfo>& sensors() const override { return infos_; }
  int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) override;

  // Counters of the slave `slave` (index into the constructor's `slaves`).
  uint64_t errors(size_t slave, ModbusError e) const;
  uint64_t exceptions(size_t slave, int code) const;  // code 1..11
  uint64_t requests(size_t slave) const;
  uint64_t skipped(size_t slave) const;
  uint64_t readings() const { return readings_.load(); }
  uint64_t dropped() const { return handoff_.dropped(); }
  bool connected() const { return connected_.load(); }
  // The read requests of every group (tests, the start-up log). Link thread only once started.
  size_t requestCount() const;

 private:
  struct Point {
    uint16_t id;
    ModbusPoint p;
  };
  struct Group {
    size_t slave;
    int64_t interval_us;
    int64_t next_us = 0;  // monotonic
    std::vector<Point> points;
    std::vector<ModbusRequest> requests;
  };
  struct SlaveStats {
    std::array<std::atomic<uint64_t>, static_cast<size_t>(ModbusError::kCount)> errors{};
    std::array<std::atomic<uint64_t>, 12> exceptions{};
    std::atomic<uint64_t> requests{0};
    std::atomic<uint64_t> skipped{0};
    std::array<metrics::Counter*, static_cast<size_t>(ModbusError::kCount)> error_counters{};
    std::array<metrics::Counter*, 12> exception_counters{};
    metrics::Counter* requests_counter = nullptr;
    metrics::Counter* skipped_counter = nullptr;
    metrics::Counter* readings_counter = nullptr;
    metrics::Gauge* connected = nullptr;
  };
  struct Ctx;

  void run();
  bool connect();
  void disconnect();
  // Reads one group; returns false when the link must reconnect.
  bool readGroup(Group& g);
  // Counts a failed attempt; logs the first 3 of each reason and every 1000th, with `detail`.
  void count(size_t slave, ModbusError e, int code, const char* detail);
  bool waitFor(int64_t us);  // false when stopping

  std::vector<ModbusSlaveSpec> slaves_;
  const Clock& clock_;
  metrics::Registry* registry_;
  std::vector<Group> groups_;
  std::vector<codec::SensorInfo> infos_;
  std::unique_ptr<SlaveStats[]> stats_;
  ReadingHandoff handoff_;
  std::atomic<uint64_t> readings_{0};
  std::atomic<bool> connected_{false};
  uint64_t opens_ = 0;   // link thread only
  uint64_t closes_ = 0;  // link thread only
  std::unique_ptr<Ctx> ctx_;
  Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace outpost::agent

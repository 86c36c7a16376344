#pragma once

// Sources fed by local writers of text: standard input and a Unix stream socket, in line protocol,
// JSON lines or CSV (line_parser.h). A reader thread per source parses lines and hands readings
// to the pipeline thread through a ReadingHandoff (bounded). A bad line is counted by reason and
// logged (rate-limited), never fatal.

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "outpost/agent/inputs.h"
#include "outpost/agent/line_parser.h"
#include "outpost/agent/reading_handoff.h"
#include "outpost/agent/source.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::agent {

// Receives the readings a LineDecoder produces.
class ReadingSink {
 public:
  virtual ~ReadingSink() = default;
  virtual void push(const wire::Reading& r) = 0;
};

using SensorNames = std::map<std::string, uint16_t, std::less<>>;

// Splits a byte stream into lines and turns each into a reading. One decoder per stream (a
// connection); not thread-safe. Holds at most max_line_bytes of a partial line.
class LineDecoder {
 public:
  struct Counts {
    uint64_t lines = 0;
    uint64_t readings = 0;
    std::array<uint64_t, static_cast<size_t>(LineError::kCount)> errors{};
    uint64_t errorsTotal() const;
  };
  // `names` and `error_counters` (one per LineError, may be null) must outlive the decoder.
  LineDecoder(LineFormat format, const SensorNames* names, size_t max_line_bytes, std::string label,
              const std::array<metrics::Counter*, static_cast<size_t>(LineError::kCount)>*
                  error_counters = nullptr);

  // Feeds bytes as they arrive; complete lines are parsed. `now_us` stamps lines without a
  // timestamp and bounds plausible ones.
  void feed(std::string_view bytes, int64_t now_us, ReadingSink& sink);
  // End of stream: a last line without '\n' is parsed too.
  void finish(int64_t now_us, ReadingSink& sink);
  const Counts& counts() const { return counts_; }
  // The name map for the following lines (SIGHUP changed the sensors); must outlive its use.
  void setNames(const SensorNames* names) { names_ = names; }

 private:
  void line(std::string_view text, int64_t now_us, ReadingSink& sink);
  void error(LineError e, std::string_view text);

  LineFormat format_;
  const SensorNames* names_;
  size_t max_line_bytes_;
  std::string label_;
  const std::array<metrics::Counter*, static_cast<size_t>(LineError::kCount)>* error_counters_;
  std::string partial_;      // reserved once
  bool discarding_ = false;  // inside a too-long line
  Counts counts_;
};

// Common part of stdin and socket sources: the handoff, the counters, the reader thread.
class StreamSource : public Source {
 public:
  ~StreamSource() override;
  const std::vector<codec::SensorInfo>& sensors() const override { return infos_; }
  // Drains what the reader thread handed over; returns now (more may wait) or now + 5 ms.
  int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) override;
  // Totals over every stream this source read (reader thread's counts; for tests after stop()).
  LineDecoder::Counts counts() const;
  // True once the input ended (stdin EOF) and everything read was handed over.
  bool finished() const { return finished_.load() && handoff_.size() == 0; }
  void stop();
  // SIGHUP: the sensors of this source's kind in `sensors` become the ones it reads; lines
  // decoded after the reader thread's next read use them (no restart, no byte lost). Pipeline
  // thread only.
  void setSensors(const std::vector<SensorSpec>& sensors);

 protected:
  StreamSource(const std::string& label, const std::vector<SensorSpec>& sensors, SourceKind kind,
               const SourcesSpec& opt, const Clock& clock, metrics::Registry* registry);
  void start(std::thread t) { thread_ = std::move(t); }
  virtual void run() = 0;
  // Adds what a decoder counted since `reported` to the totals and metrics.
  void report(const LineDecoder::Counts& now, LineDecoder::Counts& reported);
  // Reader thread: the current name map if it changed since `seen` (updates `hold` and `seen`),
  // else null.
  const SensorNames* namesIfChanged(std::shared_ptr<const SensorNames>& hold, uint64_t& seen);

  class ChunkSink;
  std::string label_;
  SourcesSpec opt_;
  const Clock& clock_;
  SourceKind kind_;
  std::shared_ptr<const SensorNames> names_ GUARDED_BY(names_mu_);  // replaced, never changed
  Mutex names_mu_;
  std::atomic<uint64_t> names_gen_{0};
  std::vector<codec::SensorInfo> infos_;  // pipeline thread
  std::array<metrics::Counter*, static_cast<size_t>(LineError::kCount)> error_counters_{};
  metrics::Counter* readings_counter_ = nullptr;
  ReadingHandoff handoff_;
  int stop_fd_ = -1;  // eventfd: wakes the reader thread's poll()
  std::atomic<bool> finished_{false};
  mutable Mutex counts_mu_;
  LineDecoder::Counts totals_ GUARDED_BY(counts_mu_);
  std::thread thread_;
};

// Reads `fd` (standard input by default) until EOF.
class StdinSource final : public StreamSource {
 public:
  StdinSource(const std::vector<SensorSpec>& sensors, const SourcesSpec& opt, const Clock& clock,
              metrics::Registry* registry, int fd = 0);
  ~StdinSource() override { stop(); }

 private:
  void run() override;
  int fd_;
};

// Listens on a Unix stream socket (opt.socket_path; a stale socket file is replaced) and reads
// every connection, up to opt.socket_max_clients at once.
class SocketSource final : public StreamSource {
 public:
  SocketSource(const std::vector<SensorSpec>& sensors, const SourcesSpec& opt, const Clock& clock,
               metrics::Registry* registry);
  ~SocketSource() override;

  // Throws config::ConfigError if `path` cannot become the listening socket (too long, or an
  // existing file that is not a socket). The constructor checks the same; a reload checks first.
  static void checkPath(const std::string& path);

 private:
  void run() override;
  int listen_fd_ = -1;
  metrics::Counter* refused_ = nullptr;
};

}  // namespace outpost::agent

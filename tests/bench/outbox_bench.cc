// outpost-bench-outbox: the SQLite outbox alone, no pipeline, no network.
//
//   write   — readings/s committed with appendMany() groups of --group batches of --readings
//             readings, synchronous=full|normal (optionally acking behind the writer, as the uplink
//             does in steady state, so the store stays small);
//   startup — fills a store to --fill-mb of payload (once), then times Outbox::open() on it, with
//             the page cache dropped first when --drop-caches is given (root).
//
// Prints one line per run plus a summary line with the median. Not a test: no assertions on time.

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"

namespace {

using namespace outpost;
using Steady = std::chrono::steady_clock;

codec::BatchContent makeBatch(size_t n, int64_t now_us) {
  codec::BatchContent b;
  b.device_id = "bench-device";
  b.created_us = now_us;
  b.sensors = {{0, "s0", "C"}, {1, "s1", "%"}};
  b.readings.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    b.readings.emplace_back(now_us + static_cast<int64_t>(i), 20.0 + 0.001 * static_cast<double>(i),
                            static_cast<uint16_t>(i % 2), wire::Quality::Good);
  }
  return b;
}

double seconds(Steady::duration d) { return std::chrono::duration<double>(d).count(); }

void removeStore(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
}

struct WriteArgs {
  std::string dir;
  std::string synchronous = "full";
  size_t readings = 500;
  size_t group = 16;
  double duration_s = 3;
  bool ack = true;
};

// One run: readings/s.
double writeRun(const WriteArgs& a) {
  const std::string path = a.dir + "/outbox-bench.db";
  removeStore(path);
  agent::OutboxOptions o;
  o.path = path;
  o.synchronous = a.synchronous;
  o.max_bytes = 1ull << 40;
  auto box = agent::Outbox::open(o, SystemClock::instance());
  if (!box) {
    std::fprintf(stderr, "open: %s\n", box.error().toString().c_str());
    std::exit(1);
  }
  const auto proto = makeBatch(a.readings, SystemClock::instance().nowUs());
  std::vector<codec::BatchContent> group(a.group, proto);
  std::vector<uint64_t> to_ack;
  uint64_t readings = 0, acked_up_to = 0;
  const auto start = Steady::now();
  const auto end = start + std::chrono::duration_cast<Steady::duration>(
                               std::chrono::duration<double>(a.duration_s));
  while (Steady::now() < end) {
    for (auto& b : group) b.readings = proto.readings;  // the pipeline hands over fresh batches
    auto r = (*box)->appendMany(group);
    if (!r || r->stored != group.size()) {
      std::fprintf(stderr, "append failed: %s\n",
                   r ? "not all stored" : r.error().toString().c_str());
      std::exit(1);
    }
    readings += r->stored_readings;
    if (a.ack) {
      // Acks lag the writes by a window of 64 batches, in groups (like the uplink's ack handling).
      const uint64_t last = (*box)->stats().last_seq;
      to_ack.clear();
      while (acked_up_to + 64 < last) to_ack.push_back(++acked_up_to);
      if (auto st = (*box)->ackMany(to_ack); !st) {
        std::fprintf(stderr, "ack failed: %s\n", st.error().toString().c_str());
        std::exit(1);
      }
    }
  }
  const double rate = static_cast<double>(readings) / seconds(Steady::now() - start);
  box->reset();
  removeStore(path);
  return rate;
}

struct StartupArgs {
  std::string dir;
  uint64_t fill_mb = 1024;
  bool drop_caches = false;
};

// One run: seconds to open a store holding fill_mb of payload (filled on the first run).
double startupRun(const StartupArgs& a, bool& filled) {
  const std::string path = a.dir + "/outbox-startup.db";
  agent::OutboxOptions o;
  o.path = path;
  o.synchronous = "normal";
  o.max_bytes = 1ull << 40;
  if (!filled) {
    removeStore(path);
    auto box = agent::Outbox::open(o, SystemClock::instance());
    if (!box) std::exit(1);
    const auto proto = makeBatch(500, SystemClock::instance().nowUs());
    std::vector<codec::BatchContent> group(64, proto);
    while ((*box)->stats().bytes < a.fill_mb << 20) {
      for (auto& b : group) b.readings = proto.readings;
      if (!(*box)->appendMany(group)) std::exit(1);
    }
    std::printf("filled %s: %llu batches, %llu payload bytes, file %llu bytes\n", path.c_str(),
                static_cast<unsigned long long>((*box)->stats().rows),
                static_cast<unsigned long long>((*box)->stats().bytes),
                static_cast<unsigned long long>(std::filesystem::file_size(path)));
    filled = true;
  }
  if (a.drop_caches) {
    sync();
    const int fd = ::open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (fd < 0 || ::write(fd, "3\n", 2) != 2) std::fprintf(stderr, "cannot drop caches (root?)\n");
    if (fd >= 0) ::close(fd);
  }
  const auto start = Steady::now();
  auto box = agent::Outbox::open(o, SystemClock::instance());
  const double s = seconds(Steady::now() - start);
  if (!box) std::exit(1);
  std::printf("open: %.3f s, %llu batches waiting\n", s,
              static_cast<unsigned long long>((*box)->stats().rows));
  return s;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"outpost-bench-outbox: SQLite outbox write throughput and start-up time"};
  std::string mode = "write";
  int runs = 5;
  WriteArgs w;
  StartupArgs s;
  std::string dir = std::filesystem::temp_directory_path().string();
  app.add_option("mode", mode, "write | startup")->check(CLI::IsMember({"write", "startup"}));
  app.add_option("--dir", dir, "Directory for the store (default: the temp directory)");
  app.add_option("--runs", runs, "Runs; the median is reported")->check(CLI::Range(1, 100));
  app.add_option("--synchronous", w.synchronous, "full | normal")
      ->check(CLI::IsMember({"full", "normal"}));
  app.add_option("--readings", w.readings, "Readings per batch")->check(CLI::Range(1, 100000));
  app.add_option("--group", w.group, "Batches per transaction (appendMany)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--seconds", w.duration_s, "Duration of one write run")
      ->check(CLI::Range(0.1, 600.0));
  app.add_flag("!--no-ack", w.ack, "Do not ack behind the writer (the store grows)");
  app.add_option("--fill-mb", s.fill_mb, "startup: payload MB in the store")
      ->check(CLI::Range(1, 65536));
  app.add_flag("--drop-caches", s.drop_caches, "startup: drop the page cache before each open");
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);
  w.dir = s.dir = dir;

  std::vector<double> results;
  bool filled = false;
  for (int i = 0; i < runs; ++i) {
    if (mode == "write") {
      const double r = writeRun(w);
      std::printf("run %d: %.0f readings/s (%.0f batches/s)\n", i + 1, r,
                  r / static_cast<double>(w.readings));
      results.push_back(r);
    } else {
      results.push_back(startupRun(s, filled));
    }
    std::fflush(stdout);
  }
  if (mode == "write") {
    std::printf(
        "outbox write synchronous=%s readings/batch=%zu group=%zu ack=%s: median %.0f "
        "readings/s over %d runs\n",
        w.synchronous.c_str(), w.readings, w.group, w.ack ? "yes" : "no", median(results), runs);
  } else {
    std::printf("outbox startup fill=%llu MB drop_caches=%s: median %.3f s over %d runs\n",
                static_cast<unsigned long long>(s.fill_mb), s.drop_caches ? "yes" : "no",
                median(results), runs);
  }
  return 0;
}

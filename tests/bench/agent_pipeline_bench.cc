// agent_pipeline_bench: throughput of the agent's pipeline thread, source -> filters -> windows ->
// batcher -> SQLite outbox, all on one thread as in the agent (docs/benchmarks.md).
//
// The source is the simulated one (virtual time, so it produces as fast as it is polled) or the
// line-protocol decoder over text prepared in memory (measures parsing too). Every batch is
// committed to a real outbox file, --group batches per transaction (Outbox::appendMany);
// acknowledgements come from a second thread, as the uplink's would, so the store stays small
// (--no-acks: let it grow).
// Prints one line per run and the median; exits non-zero only on errors (never on speed).

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "outpost/agent/batcher.h"
#include "outpost/agent/inputs.h"
#include "outpost/agent/outbox.h"
#include "outpost/agent/sensor_pipeline.h"
#include "outpost/agent/simulated_source.h"
#include "outpost/agent/stream_source.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

struct Options {
  uint64_t readings = 5'000'000;
  int sensors = 100;
  size_t batch = 500;
  size_t group = 16;
  std::string synchronous = "normal";
  std::string source = "simulated";
  std::string filters = "range,dedup";
  std::string window = "tumbling";
  std::string output = "both";
  int runs = 5;
  bool acks = true;
  std::string dir;
};

double threadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

struct RunResult {
  double seconds = 0;
  double cpu_seconds = 0;  // the pipeline thread's CPU time: what a quiet machine would need
  double outbox_seconds = 0;
  double outbox_cpu_seconds = 0;  // pipeline-thread CPU inside Outbox::append (encode + SQLite)
  uint64_t readings_in = 0;
  uint64_t readings_out = 0;
  uint64_t windows_out = 0;
  uint64_t batches = 0;
};

std::vector<SensorSpec> makeSensors(const Options& o) {
  std::vector<SensorSpec> out;
  for (int i = 0; i < o.sensors; ++i) {
    SensorSpec s;
    s.id = static_cast<uint16_t>(i);
    s.name = "s" + std::to_string(i);
    s.unit = "u";
    s.source = o.source == "lines" ? SourceKind::kStdin : SourceKind::kSimulated;
    s.simulated.name = s.name;
    s.simulated.rate_hz = 1000;
    s.simulated.shape = Shape::kSine;
    s.simulated.amplitude = 5;
    s.simulated.offset = 20;
    s.simulated.noise = 0.1;
    s.simulated.seed = static_cast<uint64_t>(i + 1);
    std::string rest = o.filters;
    while (!rest.empty()) {
      const std::string f = rest.substr(0, rest.find(','));
      rest = rest.find(',') == std::string::npos ? "" : rest.substr(rest.find(',') + 1);
      FilterSpec fs;
      if (f == "range") {
        fs.kind = FilterKind::kRange;
        fs.min = -1e6;
        fs.max = 1e6;
      } else if (f == "dedup") {
        fs.kind = FilterKind::kDedup;
      } else if (f == "deadband") {
        fs.kind = FilterKind::kDeadband;  // bands 0: any change passes (noisy signal: all)
      } else if (f == "rate_limit") {
        fs.kind = FilterKind::kRateLimit;
        fs.max_per_second = 1000000;
      } else if (f != "none") {
        throw std::invalid_argument("unknown filter " + f);
      } else {
        continue;
      }
      s.filters.push_back(fs);
    }
    if (o.window == "tumbling") {
      s.window = {WindowKind::kTumbling, 10'000'000, 10'000'000, 1'000'000};
    } else if (o.window == "sliding") {
      s.window = {WindowKind::kSliding, 10'000'000, 2'000'000, 1'000'000};
    }
    s.output = s.window.kind == WindowKind::kNone ? Output::kRaw
               : o.output == "windows"            ? Output::kWindows
               : o.output == "raw"                ? Output::kRaw
                                                  : Output::kBoth;
    out.push_back(std::move(s));
  }
  return out;
}

struct VectorSink final : ReadingSink {
  std::vector<wire::Reading>* out = nullptr;
  void push(const wire::Reading& r) override { out->push_back(r); }
};

RunResult runOnce(const Options& o, int run) {
  const std::string path = o.dir + "/bench-" + std::to_string(run) + ".db";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  OutboxOptions oo;
  oo.path = path;
  oo.max_bytes = 4ull << 30;
  oo.synchronous = o.synchronous;
  auto box = Outbox::open(oo, SystemClock::instance());
  if (!box) throw std::runtime_error(box.error().toString());
  Outbox& outbox = **box;

  const auto sensors = makeSensors(o);
  std::vector<codec::SensorInfo> dict;
  for (const auto& s : sensors) dict.push_back({s.id, s.name, s.unit});
  SensorPipeline pipeline(sensors, nullptr);
  Batcher batcher(o.batch, 3'600'000'000LL, dict);

  // Acks from another thread, a few batches behind, as the uplink's would arrive.
  std::atomic<uint64_t> last_seq{0};
  std::atomic<bool> done{false};
  std::atomic<bool> ack_failed{false};
  std::thread acker;
  if (o.acks) {
    acker = std::thread([&] {
      uint64_t acked = 0;
      std::vector<uint64_t> seqs;
      while (!done.load()) {
        const uint64_t upto = last_seq.load();
        seqs.clear();
        while (acked + 32 < upto) seqs.push_back(++acked);
        if (!seqs.empty() && !outbox.ackMany(seqs)) {
          ack_failed.store(true);
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    });
  }

  // Source input prepared before the clock starts.
  const int64_t t0 = 1714564800LL * 1000000;
  std::vector<SimulatedSensorSpec> sim;
  for (const auto& s : sensors) sim.push_back(s.simulated);
  SimulatedSource simulated(sim, t0);
  std::string text;
  SensorNames names;
  if (o.source == "lines") {
    for (const auto& s : sensors) names.emplace(s.name, s.id);
    const uint64_t per_sensor = o.readings / sensors.size() + 1;
    text.reserve(o.readings * 28);
    char line[96];
    for (uint64_t k = 0; k < per_sensor; ++k) {
      for (const auto& s : sensors) {
        const int n = std::snprintf(line, sizeof line, "%s %.4f %lld\n", s.name.c_str(),
                                    20 + 5 * std::sin(static_cast<double>(k) * 0.01) + s.id * 0.001,
                                    static_cast<long long>(t0 + static_cast<int64_t>(k) * 1000));
        text.append(line, static_cast<size_t>(n));
      }
    }
  }
  LineDecoder decoder(LineFormat::kLine, &names, 4096, "bench");
  VectorSink sink;

  RunResult res;
  std::vector<wire::Reading> scratch;
  scratch.reserve(1 << 16);
  sink.out = &scratch;
  const auto& clock = SystemClock::instance();
  int64_t virtual_now = t0;
  size_t text_pos = 0;
  double outbox_s = 0;
  // Closed batches are committed `group` at a time, one transaction each (Outbox::appendMany).
  std::vector<codec::BatchContent> pending;
  pending.reserve(o.group);
  uint64_t stored = 0;
  auto commit = [&] {
    if (pending.empty()) return;
    const auto a = std::chrono::steady_clock::now();
    const double cpu_a = threadCpuSeconds();
    auto outcome = outbox.appendMany(pending);
    outbox_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count();
    res.outbox_cpu_seconds += threadCpuSeconds() - cpu_a;
    if (!outcome) throw std::runtime_error(outcome.error().toString());
    if (outcome->stored != pending.size()) throw std::runtime_error("outbox dropped batches");
    stored += outcome->stored;
    last_seq.store(stored);  // a fresh store numbers batches 1, 2, ...
    pending.clear();
  };
  auto flush = [&](int64_t mono) {
    pending.push_back(batcher.take("bench-device", clock.nowUs()));
    res.readings_out += pending.back().readings.size();
    res.windows_out += pending.back().windows.size();
    ++res.batches;
    if (pending.size() >= o.group) commit();
  };

  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = threadCpuSeconds();
  while (res.readings_in < o.readings) {
    scratch.clear();
    if (o.source == "lines") {
      if (text_pos >= text.size()) break;
      const size_t n = std::min<size_t>(64 * 1024, text.size() - text_pos);
      const size_t end = text.rfind('\n', text_pos + n - 1) + 1;  // whole lines
      decoder.feed(std::string_view(text).substr(text_pos, end - text_pos), t0 + 3600'000'000LL,
                   sink);
      text_pos = end;
    } else {
      virtual_now += 10'000;  // 10 ms of sensor time per poll: 10 readings per sensor
      simulated.poll(virtual_now, scratch);
    }
    const int64_t mono = clock.monotonicUs();
    for (const auto& r : scratch) {
      if (res.readings_in >= o.readings) break;
      pipeline.process(r, mono, batcher);
      ++res.readings_in;
      if (batcher.full()) flush(mono);
    }
  }
  pipeline.closeAll(clock.monotonicUs(), batcher);
  if (!batcher.empty()) flush(clock.monotonicUs());
  commit();
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  res.cpu_seconds = threadCpuSeconds() - cpu_start;
  res.outbox_seconds = outbox_s;
  done.store(true);
  if (acker.joinable()) acker.join();
  if (ack_failed.load()) throw std::runtime_error("outbox ack failed");
  box->reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "agent_pipeline_bench: source -> filters -> windows -> batcher -> outbox on one "
      "thread"};
  app.add_option("--readings", o.readings, "Readings per run")->capture_default_str();
  app.add_option("--sensors", o.sensors, "Sensors")
      ->capture_default_str()
      ->check(CLI::Range(1, 60000));
  app.add_option("--batch", o.batch, "Readings (and windows) per batch")->capture_default_str();
  app.add_option("--group", o.group, "Batches per outbox transaction (Outbox::appendMany)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--synchronous", o.synchronous, "Outbox synchronous mode")
      ->check(CLI::IsMember({"normal", "full"}))
      ->capture_default_str();
  app.add_option("--source", o.source, "simulated or lines (line protocol parsed from memory)")
      ->check(CLI::IsMember({"simulated", "lines"}))
      ->capture_default_str();
  app.add_option("--filters", o.filters,
                 "Comma-separated chain per sensor: range, dedup, deadband, rate_limit, none")
      ->capture_default_str();
  app.add_option("--window", o.window, "none, tumbling (10 s) or sliding (10 s / 2 s)")
      ->check(CLI::IsMember({"none", "tumbling", "sliding"}))
      ->capture_default_str();
  app.add_option("--output", o.output, "raw, windows or both (with a window)")
      ->check(CLI::IsMember({"raw", "windows", "both"}))
      ->capture_default_str();
  app.add_option("--runs", o.runs, "Runs; the median is reported")->capture_default_str();
  bool no_acks = false;
  app.add_flag("--no-acks", no_acks, "Do not acknowledge batches (the store grows)");
  app.add_option("--dir", o.dir, "Directory for the outbox file (default: a temporary one)");
  CLI11_PARSE(app, argc, argv);
  o.acks = !no_acks;
  spdlog::set_level(spdlog::level::warn);
  std::filesystem::path tmp;
  if (o.dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "outpost-bench-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::cerr << "mkdtemp failed\n";
      return 1;
    }
    tmp = tmpl;
    o.dir = tmpl;
  }
  std::printf(
      "agent pipeline: %llu readings/run, %d sensors, batch %zu, group %zu, synchronous=%s, "
      "source=%s, filters=%s, window=%s, output=%s, acks=%s\n",
      static_cast<unsigned long long>(o.readings), o.sensors, o.batch, o.group,
      o.synchronous.c_str(), o.source.c_str(), o.filters.c_str(), o.window.c_str(),
      o.output.c_str(), o.acks ? "yes" : "no");
  std::vector<double> rates, cpu_rates, outbox_shares;
  int rc = 0;
  try {
    for (int run = 0; run < o.runs; ++run) {
      const RunResult r = runOnce(o, run);
      const double rate = static_cast<double>(r.readings_in) / r.seconds;
      rates.push_back(rate);
      cpu_rates.push_back(static_cast<double>(r.readings_in) / r.cpu_seconds);
      outbox_shares.push_back(r.outbox_seconds / r.seconds);
      std::printf(
          "run %d: %llu readings in %.3f s = %.0f readings/s; %llu batches (%.0f/s), %llu "
          "raw + %llu windows out; outbox append %.0f%% of the time; pipeline thread CPU %.3f s "
          "(%.0f readings per CPU-second), of which outbox append %.3f s\n",
          run + 1, static_cast<unsigned long long>(r.readings_in), r.seconds, rate,
          static_cast<unsigned long long>(r.batches), static_cast<double>(r.batches) / r.seconds,
          static_cast<unsigned long long>(r.readings_out),
          static_cast<unsigned long long>(r.windows_out), 100 * r.outbox_seconds / r.seconds,
          r.cpu_seconds, static_cast<double>(r.readings_in) / r.cpu_seconds, r.outbox_cpu_seconds);
      std::fflush(stdout);
    }
    std::vector<double> sorted = rates;
    std::sort(sorted.begin(), sorted.end());
    std::sort(outbox_shares.begin(), outbox_shares.end());
    std::sort(cpu_rates.begin(), cpu_rates.end());
    std::printf(
        "median: %.0f readings/s wall (min %.0f, max %.0f) over %d runs; %.0f readings per "
        "pipeline-thread CPU-second; outbox append median %.0f%% of the wall time\n",
        sorted[sorted.size() / 2], sorted.front(), sorted.back(), o.runs,
        cpu_rates[cpu_rates.size() / 2], 100 * outbox_shares[outbox_shares.size() / 2]);
  } catch (const std::exception& e) {
    std::cerr << "agent_pipeline_bench: " << e.what() << "\n";
    rc = 1;
  }
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  return rc;
}

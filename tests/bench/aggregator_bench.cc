// outpost-bench-aggregator: load generator and meter for the aggregator path
//   MQTT in -> verify -> dedup -> Kafka delivered -> ack back over MQTT.
//
// Plays N virtual agents against a real MQTT broker and a running outpost-aggregator. Every batch
// is encoded before the clock starts (codec::encodeBatch; one epoch per run, seq 1, 2, ... per
// device, timestamps near now), published QoS 1 to {prefix}/{device}/batch, and matched to its
// ack on {prefix}/{device}/ack (codec::verifyAck). Nothing is ever resent: a batch without an
// ack at the end is reported as never acked.
//
// One Paho async client per virtual device, like real agents: each device has its own
// connection, session and ack subscription, and the broker applies its per-client limits
// (max_inflight_messages, max_queued_messages) per device. Paho C serves every client of a
// process with the same two I/O threads, so more clients cost sockets, not threads. Like the
// agent's uplink, each device turns Nagle's algorithm off on its broker connection
// (net::setTcpNoDelayToPeer; --no-tcp-nodelay keeps it on, as agents did before).
//
// A benchmark, not a test: it asserts correctness only (exit 1 if any batch is rejected, never
// acked, acked twice or answered with a malformed ack); timing figures are reported, never
// checked. Output: a human summary on stdout whose LAST line is one JSON object.
//
// Exit codes: 0 every batch accepted exactly once; 1 correctness errors; 2 bad command line;
// 3 runtime failure (cannot connect, connection lost, publish failed).

#include <dirent.h>
#include <mqtt/async_client.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "outpost/common/codec.h"
#include "outpost/common/json.h"
#include "outpost/common/net.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"

namespace outpost::bench {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitIncorrect = 1;
constexpr int kExitUsage = 2;
constexpr int kExitFailure = 3;

int64_t monoUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
int64_t wallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
std::chrono::steady_clock::time_point monoPoint(int64_t us) {
  return std::chrono::steady_clock::time_point(std::chrono::microseconds(us));
}

struct Options {
  std::string broker = "tcp://127.0.0.1:1883";
  std::string topic_prefix = "outpost/v1";
  std::string device_prefix = "bench-";
  int devices = 8;
  int batch_readings = 500;
  int sensors = 4;
  double rate = 0;  // readings/s; 0 = as fast as the ack window allows
  int inflight = 16;
  double duration_s = 10;
  double warmup_s = 2;
  double drain_s = 10;
  double connect_timeout_s = 10;
  uint64_t epoch = 0;       // 0: derived from the wall clock (distinct per run)
  int64_t max_batches = 0;  // 0: automatic (rate mode: what the run needs; max mode: memory)
  int64_t max_memory_mb = 768;
  std::vector<std::string> cpu_pids;  // name=pid
  bool cpu_threads = false;
  bool tcp_nodelay = true;  // as the agent's uplink (net::setTcpNoDelayToPeer after connecting)
  std::string label;
};

// ---- CPU accounting from /proc (clock ticks) --------------------------------------------------

// utime + stime of /proc/.../stat (fields 14 and 15); the name is the field in parentheses.
std::optional<int64_t> readStatTicks(const std::string& path, std::string* comm = nullptr) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  const auto open = line.find('('), close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) return std::nullopt;
  if (comm) *comm = line.substr(open + 1, close - open - 1);
  std::istringstream rest(line.substr(close + 1));
  std::string tok;
  int64_t utime = 0, stime = 0;
  for (int field = 3; field <= 15 && rest >> tok; ++field) {
    if (field == 14) utime = std::stoll(tok);
    if (field == 15) stime = std::stoll(tok);
  }
  return utime + stime;
}

struct ProcSample {
  bool ok = false;
  int64_t ticks = 0;
  std::map<int, std::pair<std::string, int64_t>> threads;  // tid -> (name, ticks)
};

ProcSample sampleProcess(const std::string& pid, bool threads) {
  ProcSample s;
  if (auto t = readStatTicks("/proc/" + pid + "/stat")) {
    s.ok = true;
    s.ticks = *t;
  }
  if (!s.ok || !threads) return s;
  const std::string dir = "/proc/" + pid + "/task";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] == '.') continue;
      std::string name;
      if (auto t = readStatTicks(dir + "/" + e->d_name + "/stat", &name)) {
        s.threads[std::atoi(e->d_name)] = {name, *t};
      }
    }
    closedir(d);
  }
  return s;
}

struct MachineSample {
  int64_t busy = 0, total = 0, steal = 0;
};

MachineSample sampleMachine() {
  MachineSample m;
  std::ifstream in("/proc/stat");
  std::string cpu;
  int64_t v[10] = {};
  if (in >> cpu && cpu == "cpu") {
    for (auto& x : v) in >> x;
  }
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  m.busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
  m.total = m.busy + v[3] + v[4];
  m.steal = v[7];
  return m;
}

struct CpuSnapshot {
  int64_t mono_us = 0;
  MachineSample machine;
  std::vector<ProcSample> procs;  // same order as Bench::watched_
};

// ---- small JSON writer --------------------------------------------------------------------------

// Strings through the one JSON writer's escaping (outpost/common/json.h); numbers rounded for
// reading (num), so the report is written by hand around them.
std::string jsonString(std::string_view s) { return json::quote(s); }

std::string num(double v, int precision = 3) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", precision, v);
  return buf;
}

// Nearest-rank percentile of sorted values (0 when empty).
int64_t percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

// ---- the benchmark ------------------------------------------------------------------------------

enum : uint8_t { kUnsent = 0, kInFlight = 1, kAcked = 2 };

struct Device {
  std::string name;
  std::string batch_topic;
  std::string ack_topic;
  std::unique_ptr<mqtt::async_client> cli;
  // Index = seq - 1. Messages are released once published (Paho keeps its own reference).
  std::vector<mqtt::const_message_ptr> batches;
  std::vector<int64_t> sent_us;  // GUARDED_BY(Bench::mu_) monotonic publish time, 0 = unsent
  std::vector<uint8_t> state;    // GUARDED_BY(Bench::mu_)
  size_t next = 0;               // GUARDED_BY(Bench::mu_) index of the next batch to publish
  int inflight = 0;              // GUARDED_BY(Bench::mu_)
};

struct Stats {
  uint64_t sent = 0, accepted = 0, rejected = 0;
  uint64_t sent_window = 0, accepted_window = 0;
  uint64_t duplicate_acks = 0, unexpected_acks = 0, foreign_acks = 0, bad_acks = 0;
  uint64_t window_stalls = 0;  // paced mode: a device's ack window was full when its batch was due
  int64_t max_lag_us = 0;      // paced mode: latest publish behind schedule
  std::vector<int64_t> latencies_us;    // batches published inside the window, when acked
  std::vector<std::string> rejections;  // first few reasons
};

// Thread-safety: run() on one thread; onAck() on Paho's callback thread; the sender on its own
// thread. Shared state is guarded by mu_.
class Bench {
 public:
  explicit Bench(Options o) : opt_(std::move(o)) {}

  int run() {
    if (!parseWatched()) return kExitUsage;
    epoch_ = opt_.epoch ? opt_.epoch : static_cast<uint64_t>(wallUs());
    if (!prepare()) return kExitUsage;
    if (std::string err = connectAll(); !err.empty()) {
      disconnectAll();
      std::cerr << "outpost-bench-aggregator: " << err << "\n";
      return kExitFailure;
    }
    if (opt_.tcp_nodelay) {
      // The agent's own code path: Paho never sets TCP_NODELAY, so the agent's uplink does it on
      // every socket to the broker after connecting.
      const int n = net::setTcpNoDelayToPeer(opt_.broker);
      std::cout << "TCP_NODELAY set on " << n << " broker connection(s)\n";
      if (n != opt_.devices) {
        disconnectAll();
        std::cerr << "outpost-bench-aggregator: --tcp-nodelay: found " << n
                  << " sockets to the broker's port, expected " << opt_.devices << "\n";
        return kExitFailure;
      }
    }

    {
      std::lock_guard lock(mu_);
      t0_ = monoUs() + 50'000;  // a short settle after the subscriptions
      w0_ = t0_ + static_cast<int64_t>(opt_.warmup_s * 1e6);
      w1_ = w0_ + static_cast<int64_t>(opt_.duration_s * 1e6);
    }
    std::thread sender([this] { sendLoop(); });

    // Measurement window: CPU snapshots at its start and end.
    waitUntil(w0_);
    CpuSnapshot a = snapshot();
    int64_t w1;
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, monoPoint(w1_), [&] { return sender_done_ || fatal_; });
      // The sender may have stopped early (hard cap, fatal error): the window ends there.
      if (monoUs() < w1_) w1_ = std::max(w0_, monoUs());
      w1 = w1_;
    }
    CpuSnapshot b = snapshot();
    sender.join();

    // Drain: wait for the acks of everything published, bounded.
    const int64_t drain_end = monoUs() + static_cast<int64_t>(opt_.drain_s * 1e6);
    {
      std::unique_lock lock(mu_);
      cv_.wait_until(lock, monoPoint(drain_end),
                     [&] { return total_inflight_ == 0 || fatal_ || signals::stopRequested(); });
    }
    const int64_t drained_after_us = monoUs() - w1;
    disconnectAll();
    return report(a, b, drained_after_us);
  }

 private:
  bool parseWatched() {
    for (const auto& spec : opt_.cpu_pids) {
      const auto eq = spec.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size() ||
          spec.find_first_not_of("0123456789", eq + 1) != std::string::npos) {
        std::cerr << "--cpu-pid: expected NAME=PID, got '" << spec << "'\n";
        return false;
      }
      watched_.emplace_back(spec.substr(0, eq), spec.substr(eq + 1));
      if (!sampleProcess(watched_.back().second, false).ok) {
        std::cerr << "--cpu-pid: no process " << watched_.back().second << " ("
                  << watched_.back().first << ")\n";
        return false;
      }
    }
    watched_.emplace_back("bench", std::to_string(getpid()));
    return true;
  }

  // Encodes every batch of the run before the clock starts.
  bool prepare() {
    const int64_t per_batch_bytes = 512 + int64_t{opt_.batch_readings} * 24 + opt_.sensors * 48;
    int64_t total;
    if (opt_.rate > 0) {
      total = static_cast<int64_t>(
                  std::ceil(opt_.rate * (opt_.warmup_s + opt_.duration_s) / opt_.batch_readings)) +
              opt_.devices;
    } else {
      // As many as memory allows, but no more than a run could use at 12,000 batches/s (a
      // stock Paho client's ceiling on this class of machine; the run reports if it hits this).
      total = std::min<int64_t>(
          opt_.max_memory_mb * (1 << 20) / per_batch_bytes,
          static_cast<int64_t>(std::ceil(12'000 * (opt_.warmup_s + opt_.duration_s))));
    }
    if (opt_.max_batches > 0 && total > opt_.max_batches) total = opt_.max_batches;
    if (opt_.max_memory_mb * (1 << 20) / per_batch_bytes < total) {
      std::cerr << "the run needs " << total << " batches of about " << per_batch_bytes
                << " bytes, more than --max-memory-mb " << opt_.max_memory_mb
                << " allows; raise it or lower --rate/--duration\n";
      return false;
    }
    if (total < opt_.devices) total = opt_.devices;
    const size_t per_device = static_cast<size_t>((total + opt_.devices - 1) / opt_.devices);
    batch_cap_ = per_device * static_cast<size_t>(opt_.devices);

    static const std::pair<const char*, const char*> kSensors[] = {
        {"temperature", "C"}, {"humidity", "%"}, {"pressure", "hPa"}, {"vibration", "g"}};
    std::vector<codec::SensorInfo> sensors;
    for (int s = 0; s < opt_.sensors; ++s) {
      if (s < 4)
        sensors.push_back({static_cast<uint16_t>(s), kSensors[s].first, kSensors[s].second});
      else
        sensors.push_back({static_cast<uint16_t>(s), "sensor_" + std::to_string(s), "u"});
    }
    // Readings of one device are spaced as if the whole fleet produced `rate` readings/s (1M/s
    // when unpaced), so timestamps stay near now for the length of a run.
    const double fleet_rate = opt_.rate > 0 ? opt_.rate : 1e6;
    const double dt_us = std::max(1.0, 1e6 * opt_.devices / fleet_rate);
    const int64_t base_us = wallUs() - static_cast<int64_t>(dt_us * opt_.batch_readings);
    const int64_t started = monoUs();
    const codec::VerifyLimits limits;

    std::vector<double> sine(1024);
    for (size_t k = 0; k < sine.size(); ++k) sine[k] = std::sin(2 * M_PI * k / sine.size());

    devices_.resize(static_cast<size_t>(opt_.devices));
    for (int i = 0; i < opt_.devices; ++i) {
      Device& d = devices_[static_cast<size_t>(i)];
      char idx[16];
      std::snprintf(idx, sizeof idx, "%03d", i);
      d.name = opt_.device_prefix + idx;
      if (!codec::isValidDeviceId(d.name)) {
        std::cerr << "--device-prefix: '" << d.name << "' is not a valid device id "
                  << "(1..64 of [A-Za-z0-9._-])\n";
        return false;
      }
      d.batch_topic = opt_.topic_prefix + "/" + d.name + "/batch";
      d.ack_topic = opt_.topic_prefix + "/" + d.name + "/ack";
      d.batches.reserve(per_device);
      d.sent_us.assign(per_device, 0);
      d.state.assign(per_device, kUnsent);
      const mqtt::string_ref topic(d.batch_topic);
      // Values: a slow sine per sensor (from a small table) plus cheap noise; the aggregator
      // does not look at them, but they should look like telemetry on the readings topic.
      uint64_t rng = 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1);
      auto noise = [&rng] {  // xorshift64, uniform in [-0.5, 0.5)
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return static_cast<double>(rng >> 11) / 9007199254740992.0 - 0.5;
      };
      codec::BatchContent c;
      c.device_id = d.name;
      c.epoch = epoch_;
      c.sensors = sensors;
      c.readings.reserve(static_cast<size_t>(opt_.batch_readings));
      uint64_t j = 0;  // reading index of this device
      for (size_t k = 0; k < per_device; ++k) {
        c.seq = k + 1;
        c.readings.clear();
        int64_t ts = 0;
        for (int r = 0; r < opt_.batch_readings; ++r, ++j) {
          ts = base_us + static_cast<int64_t>(static_cast<double>(j) * dt_us);
          const auto sensor = static_cast<uint16_t>(j % static_cast<uint64_t>(opt_.sensors));
          const double wave = sine[(j / 64 + static_cast<uint64_t>(i) * 37) % sine.size()];
          double v;
          switch (sensor) {
            case 0:
              v = 21.0 + 4.0 * wave + 0.1 * noise();
              break;
            case 1:
              v = 45.0 + 10.0 * wave + 0.5 * noise();
              break;
            case 2:
              v = 1013.0 + 3.0 * wave + 0.2 * noise();
              break;
            default:
              v = 0.3 * noise();
              break;
          }
          const auto q = (j % 997 == 0) ? wire::Quality::Suspect : wire::Quality::Good;
          c.readings.emplace_back(ts, v, sensor, q);
        }
        c.created_us = ts;
        std::vector<uint8_t> bytes = codec::encodeBatch(c);
        // Self-check: what we send must pass the aggregator's own checks, so that any rejection
        // is the aggregator's doing. Limits as the aggregator's defaults.
        auto verified = codec::verifyBatch(bytes, limits);
        if (!verified) {
          std::cerr << "internal error: encoded batch fails verification: "
                    << verified.error().toString() << "\n";
          return false;
        }
        if (auto sem =
                codec::checkBatchSemantics(**verified, limits, wallUs() + 3'600'000'000, d.name);
            !sem) {
          std::cerr << "internal error: encoded batch fails semantic checks: "
                    << sem.error().toString() << "\n";
          return false;
        }
        d.batches.push_back(mqtt::message::create(
            topic, mqtt::binary_ref(reinterpret_cast<const char*>(bytes.data()), bytes.size()), 1,
            false));
        batch_bytes_ = bytes.size();
      }
    }
    std::cout << "prepared " << batch_cap_ << " batches (" << opt_.devices << " devices x "
              << per_device << ", " << opt_.batch_readings << " readings, " << batch_bytes_
              << " bytes each) in " << num((monoUs() - started) / 1e3, 0) << " ms; epoch " << epoch_
              << "\n";
    return true;
  }

  void fatal(const std::string& msg) {
    {
      std::lock_guard lock(mu_);
      if (!fatal_) fatal_msg_ = msg;
      fatal_ = true;
    }
    cv_.notify_all();
  }

  // Connects every device and subscribes to its acks. Returns an error message, empty on success.
  std::string connectAll() {
    const auto timeout =
        std::chrono::milliseconds(static_cast<int64_t>(opt_.connect_timeout_s * 1000));
    try {
      std::vector<mqtt::token_ptr> tokens;
      for (auto& d : devices_) {
        // Paho C refuses a publish once maxBufferedMessages (default 100) PUBLISH commands wait
        // in its queue, even while connected (MQTTASYNC_MAX_BUFFERED_MESSAGES, -12): leave
        // room for the whole ack window so that the bench itself never trips on it.
        mqtt::create_options create;
        create.set_max_buffered_messages(std::max(100, 2 * opt_.inflight + 16));
        d.cli = std::make_unique<mqtt::async_client>(
            opt_.broker, "outpost-bench-" + std::to_string(getpid()) + "-" + d.name, create);
        Device* dp = &d;
        d.cli->set_message_callback([this, dp](mqtt::const_message_ptr m) { onAck(*dp, m); });
        d.cli->set_connection_lost_handler([this, dp](const std::string& cause) {
          fatal("MQTT connection of " + dp->name + " lost (" + cause + ")");
        });
        auto opts = mqtt::connect_options_builder()
                        .clean_session(true)
                        .keep_alive_interval(std::chrono::seconds(30))
                        .connect_timeout(timeout)
                        .max_inflight(65535)  // our own window (--inflight) is the limit
                        .finalize();
        tokens.push_back(d.cli->connect(opts));
      }
      for (size_t i = 0; i < devices_.size(); ++i) {
        if (!tokens[i]->wait_for(timeout + std::chrono::seconds(1)) ||
            !devices_[i].cli->is_connected()) {
          return "cannot connect to " + opt_.broker + " (device " + devices_[i].name +
                 "; timed out)";
        }
      }
      tokens.clear();
      for (auto& d : devices_) tokens.push_back(d.cli->subscribe(d.ack_topic, 1));
      for (size_t i = 0; i < devices_.size(); ++i) {
        if (!tokens[i]->wait_for(timeout)) {
          return "subscription to " + devices_[i].ack_topic + " timed out";
        }
      }
    } catch (const mqtt::exception& e) {
      return "cannot connect to " + opt_.broker + ": " + e.what();
    }
    return {};
  }

  void disconnectAll() {
    std::vector<mqtt::token_ptr> tokens;
    for (auto& d : devices_) {
      try {
        if (d.cli && d.cli->is_connected()) {
          tokens.push_back(d.cli->disconnect(std::chrono::milliseconds(500)));
        }
      } catch (const mqtt::exception&) {
      }
    }
    for (auto& t : tokens) {
      try {
        t->wait_for(std::chrono::seconds(2));
      } catch (const mqtt::exception&) {
      }
    }
    for (auto& d : devices_) {
      if (d.cli) {
        d.cli->disable_callbacks();
        d.cli.reset();
      }
    }
  }

  void waitUntil(int64_t mono_us) {
    std::unique_lock lock(mu_);
    cv_.wait_until(lock, monoPoint(mono_us),
                   [&] { return fatal_ || sender_done_ || signals::stopRequested(); });
  }

  // Publishes batches until the end of the window: paced (--rate) or as fast as each device's
  // ack window allows. Stops early on a fatal error, a stop signal or when the hard cap of
  // pre-encoded batches is used up.
  void sendLoop() {
    const bool paced = opt_.rate > 0;
    const double interval_us = paced ? 1e6 * opt_.batch_readings / opt_.rate : 0;
    const size_t n_dev = devices_.size();
    uint64_t n = 0;  // paced: global schedule index
    size_t rr = 0;   // unpaced: round-robin start
    std::string stop_reason;
    for (;;) {
      if (signals::stopRequested()) {
        stop_reason = "stop requested (signal)";
        break;
      }
      Device* d = nullptr;
      size_t idx = 0;
      {
        std::unique_lock lock(mu_);
        if (fatal_ || monoUs() >= w1_) break;
        if (paced) {
          const int64_t due = t0_ + static_cast<int64_t>(std::llround(n * interval_us));
          if (due >= w1_) break;
          if (monoUs() < due) {
            // Sleep outside the lock; precision of sleep_until is ~0.1 ms, enough here.
            lock.unlock();
            std::this_thread::sleep_until(monoPoint(std::min(due, monoUs() + 50'000)));
            continue;
          }
          d = &devices_[n % n_dev];
          if (d->next >= d->batches.size()) {
            stop_reason = "hard cap of pre-encoded batches reached";
            hard_cap_hit_ = true;
            break;
          }
          if (d->inflight >= opt_.inflight) {
            ++stats_.window_stalls;
            cv_.wait_until(lock, monoPoint(w1_), [&] {
              return d->inflight < opt_.inflight || fatal_ || signals::stopRequested();
            });
            if (d->inflight >= opt_.inflight) continue;  // loop re-checks the end conditions
          }
          stats_.max_lag_us = std::max(stats_.max_lag_us, monoUs() - due);
          ++n;
        } else {
          auto pick = [&]() -> Device* {
            for (size_t k = 0; k < n_dev; ++k) {
              Device& c = devices_[(rr + k) % n_dev];
              if (c.inflight < opt_.inflight && c.next < c.batches.size()) {
                rr = (rr + k + 1) % n_dev;
                return &c;
              }
            }
            return nullptr;
          };
          bool exhausted = true;
          for (auto& c : devices_) exhausted = exhausted && c.next >= c.batches.size();
          if (exhausted) {
            stop_reason = "hard cap of pre-encoded batches reached";
            hard_cap_hit_ = true;
            break;
          }
          cv_.wait_until(lock, monoPoint(w1_), [&] {
            return (d = pick()) != nullptr || fatal_ || signals::stopRequested();
          });
          if (!d) continue;
        }
        idx = d->next++;
        const int64_t now = monoUs();
        d->state[idx] = kInFlight;
        d->sent_us[idx] = now;
        ++d->inflight;
        ++total_inflight_;
        ++stats_.sent;
        if (now >= w0_ && now < w1_) ++stats_.sent_window;
      }
      try {
        d->cli->publish(d->batches[idx]);
        d->batches[idx].reset();
      } catch (const mqtt::exception& e) {
        fatal("publish of " + d->name + " seq " + std::to_string(idx + 1) + " failed: " + e.what());
        break;
      }
    }
    {
      std::lock_guard lock(mu_);
      sender_done_ = true;
      stop_reason_ = stop_reason;
    }
    cv_.notify_all();
  }

  // Paho's callback thread.
  void onAck(Device& d, const mqtt::const_message_ptr& msg) {
    const int64_t now = monoUs();
    const std::string& p = msg->get_payload_ref().str();
    const std::vector<uint8_t> buf(p.begin(), p.end());  // heap copy: aligned for FlatBuffers
    auto ack = codec::verifyAck(buf);
    {
      std::lock_guard lock(mu_);
      if (!ack) {
        if (stats_.bad_acks++ == 0) notes_.push_back("malformed ack: " + ack.error().toString());
        return;
      }
      const wire::Ack* a = *ack;
      if (a->device_id()->string_view() != d.name || a->epoch() != epoch_) {
        ++stats_.foreign_acks;  // another device or another run: not ours to count
        return;
      }
      const uint64_t seq = a->seq();
      if (seq == 0 || seq > d.state.size() || d.state[seq - 1] == kUnsent) {
        if (stats_.unexpected_acks++ == 0) {
          notes_.push_back("ack for a batch never sent: " + d.name + " seq " + std::to_string(seq));
        }
        return;
      }
      const size_t idx = seq - 1;
      if (d.state[idx] == kAcked) {
        if (stats_.duplicate_acks++ == 0) {
          notes_.push_back("second ack for " + d.name + " seq " + std::to_string(seq));
        }
        return;
      }
      d.state[idx] = kAcked;
      --d.inflight;
      --total_inflight_;
      if (a->status() == wire::AckStatus::Accepted) {
        ++stats_.accepted;
        if (now >= w0_ && now < w1_) ++stats_.accepted_window;
        if (d.sent_us[idx] >= w0_ && d.sent_us[idx] < w1_) {
          stats_.latencies_us.push_back(now - d.sent_us[idx]);
        }
      } else {
        ++stats_.rejected;
        if (stats_.rejections.size() < 5) {
          stats_.rejections.push_back(d.name + " seq " + std::to_string(seq) + ": " +
                                      (a->reason() ? a->reason()->str() : "(no reason)"));
        }
      }
    }
    cv_.notify_all();
  }

  CpuSnapshot snapshot() {
    CpuSnapshot s;
    s.mono_us = monoUs();
    s.machine = sampleMachine();
    for (const auto& [name, pid] : watched_)
      s.procs.push_back(sampleProcess(pid, opt_.cpu_threads));
    return s;
  }

  int report(const CpuSnapshot& a, const CpuSnapshot& b, int64_t drained_after_us) {
    std::lock_guard lock(mu_);
    const double window_s = static_cast<double>(w1_ - w0_) / 1e6;
    const double cpu_s = static_cast<double>(b.mono_us - a.mono_us) / 1e6;
    const double hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    const uint64_t B = static_cast<uint64_t>(opt_.batch_readings);
    uint64_t unacked = 0;
    std::vector<std::string> unacked_examples;
    for (const auto& d : devices_) {
      for (size_t i = 0; i < d.state.size(); ++i) {
        if (d.state[i] != kInFlight) continue;
        if (unacked++ < 5) unacked_examples.push_back(d.name + " seq " + std::to_string(i + 1));
      }
    }
    auto lat = stats_.latencies_us;
    std::sort(lat.begin(), lat.end());
    const double p50 = percentile(lat, 50) / 1e3, p90 = percentile(lat, 90) / 1e3,
                 p99 = percentile(lat, 99) / 1e3, pmax = lat.empty() ? 0 : lat.back() / 1e3;
    const double readings_per_s =
        window_s > 0 ? static_cast<double>(stats_.accepted_window * B) / window_s : 0;
    const double sent_per_s =
        window_s > 0 ? static_cast<double>(stats_.sent_window * B) / window_s : 0;

    std::vector<std::string> errors;
    if (fatal_) errors.push_back(fatal_msg_);
    if (stats_.rejected) errors.push_back(std::to_string(stats_.rejected) + " batches rejected");
    if (unacked) errors.push_back(std::to_string(unacked) + " batches never acked");
    if (stats_.duplicate_acks) {
      errors.push_back(std::to_string(stats_.duplicate_acks) + " batches acked twice");
    }
    if (stats_.unexpected_acks) {
      errors.push_back(std::to_string(stats_.unexpected_acks) + " acks for batches never sent");
    }
    if (stats_.bad_acks) errors.push_back(std::to_string(stats_.bad_acks) + " malformed acks");
    if (window_s <= 0) errors.push_back("empty measurement window");
    const bool ok = errors.empty();

    // CPU over the measurement window, in cores (1.0 = one core busy all the time).
    auto cores = [&](int64_t ticks) { return cpu_s > 0 ? ticks / hz / cpu_s : 0.0; };
    std::string cpu_json = "{", threads_json = "{";
    std::ostringstream cpu_text;
    int64_t ours = 0;
    for (size_t i = 0; i < watched_.size(); ++i) {
      const auto& [name, pid] = watched_[i];
      const ProcSample& pa = a.procs[i];
      const ProcSample& pb = b.procs[i];
      const bool valid = pa.ok && pb.ok;
      const int64_t ticks = valid ? pb.ticks - pa.ticks : 0;
      ours += ticks;
      if (i) cpu_json += ",";
      cpu_json += jsonString(name) + ":" + (valid ? num(cores(ticks)) : "null");
      cpu_text << "  " << name << " (pid " << pid
               << "): " << (valid ? num(cores(ticks), 2) + " cores" : "n/a (process gone)") << "\n";
      if (opt_.cpu_threads && valid) {
        std::vector<std::tuple<int64_t, int, std::string>> th;
        for (const auto& [tid, v] : pb.threads) {
          auto it = pa.threads.find(tid);
          th.emplace_back(v.second - (it == pa.threads.end() ? 0 : it->second.second), tid,
                          v.first);
        }
        std::sort(th.rbegin(), th.rend());
        if (i) threads_json += ",";
        threads_json += jsonString(name) + ":[";
        for (size_t k = 0; k < th.size() && k < 8; ++k) {
          const auto& [t, tid, tname] = th[k];
          if (k) threads_json += ",";
          threads_json += "{\"tid\":" + std::to_string(tid) + ",\"name\":" + jsonString(tname) +
                          ",\"cores\":" + num(cores(t)) + "}";
          if (cores(t) >= 0.01) {
            cpu_text << "      thread " << tid << " " << tname << ": " << num(cores(t), 2) << "\n";
          }
        }
        threads_json += "]";
      }
    }
    cpu_json += "}";
    threads_json += "}";
    const int64_t busy = b.machine.busy - a.machine.busy;
    const double machine_cores = cores(busy);
    const double others_cores = cores(busy - ours);
    const double steal_cores = cores(b.machine.steal - a.machine.steal);

    std::ostringstream out;
    out << "\n=== outpost-bench-aggregator " << (opt_.label.empty() ? "" : opt_.label + " ")
        << "===\n"
        << "broker " << opt_.broker << ", " << opt_.devices << " devices, " << B
        << " readings/batch (" << batch_bytes_ << " bytes), inflight " << opt_.inflight
        << " per device" << (opt_.tcp_nodelay ? ", TCP_NODELAY" : ", Nagle on (--no-tcp-nodelay)")
        << ", target "
        << (opt_.rate > 0 ? num(opt_.rate, 0) + " readings/s" : std::string("max (unpaced)"))
        << "\nwindow " << num(window_s, 2) << " s after " << num(opt_.warmup_s, 1) << " s warm-up"
        << (stop_reason_.empty() ? "" : "; sender stopped early: " + stop_reason_) << "\n"
        << "throughput (acked, in window): " << num(readings_per_s, 0) << " readings/s, "
        << num(stats_.accepted_window / std::max(window_s, 1e-9), 1) << " batches/s"
        << " (published in window: " << num(sent_per_s, 0) << " readings/s)\n"
        << "round trip publish->ack (" << lat.size() << " batches published in window): p50 "
        << num(p50, 2) << " ms, p90 " << num(p90, 2) << " ms, p99 " << num(p99, 2) << " ms, max "
        << num(pmax, 2) << " ms\n";
    if (opt_.rate > 0) {
      out << "pacing: max lag behind schedule " << num(stats_.max_lag_us / 1e3, 2) << " ms, "
          << stats_.window_stalls << " sends waited for a full ack window\n";
    }
    out << "totals: " << stats_.sent << " batches published (" << stats_.sent * B << " readings), "
        << stats_.accepted << " accepted, " << stats_.rejected << " rejected, " << unacked
        << " never acked (drain " << num(drained_after_us / 1e3, 0) << " ms)\n"
        << "cpu over the window (machine: " << num(machine_cores, 2) << " of "
        << std::thread::hardware_concurrency() << " cores busy, " << num(others_cores, 2)
        << " by other processes, steal " << num(steal_cores, 2) << "):\n"
        << cpu_text.str();
    for (const auto& r : stats_.rejections) out << "  rejected: " << r << "\n";
    for (const auto& u : unacked_examples) out << "  never acked: " << u << "\n";
    for (const auto& n : notes_) out << "  note: " << n << "\n";
    if (stats_.foreign_acks) {
      out << "  note: " << stats_.foreign_acks << " acks for other devices/epochs ignored\n";
    }
    out << (ok ? "RESULT: OK, every batch published was accepted exactly once\n"
               : "RESULT: ERRORS\n");
    for (const auto& e : errors) out << "  error: " << e << "\n";

    std::string errs = "[";
    for (size_t i = 0; i < errors.size(); ++i) errs += (i ? "," : "") + jsonString(errors[i]);
    errs += "]";
    std::ostringstream js;
    js << "{\"bench\":\"aggregator\",\"label\":" << jsonString(opt_.label)
       << ",\"ok\":" << (ok ? "true" : "false") << ",\"errors\":" << errs
       << ",\"mode\":" << (opt_.rate > 0 ? "\"paced\"" : "\"max\"")
       << ",\"rate_target\":" << num(opt_.rate, 0) << ",\"devices\":" << opt_.devices
       << ",\"batch_readings\":" << B << ",\"batch_bytes\":" << batch_bytes_
       << ",\"inflight\":" << opt_.inflight << ",\"epoch\":\"" << epoch_ << "\""
       << ",\"tcp_nodelay\":" << (opt_.tcp_nodelay ? "true" : "false")
       << ",\"warmup_s\":" << num(opt_.warmup_s) << ",\"window_s\":" << num(window_s)
       << ",\"hard_cap_hit\":" << (hard_cap_hit_ ? "true" : "false")
       << ",\"readings_per_s\":" << num(readings_per_s, 1)
       << ",\"batches_per_s\":" << num(stats_.accepted_window / std::max(window_s, 1e-9), 2)
       << ",\"published_readings_per_s\":" << num(sent_per_s, 1)
       << ",\"batches_acked_window\":" << stats_.accepted_window
       << ",\"latency_ms\":{\"count\":" << lat.size() << ",\"p50\":" << num(p50)
       << ",\"p90\":" << num(p90) << ",\"p99\":" << num(p99) << ",\"max\":" << num(pmax) << "}"
       << ",\"max_lag_ms\":" << num(stats_.max_lag_us / 1e3)
       << ",\"window_stalls\":" << stats_.window_stalls << ",\"batches_sent\":" << stats_.sent
       << ",\"readings_sent\":" << stats_.sent * B << ",\"batches_accepted\":" << stats_.accepted
       << ",\"readings_accepted\":" << stats_.accepted * B
       << ",\"batches_rejected\":" << stats_.rejected << ",\"batches_unacked\":" << unacked
       << ",\"duplicate_acks\":" << stats_.duplicate_acks
       << ",\"unexpected_acks\":" << stats_.unexpected_acks << ",\"bad_acks\":" << stats_.bad_acks
       << ",\"cpu_cores\":" << cpu_json << ",\"machine_busy_cores\":" << num(machine_cores)
       << ",\"others_cores\":" << num(others_cores) << ",\"steal_cores\":" << num(steal_cores);
    if (opt_.cpu_threads) js << ",\"cpu_threads\":" << threads_json;
    js << "}";
    std::cout << out.str() << js.str() << std::endl;
    if (fatal_) return kExitFailure;
    return ok ? kExitOk : kExitIncorrect;
  }

  Options opt_;
  std::vector<std::pair<std::string, std::string>> watched_;  // name, pid
  uint64_t epoch_ = 0;
  size_t batch_cap_ = 0;
  size_t batch_bytes_ = 0;
  std::vector<Device> devices_;

  std::mutex mu_;
  std::condition_variable cv_;
  int64_t t0_ = 0, w0_ = 0, w1_ = 0;  // GUARDED_BY(mu_) schedule origin, window [w0_, w1_)
  bool fatal_ = false;                // GUARDED_BY(mu_)
  std::string fatal_msg_;             // GUARDED_BY(mu_)
  bool sender_done_ = false;          // GUARDED_BY(mu_)
  bool hard_cap_hit_ = false;         // GUARDED_BY(mu_)
  std::string stop_reason_;           // GUARDED_BY(mu_)
  uint64_t total_inflight_ = 0;       // GUARDED_BY(mu_)
  Stats stats_;                       // GUARDED_BY(mu_)
  std::vector<std::string> notes_;    // GUARDED_BY(mu_)
};

}  // namespace
}  // namespace outpost::bench

int main(int argc, char** argv) {
  using outpost::bench::Options;
  Options o;
  CLI::App app{"outpost-bench-aggregator " + std::string(outpost::kVersion) +
                   ": benchmark of the aggregator path (MQTT in -> verify -> dedup -> Kafka "
                   "delivered -> ack over MQTT). Plays N agents against a running broker and "
                   "aggregator; prints a summary and, as its last line, one JSON object.\n"
                   "Exit: 0 every batch accepted once, 1 correctness errors, 2 usage, 3 runtime "
                   "failure.",
               "outpost-bench-aggregator"};
  app.add_option("-b,--broker", o.broker, "MQTT broker URI")->capture_default_str();
  app.add_option("--topic-prefix", o.topic_prefix, "MQTT topic prefix")->capture_default_str();
  app.add_option("--device-prefix", o.device_prefix, "Device ids are PREFIX000, PREFIX001, ...")
      ->capture_default_str();
  app.add_option("-n,--devices", o.devices, "Virtual devices (one MQTT client each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  app.add_option("--batch-readings", o.batch_readings, "Readings per batch")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  app.add_option("--sensors", o.sensors, "Sensors per device (readings cycle through them)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("-r,--rate", o.rate,
                 "Target readings/s for the whole fleet, publishes evenly spread; 0 = as fast as "
                 "the ack window (--inflight) allows")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("-k,--inflight", o.inflight, "Batches per device published and awaiting ack")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  app.add_option("-d,--duration", o.duration_s, "Measurement window, seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  app.add_option("-w,--warmup", o.warmup_s, "Load before the window (not measured), seconds")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--drain-timeout", o.drain_s,
                 "After the window, wait this long for outstanding acks; still missing = never "
                 "acked")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 600.0));
  app.add_option("--connect-timeout", o.connect_timeout_s, "MQTT connect/subscribe timeout, s")
      ->capture_default_str()
      ->check(CLI::Range(0.5, 120.0));
  app.add_option("--epoch", o.epoch, "Stream epoch of every device (default: from the clock)")
      ->check(CLI::Range(uint64_t{1}, UINT64_MAX));
  app.add_option("--max-batches", o.max_batches,
                 "Hard cap on batches published (all pre-encoded); 0 = what --rate needs, or "
                 "what --max-memory-mb holds when unpaced")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{100'000'000}));
  app.add_option("--max-memory-mb", o.max_memory_mb, "Memory for pre-encoded batches")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{65536}));
  app.add_option("--cpu-pid", o.cpu_pids,
                 "NAME=PID of a process whose CPU time over the window is reported (repeatable; "
                 "this process is always reported as 'bench')");
  app.add_flag("--cpu-threads", o.cpu_threads, "Also report the busiest threads of each process");
  app.add_flag("--tcp-nodelay,!--no-tcp-nodelay", o.tcp_nodelay,
               "Nagle's algorithm off on the devices' broker connections, as the agent's uplink "
               "does (default; Linux only). --no-tcp-nodelay: leave it on, as Paho does and "
               "agents before TCP_NODELAY did")
      ->capture_default_str();
  app.add_option("--label", o.label, "Free text copied into the report");
  app.set_version_flag("-V,--version", std::string(outpost::kVersion));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? outpost::bench::kExitOk : outpost::bench::kExitUsage;
  }
  outpost::signals::installSignalHandlers();
  try {
    outpost::bench::Bench bench(o);
    return bench.run();
  } catch (const std::exception& e) {
    std::cerr << "outpost-bench-aggregator: " << e.what() << "\n";
    return outpost::bench::kExitFailure;
  }
}

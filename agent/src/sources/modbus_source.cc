#include "outpost/agent/modbus_source.h"

#include <modbus.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <map>

#include "outpost/common/config.h"
#include "outpost/common/thread_name.h"

namespace outpost::agent {
namespace {

constexpr int64_t kIdlePollUs = 10000;

}  // namespace

const char* modbusErrorName(ModbusError e) {
  switch (e) {
    case ModbusError::kTimeout:
      return "timeout";
    case ModbusError::kException:
      return "exception";
    case ModbusError::kCrc:
      return "crc";
    case ModbusError::kConnection:
      return "connection";
    case ModbusError::kBadResponse:
      return "bad_response";
    case ModbusError::kCount:
      break;
  }
  return "?";
}

ModbusError classifyModbusErrno(int err, int& exception_code) {
  exception_code = 0;
  if (err == ETIMEDOUT) return ModbusError::kTimeout;
  if (err == EMBBADCRC) return ModbusError::kCrc;
  if (err > MODBUS_ENOBASE && err < MODBUS_ENOBASE + MODBUS_EXCEPTION_MAX) {
    exception_code = err - MODBUS_ENOBASE;
    return ModbusError::kException;
  }
  if (err == EMBBADDATA || err == EMBBADEXC || err == EMBUNKEXC || err == EMBMDATA ||
      err == EMBBADSLAVE) {
    return ModbusError::kBadResponse;
  }
  return ModbusError::kConnection;  // ECONNRESET, EPIPE, ECONNREFUSED, EBADF, EIO, ...
}

struct ModbusSource::Ctx {
  modbus_t* ctx = nullptr;
  ~Ctx() {
    if (ctx) modbus_free(ctx);
  }
};

ModbusSource::ModbusSource(const std::vector<ModbusSlaveSpec>& slaves,
                           const std::vector<SensorSpec>& sensors, const SourcesSpec& opt,
                           const Clock& clock, metrics::Registry* registry)
    : slaves_(slaves),
      clock_(clock),
      registry_(registry),
      stats_(std::make_unique<SlaveStats[]>(slaves.size())),
      handoff_(opt.queue_chunks, 64, /*block=*/false,
               registry ? &registry->counter("outpost_agent_source_dropped_total",
                                             "Readings dropped because the queue to the pipeline "
                                             "was full",
                                             {{"source", "modbus"}})
                        : nullptr),
      ctx_(std::make_unique<Ctx>()) {
  if (slaves_.empty()) throw std::logic_error("ModbusSource without slaves");
  const ModbusSlaveSpec& link = slaves_.front();
  // Groups: per slave, per poll interval.
  std::map<std::pair<size_t, int64_t>, size_t> by_key;
  for (const auto& s : sensors) {
    if (s.source != SourceKind::kModbus) continue;
    size_t slave = slaves_.size();
    for (size_t i = 0; i < slaves_.size(); ++i) {
      if (slaves_[i].name == s.modbus.slave) slave = i;
    }
    if (slave == slaves_.size()) continue;
    const int64_t interval =
        s.poll_interval_us > 0 ? s.poll_interval_us : slaves_[slave].poll_interval_us;
    auto [it, added] = by_key.try_emplace({slave, interval}, groups_.size());
    if (added) groups_.push_back({slave, interval, 0, {}, {}});
    groups_[it->second].points.push_back({s.id, s.modbus});
    infos_.push_back({s.id, s.name, s.unit});
  }
  for (auto& g : groups_) {
    std::vector<ModbusPlanItem> items;
    for (size_t i = 0; i < g.points.size(); ++i) {
      const auto& p = g.points[i].p;
      const size_t width = modbusIsBits(p.function) ? 1 : modbusTypeWords(p.type);
      items.push_back({p.function, p.address, static_cast<uint16_t>(width), i});
    }
    const auto& sl = slaves_[g.slave];
    g.requests = planModbusRequests(std::move(items), sl.max_gap, sl.max_registers, sl.max_bits);
  }

  if (link.transport == ModbusTransport::kTcp) {
    const std::string port = std::to_string(link.port);
    ctx_->ctx = modbus_new_tcp_pi(link.host.c_str(), port.c_str());
  } else {
    ctx_->ctx = modbus_new_rtu(link.device.c_str(), link.baud, link.parity, link.data_bits,
                               link.stop_bits);
  }
  if (!ctx_->ctx) {
    throw config::ConfigError(link.where + ": libmodbus rejected the settings of slave \"" +
                              link.name + "\": " + modbus_strerror(errno));
  }
  modbus_set_error_recovery(ctx_->ctx, MODBUS_ERROR_RECOVERY_NONE);
  const int64_t t = link.timeout_us;
  modbus_set_response_timeout(ctx_->ctx, static_cast<uint32_t>(t / 1000000),
                              static_cast<uint32_t>(t % 1000000));

  if (registry) {
    for (size_t i = 0; i < slaves_.size(); ++i) {
      const metrics::Labels l = {{"slave", slaves_[i].name}};
      auto& st = stats_[i];
      for (size_t e = 0; e < st.error_counters.size(); ++e) {
        st.error_counters[e] = &registry->counter(
            "outpost_agent_modbus_errors_total",
            "Failed Modbus request attempts, by slave and reason (timeout, exception, crc, "
            "connection, bad_response)",
            {{"slave", slaves_[i].name}, {"reason", modbusErrorName(static_cast<ModbusError>(e))}});
      }
      st.requests_counter = &registry->counter("outpost_agent_modbus_requests_total",
                                               "Modbus read requests sent (attempts)", l);
      st.skipped_counter = &registry->counter(
          "outpost_agent_modbus_skipped_total",
          "Modbus reads not sent in a cycle because the slave had just timed out or its link was "
          "down",
          l);
      st.readings_counter = &registry->counter("outpost_agent_modbus_readings_total",
                                               "Readings decoded from Modbus responses", l);
      st.connected = &registry->gauge("outpost_agent_modbus_connected",
                                      "1 while the slave's link (TCP connection or serial "
                                      "device) is open",
                                      l);
      st.connected->set(0);
    }
  }
}

void ModbusSource::start() {
  if (thread_.joinable()) return;
  spdlog::info("modbus: link {}: {} slave(s), {} sensors in {} read requests per cycle",
               slaves_.front().linkKey(), slaves_.size(), infos_.size(), requestCount());
  thread_ = std::thread([this] { run(); });
}

void ModbusSource::requestStop() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

ModbusSource::~ModbusSource() {
  requestStop();
  if (thread_.joinable()) thread_.join();
  disconnect();
  handoff_.close();
}

uint64_t ModbusSource::errors(size_t slave, ModbusError e) const {
  return stats_[slave].errors[static_cast<size_t>(e)].load();
}
uint64_t ModbusSource::exceptions(size_t slave, int code) const {
  return code > 0 && code < 12 ? stats_[slave].exceptions[static_cast<size_t>(code)].load() : 0;
}
uint64_t ModbusSource::requests(size_t slave) const { return stats_[slave].requests.load(); }
uint64_t ModbusSource::skipped(size_t slave) const { return stats_[slave].skipped.load(); }

size_t ModbusSource::requestCount() const {
  size_t n = 0;
  for (const auto& g : groups_) n += g.requests.size();
  return n;
}

int64_t ModbusSource::poll(int64_t now_us, std::vector<wire::Reading>& out) {
  const size_t n = handoff_.drain(out, 256);
  return n > 0 ? now_us : now_us + kIdlePollUs;
}

void ModbusSource::count(size_t slave, ModbusError e, int code, const char* detail) {
  auto& st = stats_[slave];
  const uint64_t n = st.errors[static_cast<size_t>(e)].fetch_add(1) + 1;
  if (st.error_counters[static_cast<size_t>(e)]) st.error_counters[static_cast<size_t>(e)]->inc();
  if (e == ModbusError::kException && code > 0 && code < 12) {
    st.exceptions[static_cast<size_t>(code)].fetch_add(1);
    if (registry_) {
      if (!st.exception_counters[static_cast<size_t>(code)]) {
        st.exception_counters[static_cast<size_t>(code)] = &registry_->counter(
            "outpost_agent_modbus_exceptions_total",
            "Modbus exception responses, by slave and exception code (1 illegal function, 2 "
            "illegal data address, 3 illegal data value, 4 slave device failure, 6 busy, 10/11 "
            "gateway)",
            {{"slave", slaves_[slave].name}, {"code", std::to_string(code)}});
      }
      st.exception_counters[static_cast<size_t>(code)]->inc();
    }
  }
  if (n <= 3 || n % 1000 == 0) {
    spdlog::warn("modbus: slave \"{}\": {} ({}{}; {} so far)", slaves_[slave].name, detail,
                 modbusErrorName(e), code ? " code " + std::to_string(code) : std::string(), n);
  }
}

bool ModbusSource::waitFor(int64_t us) {
  MutexLock lock(mu_);
  if (us > 0) {
    cv_.wait_for(lock, std::chrono::microseconds(us), [&]() REQUIRES(mu_) { return stopping_; });
  }
  return !stopping_;
}

bool ModbusSource::connect() {
  if (modbus_connect(ctx_->ctx) == -1) {
    const auto& l = slaves_.front();
    const std::string detail =
        "connecting to " +
        (l.transport == ModbusTransport::kTcp ? l.host + ":" + std::to_string(l.port) : l.device) +
        ": " + modbus_strerror(errno);
    for (size_t i = 0; i < slaves_.size(); ++i) {
      count(i, ModbusError::kConnection, 0, detail.c_str());
    }
    return false;
  }
  connected_.store(true);
  for (size_t i = 0; i < slaves_.size(); ++i) {
    if (stats_[i].connected) stats_[i].connected->set(1);
  }
  ++opens_;
  if (opens_ <= 3 || opens_ % 100 == 0) {
    spdlog::info("modbus: link {} open ({} times so far)", slaves_.front().linkKey(), opens_);
  }
  return true;
}

void ModbusSource::disconnect() {
  if (connected_.exchange(false)) {
    modbus_close(ctx_->ctx);
    for (size_t i = 0; i < slaves_.size(); ++i) {
      if (stats_[i].connected) stats_[i].connected->set(0);
    }
  }
}

bool ModbusSource::readGroup(Group& g) {
  const ModbusSlaveSpec& sl = slaves_[g.slave];
  auto& st = stats_[g.slave];
  modbus_t* ctx = ctx_->ctx;
  std::vector<wire::Reading> chunk = handoff_.takeEmpty();
  uint16_t regs[MODBUS_MAX_READ_REGISTERS];
  uint8_t bits[MODBUS_MAX_READ_BITS];
  bool keep_link = true;
  std::vector<size_t> split;  // requests answered "illegal data address" while reading several
  for (size_t r = 0; r < g.requests.size(); ++r) {
    if (r > 0 && !waitFor(0)) break;  // stopping
    const ModbusRequest& req = g.requests[r];
    bool ok = false;
    ModbusError last = ModbusError::kTimeout;
    int last_code = 0;
    for (int attempt = 0; attempt <= sl.retries; ++attempt) {
      if (attempt > 0 && !waitFor(0)) break;
      modbus_set_slave(ctx, sl.unit_id);
      st.requests.fetch_add(1);
      if (st.requests_counter) st.requests_counter->inc();
      int rc = -1;
      switch (req.function) {
        case ModbusFunction::kCoil:
          rc = modbus_read_bits(ctx, req.address, req.count, bits);
          break;
        case ModbusFunction::kDiscreteInput:
          rc = modbus_read_input_bits(ctx, req.address, req.count, bits);
          break;
        case ModbusFunction::kHolding:
          rc = modbus_read_registers(ctx, req.address, req.count, regs);
          break;
        case ModbusFunction::kInput:
          rc = modbus_read_input_registers(ctx, req.address, req.count, regs);
          break;
      }
      if (rc == req.count) {
        ok = true;
        break;
      }
      int code = 0;
      const int err = errno;
      last = rc == -1 ? classifyModbusErrno(err, code) : ModbusError::kBadResponse;
      last_code = code;
      count(g.slave, last, code,
            rc != -1                        ? "short answer"
            : last == ModbusError::kTimeout ? "no answer within timeout_ms"
                                            : modbus_strerror(err));
      if (last == ModbusError::kConnection || last == ModbusError::kException) break;
      modbus_flush(ctx);  // a late or garbled answer must not be taken for the next one
    }
    if (ok) {
      const int64_t ts = clock_.nowUs();
      for (size_t i : req.items) {
        const Point& pt = g.points[i];
        const size_t off = pt.p.address - req.address;
        const double raw = modbusIsBits(req.function)
                               ? (bits[off] ? 1.0 : 0.0)
                               : modbusDecode(regs + off, pt.p.type, pt.p.order);
        chunk.emplace_back(ts, raw * pt.p.scale + pt.p.offset, pt.id, wire::Quality::Good);
      }
      continue;
    }
    if (last == ModbusError::kException) {
      // The slave answers: go on with the others. A range it refuses while holding several
      // sensors is read sensor by sensor from now on, so one bad address costs only its sensor.
      if (last_code == MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS && req.items.size() > 1) {
        split.push_back(r);
      }
      continue;
    }
    if (last == ModbusError::kConnection ||
        (last == ModbusError::kTimeout && sl.transport == ModbusTransport::kTcp)) {
      keep_link = false;
    }
    if (last == ModbusError::kTimeout || !keep_link) {
      const size_t rest = g.requests.size() - r - 1;
      st.skipped.fetch_add(rest);
      if (st.skipped_counter) st.skipped_counter->inc(rest);
      break;
    }
  }
  for (auto it = split.rbegin(); it != split.rend(); ++it) {
    const ModbusRequest req = g.requests[*it];
    spdlog::warn(
        "modbus: slave \"{}\": exception 2 (illegal data address) for {} {}..{} read together; "
        "reading its {} sensors one by one from now on",
        sl.name, modbusFunctionName(req.function), req.address, req.address + req.count - 1,
        req.items.size());
    g.requests.erase(g.requests.begin() + static_cast<std::ptrdiff_t>(*it));
    for (size_t i : req.items) {
      const auto& p = g.points[i].p;
      const size_t width = modbusIsBits(p.function) ? 1 : modbusTypeWords(p.type);
      g.requests.push_back({p.function, p.address, static_cast<uint16_t>(width), {i}});
    }
  }
  if (!chunk.empty()) {
    readings_.fetch_add(chunk.size());
    if (st.readings_counter) st.readings_counter->inc(chunk.size());
    handoff_.put(std::move(chunk), /*may_block=*/false);
  }
  return keep_link;
}

void ModbusSource::run() {
  setThreadName("op-src-modbus");
  const ModbusSlaveSpec& link = slaves_.front();
  int64_t backoff = link.reconnect_min_us;
  const int64_t start = clock_.monotonicUs();
  for (auto& g : groups_) g.next_us = start;
  while (waitFor(0)) {
    if (!connected_.load()) {
      if (!connect()) {
        // Reads due meanwhile are not sent: counted as skipped, the schedule moves on.
        const int64_t until = clock_.monotonicUs() + backoff;
        for (auto& g : groups_) {
          while (g.next_us < until) {
            g.next_us += g.interval_us;
            stats_[g.slave].skipped.fetch_add(g.requests.size());
            if (stats_[g.slave].skipped_counter)
              stats_[g.slave].skipped_counter->inc(g.requests.size());
          }
        }
        if (!waitFor(backoff)) break;
        backoff = std::min(backoff * 2, link.reconnect_max_us);
        continue;
      }
      backoff = link.reconnect_min_us;
    }
    if (groups_.empty()) {
      if (!waitFor(1000000)) break;
      continue;
    }
    auto next =
        std::min_element(groups_.begin(), groups_.end(),
                         [](const Group& a, const Group& b) { return a.next_us < b.next_us; });
    const int64_t now = clock_.monotonicUs();
    if (next->next_us > now) {
      if (!waitFor(next->next_us - now)) break;
      continue;
    }
    const bool keep = readGroup(*next);
    // The next cycle; cycles missed while reading (a slow or dead slave) are not made up.
    const int64_t after = clock_.monotonicUs();
    next->next_us += next->interval_us;
    if (next->next_us <= after) {
      next->next_us += ((after - next->next_us) / next->interval_us + 1) * next->interval_us;
    }
    if (!keep) {
      disconnect();
      ++closes_;
      if (closes_ <= 3 || closes_ % 100 == 0) {
        spdlog::warn("modbus: link {} closed after a failed read; reconnecting ({} times so far)",
                     link.linkKey(), closes_);
      }
    }
  }
  disconnect();
}

}  // namespace outpost::agent

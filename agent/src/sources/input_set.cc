#include "outpost/agent/input_set.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <set>

#include "outpost/agent/inputs.h"
#include "outpost/agent/modbus_source.h"
#include "outpost/agent/mqtt_source.h"
#include "outpost/agent/simulated_source.h"
#include "outpost/agent/source.h"
#include "outpost/agent/stream_source.h"
#include "outpost/agent/sysfs_source.h"

namespace outpost::agent {
namespace {

bool isSysfs(SourceKind k) {
  return k == SourceKind::kHwmon || k == SourceKind::kThermal || k == SourceKind::kIio;
}

std::vector<SensorSpec> ofKind(const AgentInputs& in, bool (*pred)(SourceKind)) {
  std::vector<SensorSpec> out;
  for (const auto& s : in.sensors) {
    if (pred(s.source)) out.push_back(s);
  }
  return out;
}

bool isMqtt(SourceKind k) { return k == SourceKind::kMqtt; }

bool sameReadings(const std::vector<SensorSpec>& a, const std::vector<SensorSpec>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), sameReading);
}

bool sameMqttSettings(const SourcesSpec& a, const SourcesSpec& b) {
  const auto& x = a.mqtt_security;
  const auto& y = b.mqtt_security;
  return a.mqtt_broker == b.mqtt_broker && a.mqtt_client_id == b.mqtt_client_id && x.tls == y.tls &&
         x.ca_file == y.ca_file && x.cert_file == y.cert_file && x.key_file == y.key_file &&
         x.verify == y.verify && x.username == y.username && x.password == y.password &&
         a.mqtt_clean_session == b.mqtt_clean_session && a.mqtt_qos == b.mqtt_qos &&
         a.mqtt_max_payload_bytes == b.mqtt_max_payload_bytes;
}

bool sameSocketSettings(const SourcesSpec& a, const SourcesSpec& b) {
  return a.socket_path == b.socket_path && a.socket_format == b.socket_format &&
         a.socket_max_clients == b.socket_max_clients;
}

void checkMqttBroker(const std::string& uri) {
  for (const char* scheme : {"tcp://", "mqtt://", "ssl://", "mqtts://", "ws://", "wss://"}) {
    if (uri.starts_with(scheme) && uri.size() > std::string_view(scheme).size()) return;
  }
  throw config::ConfigError(
      "sources.mqtt.broker = \"" + uri +
      "\" is not usable; allowed: tcp://, mqtt://, ssl://, mqtts://, ws:// or "
      "wss:// followed by host:port");
}

// The Modbus sensors of `in` by link (ModbusSlaveSpec::linkKey()): the slaves they read and
// the sensors. Slaves no sensor reads get no link.
struct ModbusLink {
  std::vector<ModbusSlaveSpec> slaves;
  std::vector<SensorSpec> sensors;
  bool operator==(const ModbusLink& o) const {
    return slaves == o.slaves && sameReadings(sensors, o.sensors);
  }
};

std::map<std::string, ModbusLink> modbusLinks(const AgentInputs& in) {
  std::map<std::string, ModbusLink> links;
  for (const auto& s : in.sensors) {
    if (s.source != SourceKind::kModbus) continue;
    for (const auto& m : in.sources.modbus_slaves) {
      if (m.name != s.modbus.slave) continue;
      auto& link = links[m.linkKey()];
      if (std::none_of(link.slaves.begin(), link.slaves.end(),
                       [&](const ModbusSlaveSpec& x) { return x.name == m.name; })) {
        link.slaves.push_back(m);
      }
      link.sensors.push_back(s);
    }
  }
  return links;
}

}  // namespace

void SensorIds::assign(AgentInputs& in) {
  std::map<std::string, uint16_t, std::less<>> ids = ids_;
  uint32_t next = next_;
  for (auto& s : in.sensors) {
    auto it = ids.find(s.name);
    if (it == ids.end()) {
      if (next > 65534) {
        throw config::ConfigError(s.where + ".name = \"" + s.name +
                                  "\": this process has used 65535 sensor names; allowed: "
                                  "restart the agent to add more");
      }
      it = ids.emplace(s.name, static_cast<uint16_t>(next++)).first;
    }
    s.id = it->second;
  }
  ids_ = std::move(ids);
  next_ = next;
}

InputSet::InputSet(const AgentInputs& in, const Clock& clock, metrics::Registry* registry)
    : clock_(clock), registry_(registry), inputs_(in) {
  const int64_t start = clock.nowUs();
  // Sysfs first: a missing device stops start-up before any thread is started.
  if (auto sysfs = ofKind(in, isSysfs); !sysfs.empty()) {
    sysfs_ = std::make_unique<SysfsSource>(sysfs, in.sources.sysfs_root, start, registry);
  }
  for (const auto& s : in.sensors) {
    if (s.source == SourceKind::kSimulated) {
      simulated_[s.name] = std::make_unique<SimulatedSource>(
          std::vector<SimulatedSensorSpec>{s.simulated}, start, s.id);
    }
  }
  if (in.uses(SourceKind::kStdin)) {
    stdin_ = std::make_unique<StdinSource>(in.sensors, in.sources, clock, registry);
  }
  if (in.uses(SourceKind::kSocket)) {
    socket_ = std::make_unique<SocketSource>(in.sensors, in.sources, clock, registry);
  }
  if (in.uses(SourceKind::kMqtt)) {
    mqtt_ = std::make_unique<MqttSource>(in.sensors, in.sources, clock, registry);
  }
  for (const auto& [key, link] : modbusLinks(in)) {
    auto src =
        std::make_unique<ModbusSource>(link.slaves, link.sensors, in.sources, clock, registry);
    src->start();
    modbus_[key] = std::move(src);
  }
  rebuildDictionary();
}

InputSet::~InputSet() {
  // Every Modbus link winds down at once (each may be waiting for one response).
  for (auto& [key, src] : modbus_) static_cast<ModbusSource&>(*src).requestStop();
}

void InputSet::rebuildDictionary() {
  all_.clear();
  if (sysfs_) all_.push_back(sysfs_.get());
  for (const auto& s : inputs_.sensors) {
    if (auto it = simulated_.find(s.name); it != simulated_.end()) all_.push_back(it->second.get());
  }
  if (stdin_) all_.push_back(stdin_.get());
  if (socket_) all_.push_back(socket_.get());
  if (mqtt_) all_.push_back(mqtt_.get());
  for (const auto& [key, src] : modbus_) all_.push_back(src.get());
  next_.assign(all_.size(), 0);
  infos_.clear();
  for (const Source* src : all_) {
    for (const auto& info : src->sensors()) infos_.push_back(info);
  }
  std::sort(infos_.begin(), infos_.end(),
            [](const codec::SensorInfo& a, const codec::SensorInfo& b) { return a.id < b.id; });
}

int64_t InputSet::poll(int64_t now_us, std::vector<wire::Reading>& out) {
  int64_t next = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < all_.size(); ++i) {
    if (next_[i] <= now_us) next_[i] = all_[i]->poll(now_us, out);
    next = std::min(next, next_[i]);
  }
  return next;
}

bool InputSet::stdinFinished() const { return stdin_ && stdin_->finished(); }

void InputSet::drain(Source& s, size_t max_polls, std::vector<wire::Reading>& out) {
  // A threaded source's poll() hands over a bounded number of chunks per call; the reader may
  // still be adding, so the number of polls is bounded too (by the queue's capacity).
  for (size_t i = 0; i < max_polls; ++i) {
    const size_t before = out.size();
    (void)s.poll(0, out);
    if (out.size() == before) break;
  }
}

std::vector<std::string> InputSet::reconfigure(const AgentInputs& requested,
                                               std::vector<wire::Reading>& drained) {
  // Settings the running readers cannot take (restart-only: they size the queues and the
  // decoders) stay as they were started.
  AgentInputs next = requested;
  next.sources.stdin_format = inputs_.sources.stdin_format;
  next.sources.queue_chunks = inputs_.sources.queue_chunks;
  next.sources.queue_block = inputs_.sources.queue_block;
  next.sources.max_line_bytes = inputs_.sources.max_line_bytes;
  std::vector<std::string> done;
  const int64_t now = clock_.nowUs();
  // 1. Everything that can fail, before anything changes.
  const auto old_sysfs = ofKind(inputs_, isSysfs);
  const auto new_sysfs = ofKind(next, isSysfs);
  const bool sysfs_changed =
      !sameReadings(old_sysfs, new_sysfs) ||
      (!new_sysfs.empty() && next.sources.sysfs_root != inputs_.sources.sysfs_root);
  std::unique_ptr<Source> sysfs;
  if (sysfs_changed && !new_sysfs.empty()) {
    sysfs = std::make_unique<SysfsSource>(new_sysfs, next.sources.sysfs_root, now, registry_);
  }
  const bool socket_used = next.uses(SourceKind::kSocket);
  const bool socket_restart =
      socket_ && (!socket_used || !sameSocketSettings(inputs_.sources, next.sources));
  if (socket_used && (socket_restart || !socket_))
    SocketSource::checkPath(next.sources.socket_path);
  const bool mqtt_used = next.uses(SourceKind::kMqtt);
  const bool mqtt_restart =
      mqtt_ && (!mqtt_used || !sameMqttSettings(inputs_.sources, next.sources) ||
                !sameReadings(ofKind(inputs_, isMqtt), ofKind(next, isMqtt)));
  if (mqtt_used && (mqtt_restart || !mqtt_)) checkMqttBroker(next.sources.mqtt_broker);
  // Modbus links: new and changed ones are built here (libmodbus checks their settings) and
  // started once the links they replace are closed (one serial device, one user at a time).
  const auto old_links = modbusLinks(inputs_);
  const auto new_links = modbusLinks(next);
  std::map<std::string, std::unique_ptr<Source>, std::less<>> modbus;
  std::vector<ModbusSource*> fresh;
  for (const auto& [key, link] : new_links) {
    auto old = old_links.find(key);
    if (old != old_links.end() && old->second == link && modbus_.contains(key)) continue;
    auto src =
        std::make_unique<ModbusSource>(link.slaves, link.sensors, next.sources, clock_, registry_);
    fresh.push_back(src.get());
    modbus[key] = std::move(src);
  }

  // 2. Apply.
  if (sysfs_changed) {
    done.push_back(sysfs ? (sysfs_ ? "sysfs source rebuilt" : "sysfs source started")
                         : "sysfs source stopped");
    sysfs_ = std::move(sysfs);
  }
  std::map<std::string, std::unique_ptr<Source>, std::less<>> simulated;
  for (const auto& s : next.sensors) {
    if (s.source != SourceKind::kSimulated) continue;
    auto old = simulated_.find(s.name);
    const SensorSpec* before = nullptr;
    for (const auto& o : inputs_.sensors) {
      if (o.name == s.name) before = &o;
    }
    if (old != simulated_.end() && before && sameReading(*before, s)) {
      simulated[s.name] = std::move(old->second);  // keeps its schedule and signal state
      continue;
    }
    simulated[s.name] =
        std::make_unique<SimulatedSource>(std::vector<SimulatedSensorSpec>{s.simulated}, now, s.id);
    done.push_back("simulated sensor \"" + s.name + "\" " +
                   (old != simulated_.end() ? "restarted" : "started"));
  }
  for (const auto& [name, src] : simulated_) {
    if (src && !simulated.contains(name))
      done.push_back("simulated sensor \"" + name + "\" stopped");
  }
  simulated_ = std::move(simulated);

  // Stdin and an unchanged socket keep running: what they queued keeps its ids (SensorIds).
  const size_t max_polls = next.sources.queue_chunks / 64 + 2;
  if (stdin_) {
    stdin_->setSensors(next.sensors);  // the reader keeps its place in the stream
  } else if (next.uses(SourceKind::kStdin)) {
    stdin_ = std::make_unique<StdinSource>(next.sensors, next.sources, clock_, registry_);
    done.push_back("stdin source started");
  }

  if (socket_restart) {
    drain(*socket_, max_polls, drained);
    socket_.reset();  // closes the connections and removes the socket file
    done.push_back(socket_used ? "socket source restarted (connections closed)"
                               : "socket source stopped");
  } else if (socket_) {
    static_cast<SocketSource&>(*socket_).setSensors(next.sensors);
  }
  if (socket_used && !socket_) {
    try {
      socket_ = std::make_unique<SocketSource>(next.sensors, next.sources, clock_, registry_);
      if (!socket_restart) done.push_back("socket source started");
    } catch (const std::exception& e) {
      spdlog::error(
          "reload: the socket source could not be started: {}; socket sensors get no "
          "readings until the next reload",
          e.what());
    }
  }

  if (mqtt_restart) {
    // The new source inherits a persistent session (same broker and client id) and its
    // subscriptions only when its topic filters are the same; otherwise the old ones go.
    auto filters = [](const AgentInputs& in) {
      std::set<std::string> f;
      for (const auto& s : in.sensors) {
        if (s.source == SourceKind::kMqtt) f.insert(s.mqtt_topic);
      }
      return f;
    };
    const bool inherit = mqtt_used && !next.sources.mqtt_clean_session &&
                         next.sources.mqtt_broker == inputs_.sources.mqtt_broker &&
                         next.sources.mqtt_client_id == inputs_.sources.mqtt_client_id &&
                         filters(next) == filters(inputs_);
    if (!inherit) static_cast<MqttSource&>(*mqtt_).unsubscribeOnStop();
    drain(*mqtt_, max_polls, drained);
    mqtt_.reset();  // disconnects
    done.push_back(mqtt_used ? "mqtt source restarted" : "mqtt source stopped");
  }
  if (mqtt_used && !mqtt_) {
    try {
      mqtt_ = std::make_unique<MqttSource>(next.sensors, next.sources, clock_, registry_);
      if (!mqtt_restart) done.push_back("mqtt source started");
    } catch (const std::exception& e) {
      spdlog::error(
          "reload: the mqtt source could not be started: {}; mqtt sensors get no "
          "readings until the next reload",
          e.what());
    }
  }
  for (auto& [key, src] : modbus_) {
    if (modbus.contains(key) || !new_links.contains(key)) {
      static_cast<ModbusSource&>(*src).requestStop();  // all of them wind down at once
    }
  }
  for (auto& [key, src] : modbus_) {
    const bool replaced = modbus.contains(key);
    if (!replaced && new_links.contains(key)) {
      modbus[key] = std::move(src);  // unchanged: keeps its connection and schedule
      continue;
    }
    drain(*src, max_polls, drained);
    src.reset();  // stops the link's thread, closes the connection
    done.push_back("modbus link " + key + (replaced ? " restarted" : " stopped"));
  }
  for (const auto& [key, src] : modbus) {
    if (!modbus_.contains(key)) done.push_back("modbus link " + key + " started");
  }
  for (ModbusSource* src : fresh) src->start();  // the links they replace are closed now
  modbus_ = std::move(modbus);
  inputs_ = std::move(next);
  rebuildDictionary();
  return done;
}

std::unique_ptr<InputSet> buildInputSet(const AgentInputs& inputs, const Clock& clock,
                                        metrics::Registry* registry) {
  return std::make_unique<InputSet>(inputs, clock, registry);
}

std::unique_ptr<Source> buildSources(const AgentInputs& in, const Clock& clock,
                                     metrics::Registry& registry) {
  return buildInputSet(in, clock, &registry);
}

}  // namespace outpost::agent

#include <cmath>
#include <set>

#include "outpost/agent/inputs.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::agent {
namespace {

using config::ConfigError;

constexpr double kHuge = 1e300;

std::shared_ptr<const config::Schema> filterSchema() {
  auto s = std::make_shared<config::Schema>("filter");
  s->oneOf("type", "range", {"range", "deadband", "rate_limit", "dedup"},
           "Filter kind. range: NaN/Inf and physical range checks; deadband: report by "
           "exception; rate_limit: min interval / max per second; dedup: drop repeats of the "
           "same timestamp and value")
      .real("min", -kHuge, -kHuge, kHuge, "range: lowest physically possible value")
      .real("max", kHuge, -kHuge, kHuge, "range: highest physically possible value")
      .oneOf("action", "drop", {"drop", "bad", "suspect"},
             "range: what to do with a value outside [min, max]: drop it, or keep it marked "
             "with quality bad or suspect")
      .oneOf("non_finite", "drop", {"drop", "bad"},
             "range: what to do with NaN/Inf: drop, or keep marked bad")
      .real("absolute", 0, 0, kHuge,
            "deadband: pass a value only when it differs from the last passed one by more than "
            "this (0 with percent 0: any change passes)")
      .real("percent", 0, 0, 1e6,
            "deadband: ... or by more than this percentage of the last passed value (the wider "
            "band of the two applies)")
      .real("heartbeat_s", 0, 0, 1e7,
            "deadband: pass a value anyway when the last passed one is this old (event time); "
            "0: no heartbeat")
      .integer("min_interval_ms", 0, 0, 86400000,
               "rate_limit: drop a reading closer than this to the last passed one (event time)")
      .integer("max_per_second", 0, 0, 10000000,
               "rate_limit: at most this many readings per second of event time; 0: no limit")
      .integer("history", 1, 1, 64,
               "dedup: how many of the latest readings a new one is compared with");
  return s;
}

std::shared_ptr<const config::Schema> modbusSlaveSchema() {
  auto s = std::make_shared<config::Schema>("modbus slave");
  s->requiredString("name", "Slave name, unique; sensors name it in modbus.slave (and /metrics in "
                            "the slave label)")
      .oneOf("transport", "tcp", {"tcp", "rtu"},
             "tcp: Modbus TCP to host:port; rtu: Modbus RTU on a serial device (slaves on the same "
             "device share the bus, one request at a time)")
      .string("host", "", "tcp: host name or IP address of the slave or gateway (required)")
      .integer("port", 502, 1, 65535, "tcp: port")
      .string("device", "", "rtu: serial device, e.g. \"/dev/ttyUSB0\" (required)")
      .integer("baud", 9600, 300, 4000000, "rtu: bit rate")
      .oneOf("parity", "even", {"none", "even", "odd"},
             "rtu: parity (the Modbus standard's default is even)")
      .integer("data_bits", 8, 7, 8, "rtu: data bits")
      .integer("stop_bits", 1, 1, 2, "rtu: stop bits")
      .integer("unit_id", 1, 0, 255,
               "Unit identifier (slave address): rtu 1 to 247; tcp 0 to 255 (gateways route by "
               "it; 255 or 1 for most native TCP devices)")
      .integer("timeout_ms", 1000, 1, 60000, "How long to wait for each response")
      .integer("retries", 1, 0, 10,
               "Further attempts after a timeout, CRC error or malformed response (exception "
               "responses are not retried); every failed attempt is counted")
      .integer("poll_interval_ms", 1000, 10, 86400000,
               "Time between reads of this slave's sensors (a sensor's own poll_interval_ms "
               "overrides it)")
      .integer("reconnect_min_ms", 500, 10, 600000,
               "First wait before reconnecting after a connection failure (doubles up to "
               "reconnect_max_ms)")
      .integer("reconnect_max_ms", 30000, 10, 3600000, "Longest wait between reconnect attempts")
      .integer("max_gap", 0, 0, 1999,
               "Registers (bits) between two sensors that may be read and discarded to join their "
               "reads into one request; 0: only contiguous or overlapping sensors share a request "
               "(some devices answer exception 2 for unmapped registers)")
      .integer("max_registers", 125, 1, 125,
               "Most registers read in one request (the protocol's limit is 125)")
      .integer("max_bits", 2000, 1, 2000,
               "Most coils or discrete inputs read in one request (the protocol's limit is 2000)");
  return s;
}

std::shared_ptr<const config::Schema> sensorSchema() {
  auto s = std::make_shared<config::Schema>("sensor");
  s->requiredString("name", "Sensor name, unique within the device (appears on Kafka)")
      .string("unit", "",
              "Unit of the values, e.g. \"degC\", \"%RH\", \"A\"; sysfs sources fill it in when "
              "empty")
      .oneOf("source", "simulated",
             {"simulated", "stdin", "socket", "mqtt", "hwmon", "thermal", "iio", "modbus"},
             "Where readings come from: simulated signal; line/JSON/CSV text on standard input or "
             "the Unix socket ([sources.stdin], [sources.socket]); a local MQTT subscription; "
             "Linux sysfs hwmon, thermal zone or IIO device; a Modbus TCP/RTU slave "
             "([[sources.modbus.slaves]])")
      .integer("poll_interval_ms", 0, 0, 86400000,
               "Polled sources: time between readings (sysfs default 1000; modbus: the slave's "
               "poll_interval_ms; simulated: instead of rate_hz). 0: the source's default")
      .real("rate_hz", 1.0, 0.001, 100000, "simulated: readings per second")
      .oneOf("shape", "sine", {"sine", "square", "sawtooth", "random_walk", "constant", "counter"},
             "simulated: signal shape; \"counter\" emits 0, 1, 2, ... (used by tests)")
      .real("amplitude", 1.0, 0, 1e12, "simulated: signal amplitude (random_walk: step stddev)")
      .real("offset", 0.0, -1e12, 1e12, "simulated: signal offset")
      .real("period_s", 60.0, 0.001, 1e9, "simulated: signal period in seconds")
      .real("noise", 0.0, 0, 1e12, "simulated: standard deviation of Gaussian noise added")
      .integer("seed", 1, 0, INT64_MAX, "simulated: random seed")
      .string("mqtt.topic", "",
              "mqtt: topic filter (+ and # allowed) whose messages carry this sensor's value")
      .string("mqtt.field", "",
              "mqtt: dotted path of the value in a JSON object payload (e.g. \"env.temp\"); "
              "empty: the payload is the number itself")
      .string("mqtt.timestamp_field", "",
              "mqtt: dotted path of the event time in the JSON payload (epoch s/ms/us/ns or "
              "ISO-8601); empty: receive time")
      .string("hwmon.chip", "",
              "hwmon: chip name (the hwmonN/name file, e.g. \"coretemp\") or directory "
              "(\"hwmon0\")")
      .string("hwmon.input", "",
              "hwmon: input file, e.g. \"temp1_input\" (millidegrees -> degC), \"in0_input\" "
              "(mV -> V), \"fan1_input\" (RPM), \"power1_input\" (uW -> W), \"curr1_input\" (mA "
              "-> A)")
      .string("thermal.zone", "",
              "thermal: zone type (thermal_zoneN/type, e.g. \"x86_pkg_temp\") or directory "
              "(\"thermal_zone0\"); millidegrees -> degC")
      .string("iio.device", "",
              "iio: device name (iio:deviceN/name) or directory (\"iio:device0\")")
      .string("iio.channel", "",
              "iio: channel, e.g. \"in_voltage0\": value = (in_voltage0_raw + offset) * scale, "
              "offset/scale from <channel>_offset/_scale or the shared in_voltage_offset/_scale "
              "(0 and 1 when absent)")
      .string("modbus.slave", "",
              "modbus: name of the [[sources.modbus.slaves]] entry to read (required)")
      .oneOf("modbus.function", "holding", {"coil", "discrete_input", "holding", "input"},
             "modbus: data table: coil (FC 1), discrete_input (FC 2), holding register (FC 3), "
             "input register (FC 4)")
      .integer("modbus.address", 0, 0, 65535,
               "modbus: 0-based protocol address of the first register or bit (required; "
               "register 40001 of the old numbering is holding address 0)")
      .oneOf("modbus.type", "uint16",
             {"bool", "int16", "uint16", "int32", "uint32", "int64", "float32", "float64"},
             "modbus: value type; 32-bit types use 2 registers, 64-bit 4; coils and discrete "
             "inputs are bool; bool on a register: 1 when it is not 0. int64 values beyond 2^53 "
             "lose precision (readings are doubles)")
      .oneOf("modbus.order", "ABCD", {"ABCD", "DCBA", "BADC", "CDAB"},
             "modbus: byte order on the wire, A = most significant byte: ABCD big-endian "
             "(standard), DCBA little-endian, BADC bytes swapped in each register, CDAB registers "
             "swapped; 64-bit types extend the pattern (CDAB = GHEFCDAB)")
      .real("modbus.scale", 1.0, -1e12, 1e12, "modbus: value = raw * scale + offset")
      .real("modbus.offset", 0.0, -1e12, 1e12, "modbus: value = raw * scale + offset")
      .tableArray("filters", filterSchema(),
                  "Filter chain of this sensor, applied in file order ([[sensors.filters]])")
      .oneOf("window.kind", "none", {"none", "tumbling", "sliding"},
             "Window statistics (count, min, max, mean, population stddev, first, last) on event "
             "time")
      .integer("window.size_ms", 60000, 1, 86400000LL * 7, "Window length")
      .integer("window.hop_ms", 0, 0, 86400000LL * 7,
               "sliding: distance between window starts (must divide size_ms); 0: size_ms")
      .integer("window.allowed_lateness_ms", 0, 0, 86400000LL,
               "A window closes once a reading this much newer than its end arrived; readings "
               "for closed windows are counted as late and left out")
      .oneOf("output", "raw", {"raw", "windows", "both"},
             "What is sent: the raw readings (after filters), the window statistics, or both");
  return s;
}

SourceKind parseSourceKind(const std::string& s) {
  if (s == "simulated") return SourceKind::kSimulated;
  if (s == "stdin") return SourceKind::kStdin;
  if (s == "socket") return SourceKind::kSocket;
  if (s == "mqtt") return SourceKind::kMqtt;
  if (s == "hwmon") return SourceKind::kHwmon;
  if (s == "thermal") return SourceKind::kThermal;
  if (s == "modbus") return SourceKind::kModbus;
  return SourceKind::kIio;
}

Action parseAction(const std::string& s) {
  if (s == "bad") return Action::kBad;
  if (s == "suspect") return Action::kSuspect;
  return Action::kDrop;
}

// Keys that only make sense for some kinds: set for another kind is an error, not silence.
void onlyFor(const config::Config& c, const std::string& where,
             std::initializer_list<const char*> keys, bool applies, const std::string& kind_text) {
  if (applies) return;
  for (const char* k : keys) {
    if (c.isSet(k)) {
      throw ConfigError(where + "." + k + " is set but applies only to " + kind_text);
    }
  }
}

FilterSpec parseFilter(const config::Config& f, const std::string& where) {
  FilterSpec spec;
  const std::string& type = f.getString("type");
  if (type == "range")
    spec.kind = FilterKind::kRange;
  else if (type == "deadband")
    spec.kind = FilterKind::kDeadband;
  else if (type == "rate_limit")
    spec.kind = FilterKind::kRateLimit;
  else
    spec.kind = FilterKind::kDedup;
  onlyFor(f, where, {"min", "max", "action", "non_finite"}, spec.kind == FilterKind::kRange,
          "type = \"range\"");
  onlyFor(f, where, {"absolute", "percent", "heartbeat_s"}, spec.kind == FilterKind::kDeadband,
          "type = \"deadband\"");
  onlyFor(f, where, {"min_interval_ms", "max_per_second"}, spec.kind == FilterKind::kRateLimit,
          "type = \"rate_limit\"");
  onlyFor(f, where, {"history"}, spec.kind == FilterKind::kDedup, "type = \"dedup\"");
  spec.min = f.isSet("min") ? f.getDouble("min") : -std::numeric_limits<double>::infinity();
  spec.max = f.isSet("max") ? f.getDouble("max") : std::numeric_limits<double>::infinity();
  if (spec.kind == FilterKind::kRange && !(spec.min <= spec.max)) {
    throw ConfigError(where + ".min = " + config::valueToString(spec.min) + " is above " + where +
                      ".max = " + config::valueToString(spec.max) + "; allowed: min <= max");
  }
  spec.out_of_range = parseAction(f.getString("action"));
  spec.non_finite = parseAction(f.getString("non_finite"));
  spec.absolute = f.getDouble("absolute");
  spec.percent = f.getDouble("percent");
  spec.heartbeat_us = static_cast<int64_t>(std::llround(f.getDouble("heartbeat_s") * 1e6));
  spec.min_interval_us = f.getInt("min_interval_ms") * 1000;
  spec.max_per_second = static_cast<uint32_t>(f.getInt("max_per_second"));
  spec.history = static_cast<uint32_t>(f.getInt("history"));
  if (spec.kind == FilterKind::kRateLimit && spec.min_interval_us == 0 &&
      spec.max_per_second == 0) {
    throw ConfigError(where +
                      ": a rate_limit filter needs min_interval_ms or max_per_second "
                      "(allowed: either > 0)");
  }
  return spec;
}

std::vector<ModbusSlaveSpec> parseModbusSlaves(const config::Config& cfg) {
  std::vector<ModbusSlaveSpec> out;
  const auto& items = cfg.items("sources.modbus.slaves");
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& c = items[i];
    ModbusSlaveSpec m;
    m.where = "sources.modbus.slaves[" + std::to_string(i) + "]";
    m.name = c.getString("name");
    for (const auto& o : out) {
      if (o.name == m.name) {
        throw ConfigError(m.where + ".name = \"" + m.name + "\" is used by " + o.where +
                          " too; allowed: a name unique among the slaves");
      }
    }
    const bool tcp = c.getString("transport") == "tcp";
    m.transport = tcp ? ModbusTransport::kTcp : ModbusTransport::kRtu;
    onlyFor(c, m.where, {"host", "port"}, tcp, "transport = \"tcp\"");
    onlyFor(c, m.where, {"device", "baud", "parity", "data_bits", "stop_bits"}, !tcp,
            "transport = \"rtu\"");
    m.host = c.getString("host");
    m.port = static_cast<int>(c.getInt("port"));
    m.device = c.getString("device");
    m.baud = static_cast<int>(c.getInt("baud"));
    const std::string& parity = c.getString("parity");
    m.parity = parity == "none" ? 'N' : parity == "odd" ? 'O' : 'E';
    m.data_bits = static_cast<int>(c.getInt("data_bits"));
    m.stop_bits = static_cast<int>(c.getInt("stop_bits"));
    m.unit_id = static_cast<int>(c.getInt("unit_id"));
    m.timeout_us = c.getInt("timeout_ms") * 1000;
    m.retries = static_cast<int>(c.getInt("retries"));
    m.poll_interval_us = c.getInt("poll_interval_ms") * 1000;
    m.reconnect_min_us = c.getInt("reconnect_min_ms") * 1000;
    m.reconnect_max_us = c.getInt("reconnect_max_ms") * 1000;
    m.max_gap = static_cast<int>(c.getInt("max_gap"));
    m.max_registers = static_cast<int>(c.getInt("max_registers"));
    m.max_bits = static_cast<int>(c.getInt("max_bits"));
    if (tcp && m.host.empty()) {
      throw ConfigError(m.where + ".host is required for transport = \"tcp\"");
    }
    if (!tcp && (m.device.empty() || m.device.front() != '/')) {
      throw ConfigError(m.where + ".device = \"" + m.device +
                        "\" is not usable; allowed: the absolute path of a serial device, e.g. "
                        "\"/dev/ttyUSB0\" (required for transport = \"rtu\")");
    }
    if (!tcp && (m.unit_id < 1 || m.unit_id > 247)) {
      throw ConfigError(m.where + ".unit_id = " + std::to_string(m.unit_id) +
                        " is out of range for transport = \"rtu\"; allowed: 1 to 247");
    }
    if (m.reconnect_max_us < m.reconnect_min_us) {
      throw ConfigError(m.where + ".reconnect_max_ms is below reconnect_min_ms; allowed: >= " +
                        std::to_string(m.reconnect_min_us / 1000));
    }
    // Slaves on one serial device share the bus: one set of line settings, distinct addresses.
    for (const auto& o : out) {
      if (tcp || o.transport != ModbusTransport::kRtu || o.device != m.device) continue;
      if (o.baud != m.baud || o.parity != m.parity || o.data_bits != m.data_bits ||
          o.stop_bits != m.stop_bits || o.timeout_us != m.timeout_us ||
          o.reconnect_min_us != m.reconnect_min_us || o.reconnect_max_us != m.reconnect_max_us) {
        throw ConfigError(m.where + " and " + o.where + " share device \"" + m.device +
                          "\" but differ in baud, parity, data_bits, stop_bits, timeout_ms or "
                          "reconnect_*_ms; allowed: the same line settings for every slave on "
                          "one bus");
      }
      if (o.unit_id == m.unit_id) {
        throw ConfigError(m.where + ".unit_id = " + std::to_string(m.unit_id) + " is used by " +
                          o.where + " on the same device \"" + m.device +
                          "\"; allowed: one unit_id per slave on a bus");
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

ModbusPoint parseModbusPoint(const config::Config& s, const std::string& where,
                             const std::vector<ModbusSlaveSpec>& slaves) {
  ModbusPoint p;
  p.slave = s.getString("modbus.slave");
  const ModbusSlaveSpec* slave = nullptr;
  std::string names;
  for (const auto& m : slaves) {
    if (m.name == p.slave) slave = &m;
    names += (names.empty() ? "\"" : ", \"") + m.name + "\"";
  }
  if (p.slave.empty()) {
    throw ConfigError(where + ".modbus.slave is required for source = \"modbus\"");
  }
  if (!slave) {
    throw ConfigError(where + ".modbus.slave = \"" + p.slave +
                      "\" names no [[sources.modbus.slaves]] entry; allowed: " +
                      (names.empty() ? std::string("(no slaves are configured)") : names));
  }
  if (!s.isSet("modbus.address")) {
    throw ConfigError(where + ".modbus.address is required for source = \"modbus\"");
  }
  const std::string& fn = s.getString("modbus.function");
  p.function = fn == "coil"             ? ModbusFunction::kCoil
               : fn == "discrete_input" ? ModbusFunction::kDiscreteInput
               : fn == "input"          ? ModbusFunction::kInput
                                        : ModbusFunction::kHolding;
  p.address = static_cast<uint16_t>(s.getInt("modbus.address"));
  const std::string& type = s.getString("modbus.type");
  static constexpr ModbusType kTypes[] = {ModbusType::kBool,   ModbusType::kInt16,
                                          ModbusType::kUint16, ModbusType::kInt32,
                                          ModbusType::kUint32, ModbusType::kInt64,
                                          ModbusType::kFloat32, ModbusType::kFloat64};
  for (ModbusType t : kTypes) {
    if (type == modbusTypeName(t)) p.type = t;
  }
  const std::string& order = s.getString("modbus.order");
  for (ModbusOrder o : {ModbusOrder::kABCD, ModbusOrder::kDCBA, ModbusOrder::kBADC,
                        ModbusOrder::kCDAB}) {
    if (order == modbusOrderName(o)) p.order = o;
  }
  p.scale = s.getDouble("modbus.scale");
  p.offset = s.getDouble("modbus.offset");
  if (modbusIsBits(p.function)) {
    if (s.isSet("modbus.type") && p.type != ModbusType::kBool) {
      throw ConfigError(where + ".modbus.type = \"" + type +
                        "\" cannot be read from modbus.function = \"" + fn +
                        "\"; allowed: \"bool\" (coils and discrete inputs are single bits)");
    }
    onlyFor(s, where, {"modbus.order"}, false,
            "registers (modbus.function = \"holding\" or \"input\")");
    p.type = ModbusType::kBool;
  }
  const int64_t width =
      modbusIsBits(p.function) ? 1 : static_cast<int64_t>(modbusTypeWords(p.type));
  if (p.address + width > 65536) {
    throw ConfigError(where + ".modbus.address = " + std::to_string(p.address) +
                      ": modbus.type = \"" + modbusTypeName(p.type) + "\" needs " +
                      std::to_string(width) +
                      " registers from there, past the last address 65535; allowed: 0 to " +
                      std::to_string(65536 - width));
  }
  if (!modbusIsBits(p.function) && width > slave->max_registers) {
    throw ConfigError(where + ".modbus.type = \"" + type + "\" needs " + std::to_string(width) +
                      " registers but " + slave->where + ".max_registers = " +
                      std::to_string(slave->max_registers) + "; allowed: max_registers >= " +
                      std::to_string(width));
  }
  return p;
}

// More panes than this per window (size + lateness over hop) would make one sensor's window state
// large; the limit keeps it under ~300 KiB.
constexpr int64_t kMaxPanes = 4096;

}  // namespace

const char* sourceKindName(SourceKind kind) {
  switch (kind) {
    case SourceKind::kSimulated:
      return "simulated";
    case SourceKind::kStdin:
      return "stdin";
    case SourceKind::kSocket:
      return "socket";
    case SourceKind::kMqtt:
      return "mqtt";
    case SourceKind::kHwmon:
      return "hwmon";
    case SourceKind::kThermal:
      return "thermal";
    case SourceKind::kIio:
      return "iio";
    case SourceKind::kModbus:
      return "modbus";
  }
  return "?";
}

const char* filterKindName(FilterKind kind) {
  switch (kind) {
    case FilterKind::kRange:
      return "range";
    case FilterKind::kDeadband:
      return "deadband";
    case FilterKind::kRateLimit:
      return "rate_limit";
    case FilterKind::kDedup:
      return "dedup";
  }
  return "?";
}

bool samePipeline(const SensorSpec& a, const SensorSpec& b) {
  return a.filters == b.filters && a.window == b.window && a.output == b.output;
}

bool sameReading(const SensorSpec& a, const SensorSpec& b) {
  return a.id == b.id && a.name == b.name && a.unit == b.unit && a.source == b.source &&
         a.poll_interval_us == b.poll_interval_us && a.simulated == b.simulated &&
         a.mqtt_topic == b.mqtt_topic && a.mqtt_field == b.mqtt_field &&
         a.mqtt_timestamp_field == b.mqtt_timestamp_field && a.sysfs_device == b.sysfs_device &&
         a.sysfs_channel == b.sysfs_channel && a.modbus == b.modbus;
}

bool AgentInputs::uses(SourceKind kind) const {
  for (const auto& s : sensors) {
    if (s.source == kind) return true;
  }
  return false;
}

void addInputSettings(config::Schema& s) {
  s.integer("sources.queue_chunks", 256, 2, 1 << 20,
            "Blocks of readings queued between the stdin/socket/MQTT reader threads and the "
            "pipeline thread (a block: up to 256 readings from one read, or one MQTT message)")
      .oneOf("sources.queue_full", "block", {"block", "drop"},
             "stdin/socket readers when the queue is full: block (back-pressure to the writer) "
             "or drop (counted in outpost_agent_source_dropped_total). MQTT always drops")
      .integer("sources.max_line_bytes", 4096, 64, 1 << 20,
               "Longer lines are rejected (counted as too_long)")
      .oneOf("sources.stdin.format", "line", {"line", "json", "csv"},
             "Format of standard input: line (sensor value [timestamp]), json (one object per "
             "line) or csv (sensor,value[,timestamp])")
      .oneOf("sources.stdin.on_eof", "keep", {"keep", "stop"},
             "When standard input ends: keep running (the other sources go on; the stdin reader "
             "ends), or stop: flush the open windows and batch, wait until the outbox is "
             "drained (at most sources.stdin.eof_drain_timeout_s), then exit 0 "
             "(`producer | outpost-agent`). Reloadable")
      .integer("sources.stdin.eof_drain_timeout_s", 30, 0, 86400,
               "on_eof = \"stop\": longest wait for the aggregator to acknowledge every stored "
               "batch before exiting (what is left stays in the outbox for the next start). "
               "Reloadable")
      .string("sources.socket.path", "",
              "Unix stream socket the agent listens on for sensors with source = \"socket\" "
              "(required then). Reloadable (the socket source restarts: open connections are "
              "closed, writers reconnect)")
      .oneOf("sources.socket.format", "line", {"line", "json", "csv"},
             "Format of socket input. Reloadable (the socket source restarts)")
      .integer("sources.socket.max_clients", 16, 1, 1024,
               "Connections served at once; more are refused. Reloadable (the socket source "
               "restarts)")
      .string("sources.mqtt.broker", "tcp://127.0.0.1:1883",
              "The device's local MQTT broker for sensors with source = \"mqtt\". Reloadable "
              "(the MQTT source reconnects)")
      .string("sources.mqtt.client_id", "",
              "MQTT client id of the subscription; empty: outpost-agent-in-<device_id>. "
              "Reloadable (the MQTT source reconnects)")
      .string("sources.mqtt.username", "",
              "MQTT user name (empty: anonymous). Reloadable (the MQTT source reconnects)")
      .string("sources.mqtt.password", "",
              "MQTT password; never logged (prefer sources.mqtt.password_file). Reloadable (the "
              "MQTT source reconnects)")
      .boolean("sources.mqtt.clean_session", false,
               "false: a persistent session, so the broker keeps QoS 1 messages for the agent "
               "while it restarts (client_id must then be stable); true: start afresh each time. "
               "Reloadable (the MQTT source reconnects)")
      .integer("sources.mqtt.qos", 1, 0, 1,
               "QoS of the subscriptions. Reloadable (the MQTT source reconnects)")
      .integer("sources.mqtt.max_payload_bytes", 65536, 16, 16 << 20,
               "Larger messages are rejected (counted). Reloadable (the MQTT source reconnects)");
  mqttsec::addSettings(s, "sources.mqtt.");  // TLS, password_file: reloadable like the rest
  s.tableArray("sources.modbus.slaves", modbusSlaveSchema(),
               "Modbus slaves read by sensors with source = \"modbus\" "
               "([[sources.modbus.slaves]]). Each TCP slave and each serial bus gets its own "
               "connection and thread. Reloadable "
               "(a link whose slaves or sensors changed reconnects; the others keep running)");
  s.string("sources.sysfs.root", "/sys",
           "Root of sysfs for hwmon/thermal/iio sensors (tests point it at a fake tree). "
           "Reloadable")
      .tableArray("sensors", sensorSchema(),
                  "One entry per sensor of the device. Reloadable: SIGHUP starts new sensors, "
                  "stops removed ones and rebuilds changed ones (their open windows are flushed "
                  "first); unchanged sensors keep their filter and window state "
                  "(docs/operations.md)");
}

AgentInputs parseInputs(const config::Config& cfg) {
  AgentInputs in;
  auto& so = in.sources;
  so.queue_chunks = static_cast<size_t>(cfg.getInt("sources.queue_chunks"));
  so.queue_block = cfg.getString("sources.queue_full") == "block";
  so.max_line_bytes = static_cast<size_t>(cfg.getInt("sources.max_line_bytes"));
  so.stdin_format = parseLineFormat(cfg.getString("sources.stdin.format"));
  so.socket_path = cfg.getString("sources.socket.path");
  so.socket_format = parseLineFormat(cfg.getString("sources.socket.format"));
  so.socket_max_clients = static_cast<size_t>(cfg.getInt("sources.socket.max_clients"));
  so.mqtt_broker = cfg.getString("sources.mqtt.broker");
  so.mqtt_client_id = cfg.getString("sources.mqtt.client_id");
  if (so.mqtt_client_id.empty())
    so.mqtt_client_id = "outpost-agent-in-" + cfg.getString("device_id");
  auto security = mqttsec::load(cfg, "sources.mqtt.", so.mqtt_broker);
  if (!security) throw ConfigError(security.error().message());
  so.mqtt_security = std::move(*security);
  so.mqtt_clean_session = cfg.getBool("sources.mqtt.clean_session");
  so.mqtt_qos = static_cast<int>(cfg.getInt("sources.mqtt.qos"));
  so.mqtt_max_payload_bytes = static_cast<size_t>(cfg.getInt("sources.mqtt.max_payload_bytes"));
  so.sysfs_root = cfg.getString("sources.sysfs.root");
  so.stdin_on_eof = cfg.getString("sources.stdin.on_eof") == "stop" ? OnEof::kStop : OnEof::kKeep;
  so.stdin_eof_drain_timeout_us = cfg.getInt("sources.stdin.eof_drain_timeout_s") * 1000000;
  so.modbus_slaves = parseModbusSlaves(cfg);

  std::set<std::string> names;
  const auto& items = cfg.items("sensors");
  for (size_t i = 0; i < items.size(); ++i) {
    const auto& s = items[i];
    SensorSpec spec;
    spec.id = static_cast<uint16_t>(i);
    spec.where = "sensors[" + std::to_string(i) + "]";
    spec.name = s.getString("name");
    spec.unit = s.getString("unit");
    spec.source = parseSourceKind(s.getString("source"));
    if (!names.insert(spec.name).second) {
      throw ConfigError(spec.where + ".name = \"" + spec.name +
                        "\" is used twice; allowed: a name unique within the device");
    }
    const bool sim = spec.source == SourceKind::kSimulated;
    onlyFor(s, spec.where, {"rate_hz", "shape", "amplitude", "offset", "period_s", "noise", "seed"},
            sim, "source = \"simulated\"");
    const bool mqtt = spec.source == SourceKind::kMqtt;
    onlyFor(s, spec.where, {"mqtt.topic", "mqtt.field", "mqtt.timestamp_field"}, mqtt,
            "source = \"mqtt\"");
    onlyFor(s, spec.where, {"hwmon.chip", "hwmon.input"}, spec.source == SourceKind::kHwmon,
            "source = \"hwmon\"");
    onlyFor(s, spec.where, {"thermal.zone"}, spec.source == SourceKind::kThermal,
            "source = \"thermal\"");
    onlyFor(s, spec.where, {"iio.device", "iio.channel"}, spec.source == SourceKind::kIio,
            "source = \"iio\"");
    const bool modbus = spec.source == SourceKind::kModbus;
    onlyFor(s, spec.where,
            {"modbus.slave", "modbus.function", "modbus.address", "modbus.type", "modbus.order",
             "modbus.scale", "modbus.offset"},
            modbus, "source = \"modbus\"");
    const bool polled = sim || spec.source == SourceKind::kHwmon ||
                        spec.source == SourceKind::kThermal || spec.source == SourceKind::kIio;
    onlyFor(s, spec.where, {"poll_interval_ms"}, polled || modbus,
            "polled sources (simulated, hwmon, thermal, iio, modbus)");

    auto need = [&](const char* key) -> const std::string& {
      const std::string& v = s.getString(key);
      if (v.empty()) {
        throw ConfigError(spec.where + "." + key + " is required for source = \"" +
                          s.getString("source") + "\"");
      }
      return v;
    };
    switch (spec.source) {
      case SourceKind::kSimulated: {
        auto& sim_spec = spec.simulated;
        sim_spec.name = spec.name;
        sim_spec.unit = spec.unit;
        sim_spec.rate_hz = s.getDouble("rate_hz");
        if (s.isSet("poll_interval_ms")) {
          if (s.isSet("rate_hz")) {
            throw ConfigError(spec.where + ": set rate_hz or poll_interval_ms, not both");
          }
          if (s.getInt("poll_interval_ms") == 0) {
            throw ConfigError(spec.where +
                              ".poll_interval_ms = 0; allowed: 1 to 86400000 for a "
                              "simulated sensor");
          }
          sim_spec.rate_hz = 1000.0 / static_cast<double>(s.getInt("poll_interval_ms"));
        }
        sim_spec.shape = parseShape(s.getString("shape"));
        sim_spec.amplitude = s.getDouble("amplitude");
        sim_spec.offset = s.getDouble("offset");
        sim_spec.period_s = s.getDouble("period_s");
        sim_spec.noise = s.getDouble("noise");
        sim_spec.seed = static_cast<uint64_t>(s.getInt("seed"));
        break;
      }
      case SourceKind::kStdin:
        break;
      case SourceKind::kSocket:
        if (so.socket_path.empty()) {
          throw ConfigError("sources.socket.path is required: " + spec.where +
                            " has source = \"socket\"");
        }
        break;
      case SourceKind::kMqtt: {
        spec.mqtt_topic = need("mqtt.topic");
        spec.mqtt_field = s.getString("mqtt.field");
        spec.mqtt_timestamp_field = s.getString("mqtt.timestamp_field");
        const auto& t = spec.mqtt_topic;
        for (size_t p = 0; p < t.size(); ++p) {
          const bool level_start = p == 0 || t[p - 1] == '/';
          const bool level_end = p + 1 == t.size() || t[p + 1] == '/';
          if ((t[p] == '+' && !(level_start && level_end)) ||
              (t[p] == '#' && !(level_start && p + 1 == t.size()))) {
            throw ConfigError(spec.where + ".mqtt.topic = \"" + t +
                              "\" is not a valid topic filter; allowed: '+' as a whole level, "
                              "'#' only as the last level");
          }
        }
        break;
      }
      case SourceKind::kHwmon:
        spec.sysfs_device = need("hwmon.chip");
        spec.sysfs_channel = need("hwmon.input");
        break;
      case SourceKind::kThermal:
        spec.sysfs_device = need("thermal.zone");
        break;
      case SourceKind::kIio:
        spec.sysfs_device = need("iio.device");
        spec.sysfs_channel = need("iio.channel");
        break;
      case SourceKind::kModbus:
        spec.modbus = parseModbusPoint(s, spec.where, so.modbus_slaves);
        if (s.isSet("poll_interval_ms")) {
          const int64_t ms = s.getInt("poll_interval_ms");
          if (ms < 10) {
            throw ConfigError(spec.where + ".poll_interval_ms = " + std::to_string(ms) +
                              " is too short for a modbus sensor; allowed: 10 to 86400000 (or "
                              "leave it out for the slave's poll_interval_ms)");
          }
          spec.poll_interval_us = ms * 1000;
        }
        break;
    }
    for (const std::string& k : {spec.sysfs_device, spec.sysfs_channel}) {
      if (k.find('/') != std::string::npos || k == "." || k == "..") {
        throw ConfigError(spec.where + ": \"" + k +
                          "\" is not allowed as a sysfs device or channel; allowed: a name "
                          "without '/'");
      }
    }
    if (polled && !sim) {
      const int64_t ms = s.getInt("poll_interval_ms");
      spec.poll_interval_us = (ms == 0 ? 1000 : ms) * 1000;
    }

    const auto& filters = s.items("filters");
    for (size_t f = 0; f < filters.size(); ++f) {
      spec.filters.push_back(
          parseFilter(filters[f], spec.where + ".filters[" + std::to_string(f) + "]"));
    }

    const std::string& wk = s.getString("window.kind");
    auto& w = spec.window;
    w.kind = wk == "tumbling"  ? WindowKind::kTumbling
             : wk == "sliding" ? WindowKind::kSliding
                               : WindowKind::kNone;
    if (w.kind == WindowKind::kNone) {
      onlyFor(s, spec.where, {"window.size_ms", "window.hop_ms", "window.allowed_lateness_ms"},
              false, "window.kind = \"tumbling\" or \"sliding\"");
    } else {
      w.size_us = s.getInt("window.size_ms") * 1000;
      w.hop_us = s.getInt("window.hop_ms") * 1000;
      if (w.kind == WindowKind::kTumbling) {
        onlyFor(s, spec.where, {"window.hop_ms"}, false, "window.kind = \"sliding\"");
        w.hop_us = w.size_us;
      }
      if (w.hop_us == 0) w.hop_us = w.size_us;
      if (w.hop_us > w.size_us || w.size_us % w.hop_us != 0) {
        throw ConfigError(spec.where + ".window.hop_ms = " + std::to_string(w.hop_us / 1000) +
                          " does not divide window.size_ms = " + std::to_string(w.size_us / 1000) +
                          "; allowed: a divisor of size_ms (size_ms / hop_ms windows overlap)");
      }
      w.lateness_us = s.getInt("window.allowed_lateness_ms") * 1000;
      if ((w.size_us + w.lateness_us) / w.hop_us + 2 > kMaxPanes) {
        throw ConfigError(spec.where +
                          ": (window.size_ms + window.allowed_lateness_ms) / "
                          "window.hop_ms is too large; allowed: at most " +
                          std::to_string(kMaxPanes - 2));
      }
    }
    const std::string& out = s.getString("output");
    spec.output = out == "windows" ? Output::kWindows
                  : out == "both"  ? Output::kBoth
                                   : Output::kRaw;
    if (spec.output != Output::kRaw && w.kind == WindowKind::kNone) {
      throw ConfigError(spec.where + ".output = \"" + out +
                        "\" needs a window; allowed without window.kind: \"raw\"");
    }
    in.sensors.push_back(std::move(spec));
  }
  if (in.sensors.empty()) {
    throw ConfigError("sensors: at least one [[sensors]] entry is required");
  }
  if (in.sensors.size() > 65535) throw ConfigError("sensors: at most 65535 sensors");
  return in;
}

}  // namespace outpost::agent

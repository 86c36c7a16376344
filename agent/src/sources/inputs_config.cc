#include <cmath>
#include <set>

#include "outpost/agent/agent_config.h"
#include "outpost/agent/inputs.h"
#include "outpost/common/mqtt_security.h"

namespace outpost::agent {

const config::EnumNames<SourceKind>& sourceKindNames() {
  static const config::EnumNames<SourceKind> names{
      {SourceKind::kSimulated, "simulated"}, {SourceKind::kStdin, "stdin"},
      {SourceKind::kSocket, "socket"},       {SourceKind::kMqtt, "mqtt"},
      {SourceKind::kHwmon, "hwmon"},         {SourceKind::kThermal, "thermal"},
      {SourceKind::kIio, "iio"},             {SourceKind::kModbus, "modbus"}};
  return names;
}
const char* sourceKindName(SourceKind kind) { return sourceKindNames().name(kind); }

const config::EnumNames<FilterKind>& filterKindNames() {
  static const config::EnumNames<FilterKind> names{{FilterKind::kRange, "range"},
                                                   {FilterKind::kDeadband, "deadband"},
                                                   {FilterKind::kRateLimit, "rate_limit"},
                                                   {FilterKind::kDedup, "dedup"}};
  return names;
}
const char* filterKindName(FilterKind kind) { return filterKindNames().name(kind); }

const config::EnumNames<Action>& actionNames() {
  static const config::EnumNames<Action> names{
      {Action::kDrop, "drop"}, {Action::kBad, "bad"}, {Action::kSuspect, "suspect"}};
  return names;
}

const config::EnumNames<WindowKind>& windowKindNames() {
  static const config::EnumNames<WindowKind> names{{WindowKind::kNone, "none"},
                                                   {WindowKind::kTumbling, "tumbling"},
                                                   {WindowKind::kSliding, "sliding"}};
  return names;
}

const config::EnumNames<Output>& outputNames() {
  static const config::EnumNames<Output> names{
      {Output::kRaw, "raw"}, {Output::kWindows, "windows"}, {Output::kBoth, "both"}};
  return names;
}

const config::EnumNames<LineFormat>& lineFormatNames() {
  static const config::EnumNames<LineFormat> names{
      {LineFormat::kLine, "line"}, {LineFormat::kJson, "json"}, {LineFormat::kCsv, "csv"}};
  return names;
}

const config::EnumNames<OnEof>& onEofNames() {
  static const config::EnumNames<OnEof> names{{OnEof::kKeep, "keep"}, {OnEof::kStop, "stop"}};
  return names;
}

namespace {

using config::ConfigError;

constexpr double kHuge = 1e300;

// NaN/Inf may only be dropped or kept marked bad (suspect is for finite values).
const config::EnumNames<Action>& nonFiniteActionNames() {
  static const config::EnumNames<Action> names{{Action::kDrop, "drop"}, {Action::kBad, "bad"}};
  return names;
}

// stdin/socket readers when the queue is full: true = block.
const config::EnumNames<bool>& queueFullNames() {
  static const config::EnumNames<bool> names{{true, "block"}, {false, "drop"}};
  return names;
}

const config::SettingsTable<FilterSpec>& filterTable() {
  using F = FilterSpec;
  static const auto t =
      config::SettingsTable<F>()
          .oneOf("type", &F::kind, filterKindNames(), FilterKind::kRange,
                 "Filter kind. range: NaN/Inf and physical range checks; deadband: report by "
                 "exception; rate_limit: min interval / max per second; dedup: drop repeats of "
                 "the same timestamp and value")
          .real("min", &F::min, -kHuge, -kHuge, kHuge, "range: lowest physically possible value")
          .ifSet()
          .real("max", &F::max, kHuge, -kHuge, kHuge, "range: highest physically possible value")
          .ifSet()
          .oneOf("action", &F::out_of_range, actionNames(), Action::kDrop,
                 "range: what to do with a value outside [min, max]: drop it, or keep it marked "
                 "with quality bad or suspect")
          .oneOf("non_finite", &F::non_finite, nonFiniteActionNames(), Action::kDrop,
                 "range: what to do with NaN/Inf: drop, or keep marked bad")
          .real("absolute", &F::absolute, 0, 0, kHuge,
                "deadband: pass a value only when it differs from the last passed one by more "
                "than this (0 with percent 0: any change passes)")
          .real("percent", &F::percent, 0, 0, 1e6,
                "deadband: ... or by more than this percentage of the last passed value (the "
                "wider band of the two applies)")
          .real(
              "heartbeat_s",
              [](F& f, double s) { f.heartbeat_us = static_cast<int64_t>(std::llround(s * 1e6)); },
              0, 0, 1e7,
              "deadband: pass a value anyway when the last passed one is this old (event time); "
              "0: no heartbeat")
          .integer("min_interval_ms", &F::min_interval_us, 0, 0, 86400000,
                   "rate_limit: drop a reading closer than this to the last passed one (event "
                   "time)",
                   1000)
          .integer("max_per_second", &F::max_per_second, 0, 0, 10000000,
                   "rate_limit: at most this many readings per second of event time; 0: no limit")
          .integer("history", &F::history, 1, 1, 64,
                   "dedup: how many of the latest readings a new one is compared with");
  return t;
}

const config::SettingsTable<ModbusSlaveSpec>& modbusSlaveTable() {
  using M = ModbusSlaveSpec;
  static const auto t =
      config::SettingsTable<M>()
          .requiredString("name", &M::name,
                          "Slave name, unique; sensors name it in modbus.slave (and /metrics in "
                          "the slave label)")
          .oneOf("transport", &M::transport, modbusTransportNames(), ModbusTransport::kTcp,
                 "tcp: Modbus TCP to host:port; rtu: Modbus RTU on a serial device (slaves on "
                 "the same device share the bus, one request at a time)")
          .string("host", &M::host, "",
                  "tcp: host name or IP address of the slave or gateway (required)")
          .integer("port", &M::port, 502, 1, 65535, "tcp: port")
          .string("device", &M::device, "",
                  "rtu: serial device, e.g. \"/dev/ttyUSB0\" (required)")
          .integer("baud", &M::baud, 9600, 300, 4000000, "rtu: bit rate")
          .oneOf("parity", &M::parity, modbusParityNames(), 'E',
                 "rtu: parity (the Modbus standard's default is even)")
          .integer("data_bits", &M::data_bits, 8, 7, 8, "rtu: data bits")
          .integer("stop_bits", &M::stop_bits, 1, 1, 2, "rtu: stop bits")
          .integer("unit_id", &M::unit_id, 1, 0, 255,
                   "Unit identifier (slave address): rtu 1 to 247; tcp 0 to 255 (gateways route "
                   "by it; 255 or 1 for most native TCP devices)")
          .integer("timeout_ms", &M::timeout_us, 1000, 1, 60000,
                   "How long to wait for each response", 1000)
          .integer("retries", &M::retries, 1, 0, 10,
                   "Further attempts after a timeout, CRC error or malformed response (exception "
                   "responses are not retried); every failed attempt is counted")
          .integer("poll_interval_ms", &M::poll_interval_us, 1000, 10, 86400000,
                   "Time between reads of this slave's sensors (a sensor's own poll_interval_ms "
                   "overrides it)",
                   1000)
          .integer("reconnect_min_ms", &M::reconnect_min_us, 500, 10, 600000,
                   "First wait before reconnecting after a connection failure (doubles up to "
                   "reconnect_max_ms)",
                   1000)
          .integer("reconnect_max_ms", &M::reconnect_max_us, 30000, 10, 3600000,
                   "Longest wait between reconnect attempts (>= reconnect_min_ms)", 1000)
          .integer("max_gap", &M::max_gap, 0, 0, 1999,
                   "Registers (bits) between two sensors that may be read and discarded to join "
                   "their reads into one request; 0: only contiguous or overlapping sensors "
                   "share a request (some devices answer exception 2 for unmapped registers)")
          .integer("max_registers", &M::max_registers, 125, 1, 125,
                   "Most registers read in one request (the protocol's limit is 125)")
          .integer("max_bits", &M::max_bits, 2000, 1, 2000,
                   "Most coils or discrete inputs read in one request (the protocol's limit is "
                   "2000)");
  return t;
}

// Sensor settings read by source kind (the kind is read first: rows are read in order).
void setSysfsDevice(SensorSpec& s, SourceKind kind, const std::string& v) {
  if (s.source == kind) s.sysfs_device = v;
}
void setSysfsChannel(SensorSpec& s, SourceKind kind, const std::string& v) {
  if (s.source == kind) s.sysfs_channel = v;
}

const config::SettingsTable<SensorSpec>& sensorTable() {
  using S = SensorSpec;
  static const auto t =
      config::SettingsTable<S>()
          .requiredString("name", &S::name,
                          "Sensor name, unique within the device (appears on Kafka)")
          .string("unit", &S::unit, "",
                  "Unit of the values, e.g. \"degC\", \"%RH\", \"A\"; sysfs sources fill it in "
                  "when empty")
          .oneOf("source", &S::source, sourceKindNames(), SourceKind::kSimulated,
                 "Where readings come from: simulated signal; line/JSON/CSV text on standard "
                 "input or the Unix socket ([sources.stdin], [sources.socket]); a local MQTT "
                 "subscription; Linux sysfs hwmon, thermal zone or IIO device; a Modbus TCP/RTU "
                 "slave ([[sources.modbus.slaves]])")
          .integer("poll_interval_ms", &S::poll_interval_us, 0, 0, 86400000,
                   "Polled sources: time between readings (sysfs default 1000; modbus: the "
                   "slave's poll_interval_ms; simulated: instead of rate_hz). 0: the source's "
                   "default",
                   1000)
          .real("rate_hz", [](S& s, double v) { s.simulated.rate_hz = v; }, 1.0, 0.001, 100000,
                "simulated: readings per second")
          .oneOf<Shape>("shape", [](S& s, Shape v) { s.simulated.shape = v; }, shapeNames(),
                        Shape::kSine,
                        "simulated: signal shape; \"counter\" emits 0, 1, 2, ... (used by tests)")
          .real("amplitude", [](S& s, double v) { s.simulated.amplitude = v; }, 1.0, 0, 1e12,
                "simulated: signal amplitude (random_walk: step stddev)")
          .real("offset", [](S& s, double v) { s.simulated.offset = v; }, 0.0, -1e12, 1e12,
                "simulated: signal offset")
          .real("period_s", [](S& s, double v) { s.simulated.period_s = v; }, 60.0, 0.001, 1e9,
                "simulated: signal period in seconds")
          .real("noise", [](S& s, double v) { s.simulated.noise = v; }, 0.0, 0, 1e12,
                "simulated: standard deviation of Gaussian noise added")
          .integer("seed", [](S& s, int64_t v) { s.simulated.seed = static_cast<uint64_t>(v); },
                   1, 0, INT64_MAX, "simulated: random seed")
          .string("mqtt.topic", &S::mqtt_topic, "",
                  "mqtt: topic filter (+ and # allowed) whose messages carry this sensor's value")
          .string("mqtt.field", &S::mqtt_field, "",
                  "mqtt: dotted path of the value in a JSON object payload (e.g. \"env.temp\"); "
                  "empty: the payload is the number itself")
          .string("mqtt.timestamp_field", &S::mqtt_timestamp_field, "",
                  "mqtt: dotted path of the event time in the JSON payload (epoch s/ms/us/ns or "
                  "ISO-8601); empty: receive time")
          .string("hwmon.chip",
                  [](S& s, const std::string& v) { setSysfsDevice(s, SourceKind::kHwmon, v); }, "",
                  "hwmon: chip name (the hwmonN/name file, e.g. \"coretemp\") or directory "
                  "(\"hwmon0\")")
          .string("hwmon.input",
                  [](S& s, const std::string& v) { setSysfsChannel(s, SourceKind::kHwmon, v); },
                  "",
                  "hwmon: input file, e.g. \"temp1_input\" (millidegrees -> degC), \"in0_input\" "
                  "(mV -> V), \"fan1_input\" (RPM), \"power1_input\" (uW -> W), \"curr1_input\" "
                  "(mA -> A)")
          .string("thermal.zone",
                  [](S& s, const std::string& v) { setSysfsDevice(s, SourceKind::kThermal, v); },
                  "",
                  "thermal: zone type (thermal_zoneN/type, e.g. \"x86_pkg_temp\") or directory "
                  "(\"thermal_zone0\"); millidegrees -> degC")
          .string("iio.device",
                  [](S& s, const std::string& v) { setSysfsDevice(s, SourceKind::kIio, v); }, "",
                  "iio: device name (iio:deviceN/name) or directory (\"iio:device0\")")
          .string("iio.channel",
                  [](S& s, const std::string& v) { setSysfsChannel(s, SourceKind::kIio, v); }, "",
                  "iio: channel, e.g. \"in_voltage0\": value = (in_voltage0_raw + offset) * "
                  "scale, offset/scale from <channel>_offset/_scale or the shared "
                  "in_voltage_offset/_scale (0 and 1 when absent)")
          .string("modbus.slave", [](S& s, const std::string& v) { s.modbus.slave = v; }, "",
                  "modbus: name of the [[sources.modbus.slaves]] entry to read (required)")
          .oneOf<ModbusFunction>(
              "modbus.function", [](S& s, ModbusFunction v) { s.modbus.function = v; },
              modbusFunctionNames(), ModbusFunction::kHolding,
              "modbus: data table: coil (FC 1), discrete_input (FC 2), holding register (FC 3), "
              "input register (FC 4)")
          .integer("modbus.address",
                   [](S& s, int64_t v) { s.modbus.address = static_cast<uint16_t>(v); }, 0, 0,
                   65535,
                   "modbus: 0-based protocol address of the first register or bit (required; "
                   "register 40001 of the old numbering is holding address 0)")
          .oneOf<ModbusType>(
              "modbus.type", [](S& s, ModbusType v) { s.modbus.type = v; }, modbusTypeNames(),
              ModbusType::kUint16,
              "modbus: value type; 32-bit types use 2 registers, 64-bit 4; coils and discrete "
              "inputs are bool; bool on a register: 1 when it is not 0. int64 values beyond 2^53 "
              "lose precision (readings are doubles)")
          .oneOf<ModbusOrder>(
              "modbus.order", [](S& s, ModbusOrder v) { s.modbus.order = v; }, modbusOrderNames(),
              ModbusOrder::kABCD,
              "modbus: byte order on the wire, A = most significant byte: ABCD big-endian "
              "(standard), DCBA little-endian, BADC bytes swapped in each register, CDAB "
              "registers swapped; 64-bit types extend the pattern (CDAB = GHEFCDAB)")
          .real("modbus.scale", [](S& s, double v) { s.modbus.scale = v; }, 1.0, -1e12, 1e12,
                "modbus: value = raw * scale + offset")
          .real("modbus.offset", [](S& s, double v) { s.modbus.offset = v; }, 0.0, -1e12, 1e12,
                "modbus: value = raw * scale + offset")
          .tableArray("filters", filterTable().schema("filter"),
                      "Filter chain of this sensor, applied in file order ([[sensors.filters]])")
          .oneOf<WindowKind>(
              "window.kind", [](S& s, WindowKind v) { s.window.kind = v; }, windowKindNames(),
              WindowKind::kNone,
              "Window statistics (count, min, max, mean, population stddev, first, last) on "
              "event time")
          .integer("window.size_ms", [](S& s, int64_t v) { s.window.size_us = v * 1000; }, 60000,
                   1, 86400000LL * 7, "Window length")
          .integer("window.hop_ms", [](S& s, int64_t v) { s.window.hop_us = v * 1000; }, 0, 0,
                   86400000LL * 7,
                   "sliding: distance between window starts (must divide size_ms); 0: size_ms")
          .integer("window.allowed_lateness_ms",
                   [](S& s, int64_t v) { s.window.lateness_us = v * 1000; }, 0, 0, 86400000LL,
                   "A window closes once a reading this much newer than its end arrived; "
                   "readings for closed windows are counted as late and left out")
          .oneOf("output", &S::output, outputNames(), Output::kRaw,
                 "What is sent: the raw readings (after filters), the window statistics, or "
                 "both");
  return t;
}

// [sources.*] with [[sources.modbus.slaves]], and [[sensors]]: the rows marked live() are applied
// on SIGHUP by reloadInputs() (input_reload.h).
const config::SettingsTable<SourcesSpec>& sourcesTable() {
  using So = SourcesSpec;
  static const auto t =
      config::SettingsTable<So>()
          .integer("sources.queue_chunks", &So::queue_chunks, 256, 2, 1 << 20,
                   "Blocks of readings queued between the stdin/socket/MQTT reader threads and "
                   "the pipeline thread (a block: up to 256 readings from one read, or one MQTT "
                   "message)")
          .oneOf("sources.queue_full", &So::queue_block, queueFullNames(), true,
                 "stdin/socket readers when the queue is full: block (back-pressure to the "
                 "writer) or drop (counted in outpost_agent_source_dropped_total). MQTT always "
                 "drops")
          .integer("sources.max_line_bytes", &So::max_line_bytes, 4096, 64, 1 << 20,
                   "Longer lines are rejected (counted as too_long)")
          .oneOf("sources.stdin.format", &So::stdin_format, lineFormatNames(), LineFormat::kLine,
                 "Format of standard input: line (sensor value [timestamp]), json (one object "
                 "per line) or csv (sensor,value[,timestamp])")
          .oneOf("sources.stdin.on_eof", &So::stdin_on_eof, onEofNames(), OnEof::kKeep,
                 "When standard input ends: keep running (the other sources go on; the stdin "
                 "reader ends), or stop: flush the open windows and batch, wait until the outbox "
                 "is drained (at most sources.stdin.eof_drain_timeout_s), then exit 0 "
                 "(`producer | outpost-agent`)")
          .live()
          .integer("sources.stdin.eof_drain_timeout_s", &So::stdin_eof_drain_timeout_us, 30, 0,
                   86400,
                   "on_eof = \"stop\": longest wait for the aggregator to acknowledge every "
                   "stored batch before exiting (what is left stays in the outbox for the next "
                   "start)",
                   1000000)
          .live()
          .string("sources.socket.path", &So::socket_path, "",
                  "Unix stream socket the agent listens on for sensors with source = \"socket\" "
                  "(required then). On SIGHUP the socket source restarts: open connections are "
                  "closed, writers reconnect")
          .live()
          .oneOf("sources.socket.format", &So::socket_format, lineFormatNames(),
                 LineFormat::kLine, "Format of socket input (SIGHUP: the socket source restarts)")
          .live()
          .integer("sources.socket.max_clients", &So::socket_max_clients, 16, 1, 1024,
                   "Connections served at once; more are refused (SIGHUP: the socket source "
                   "restarts)")
          .live()
          .string("sources.mqtt.broker", &So::mqtt_broker, "tcp://127.0.0.1:1883",
                  "The device's local MQTT broker for sensors with source = \"mqtt\" (SIGHUP: "
                  "every sources.mqtt.* change makes the MQTT source reconnect)")
          .live()
          .string("sources.mqtt.client_id", &So::mqtt_client_id, "",
                  "MQTT client id of the subscription; empty: outpost-agent-in-<device_id>")
          .live()
          .string("sources.mqtt.username",
                  [](So& so, const std::string& v) { so.mqtt_security.username = v; }, "",
                  "MQTT user name (empty: anonymous)")
          .live()
          .string("sources.mqtt.password",
                  [](So& so, const std::string& v) { so.mqtt_security.password = v; }, "",
                  "MQTT password; never logged (prefer sources.mqtt.password_file)")
          .live()
          .boolean("sources.mqtt.clean_session", &So::mqtt_clean_session, false,
                   "false: a persistent session, so the broker keeps QoS 1 messages for the "
                   "agent while it restarts (client_id must then be stable); true: start afresh "
                   "each time")
          .live()
          .integer("sources.mqtt.qos", &So::mqtt_qos, 1, 0, 1, "QoS of the subscriptions")
          .live()
          .integer("sources.mqtt.max_payload_bytes", &So::mqtt_max_payload_bytes, 65536, 16,
                   16 << 20, "Larger messages are rejected (counted)")
          .live()
          .declaredBy([](config::Schema& s, const std::string& p) {
            mqttsec::addSettings(s, p + "sources.mqtt.");  // TLS, password_file: mqttsec::load
          })
          .live()
          .tableArray("sources.modbus.slaves", modbusSlaveTable().schema("modbus slave"),
                      "Modbus slaves read by sensors with source = \"modbus\" "
                      "([[sources.modbus.slaves]]). Each TCP slave and each serial bus gets its "
                      "own connection and thread. On SIGHUP a link whose slaves or sensors "
                      "changed reconnects; the others keep running")
          .live()
          .string("sources.sysfs.root", &So::sysfs_root, "/sys",
                  "Root of sysfs for hwmon/thermal/iio sensors (tests point it at a fake tree)")
          .live()
          .tableArray("sensors", sensorTable().schema("sensor"),
                      "One entry per sensor of the device. SIGHUP starts new sensors, stops "
                      "removed ones and rebuilds changed ones (their open windows are flushed "
                      "first); unchanged sensors keep their filter and window state "
                      "(docs/operations.md)")
          .live();
  return t;
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
  FilterSpec spec = filterTable().read(f);
  onlyFor(f, where, {"min", "max", "action", "non_finite"}, spec.kind == FilterKind::kRange,
          "type = \"range\"");
  onlyFor(f, where, {"absolute", "percent", "heartbeat_s"}, spec.kind == FilterKind::kDeadband,
          "type = \"deadband\"");
  onlyFor(f, where, {"min_interval_ms", "max_per_second"}, spec.kind == FilterKind::kRateLimit,
          "type = \"rate_limit\"");
  onlyFor(f, where, {"history"}, spec.kind == FilterKind::kDedup, "type = \"dedup\"");
  if (spec.kind == FilterKind::kRange && !(spec.min <= spec.max)) {
    throw ConfigError(where + ".min = " + config::valueToString(spec.min) + " is above " + where +
                      ".max = " + config::valueToString(spec.max) + "; allowed: min <= max");
  }
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
    modbusSlaveTable().read(c, m);
    for (const auto& o : out) {
      if (o.name == m.name) {
        throw ConfigError(m.where + ".name = \"" + m.name + "\" is used by " + o.where +
                          " too; allowed: a name unique among the slaves");
      }
    }
    const bool tcp = m.transport == ModbusTransport::kTcp;
    onlyFor(c, m.where, {"host", "port"}, tcp, "transport = \"tcp\"");
    onlyFor(c, m.where, {"device", "baud", "parity", "data_bits", "stop_bits"}, !tcp,
            "transport = \"rtu\"");
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
      throw ConfigError(m.where + ".reconnect_max_ms = " +
                        std::to_string(m.reconnect_max_us / 1000) + " is below " + m.where +
                        ".reconnect_min_ms = " + std::to_string(m.reconnect_min_us / 1000) +
                        "; allowed: reconnect_max_ms >= reconnect_min_ms");
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

// Checks the point sensorTable() read into `p` against the slaves.
void checkModbusPoint(const config::Config& s, const std::string& where,
                      const std::vector<ModbusSlaveSpec>& slaves, ModbusPoint& p) {
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
  if (modbusIsBits(p.function)) {
    if (s.isSet("modbus.type") && p.type != ModbusType::kBool) {
      throw ConfigError(where + ".modbus.type = \"" + modbusTypeName(p.type) +
                        "\" cannot be read from modbus.function = \"" +
                        modbusFunctionName(p.function) +
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
    throw ConfigError(where + ".modbus.type = \"" + modbusTypeName(p.type) + "\" needs " +
                      std::to_string(width) +
                      " registers but " + slave->where + ".max_registers = " +
                      std::to_string(slave->max_registers) + "; allowed: max_registers >= " +
                      std::to_string(width));
  }
}

// More panes than this per window (size + lateness over hop) would make one sensor's window state
// large; the limit keeps it under ~300 KiB.
constexpr int64_t kMaxPanes = 4096;

SensorSpec parseSensor(const config::Config& s, size_t i, const SourcesSpec& so,
                       std::set<std::string>& names) {
  SensorSpec spec;
  sensorTable().read(s, spec);
  spec.id = static_cast<uint16_t>(i);
  spec.where = "sensors[" + std::to_string(i) + "]";
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
  // Settings of other kinds are at their defaults (onlyFor); keep them out of the spec, which
  // sameReading() compares.
  if (!sim) spec.simulated = {};
  if (!modbus) spec.modbus = {};

  auto need = [&](const char* key, const std::string& v) {
    if (v.empty()) {
      throw ConfigError(spec.where + "." + key + " is required for source = \"" +
                        sourceKindName(spec.source) + "\"");
    }
  };
  const int64_t poll_ms = spec.poll_interval_us / 1000;
  spec.poll_interval_us = 0;
  switch (spec.source) {
    case SourceKind::kSimulated: {
      auto& sim_spec = spec.simulated;
      sim_spec.name = spec.name;
      sim_spec.unit = spec.unit;
      if (s.isSet("poll_interval_ms")) {
        if (s.isSet("rate_hz")) {
          throw ConfigError(spec.where + ": set rate_hz or poll_interval_ms, not both");
        }
        if (poll_ms == 0) {
          throw ConfigError(spec.where +
                            ".poll_interval_ms = 0; allowed: 1 to 86400000 for a "
                            "simulated sensor");
        }
        sim_spec.rate_hz = 1000.0 / static_cast<double>(poll_ms);
      }
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
      need("mqtt.topic", spec.mqtt_topic);
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
      need("hwmon.chip", spec.sysfs_device);
      need("hwmon.input", spec.sysfs_channel);
      break;
    case SourceKind::kThermal:
      need("thermal.zone", spec.sysfs_device);
      break;
    case SourceKind::kIio:
      need("iio.device", spec.sysfs_device);
      need("iio.channel", spec.sysfs_channel);
      break;
    case SourceKind::kModbus:
      checkModbusPoint(s, spec.where, so.modbus_slaves, spec.modbus);
      if (s.isSet("poll_interval_ms")) {
        if (poll_ms < 10) {
          throw ConfigError(spec.where + ".poll_interval_ms = " + std::to_string(poll_ms) +
                            " is too short for a modbus sensor; allowed: 10 to 86400000 (or "
                            "leave it out for the slave's poll_interval_ms)");
        }
        spec.poll_interval_us = poll_ms * 1000;
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
  if (polled && !sim) spec.poll_interval_us = (poll_ms == 0 ? 1000 : poll_ms) * 1000;

  const auto& filters = s.items("filters");
  for (size_t f = 0; f < filters.size(); ++f) {
    spec.filters.push_back(
        parseFilter(filters[f], spec.where + ".filters[" + std::to_string(f) + "]"));
  }

  auto& w = spec.window;
  if (w.kind == WindowKind::kNone) {
    onlyFor(s, spec.where, {"window.size_ms", "window.hop_ms", "window.allowed_lateness_ms"},
            false, "window.kind = \"tumbling\" or \"sliding\"");
    w = WindowSpec{};
  } else {
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
    if ((w.size_us + w.lateness_us) / w.hop_us + 2 > kMaxPanes) {
      throw ConfigError(spec.where +
                        ": (window.size_ms + window.allowed_lateness_ms) / "
                        "window.hop_ms is too large; allowed: at most " +
                        std::to_string(kMaxPanes - 2));
    }
  }
  if (spec.output != Output::kRaw && w.kind == WindowKind::kNone) {
    throw ConfigError(spec.where + ".output = \"" + outputNames().name(spec.output) +
                      "\" needs a window; allowed without window.kind: \"raw\"");
  }
  return spec;
}

}  // namespace

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

void addInputSettings(config::Schema& s) { sourcesTable().declare(s); }

SourcesSpec readSourcesSpec(const config::Config& cfg) { return sourcesTable().read(cfg); }

AgentInputs parseInputs(const config::Config& cfg) {
  AgentInputs in;
  auto& so = in.sources;
  sourcesTable().read(cfg, so);
  if (so.mqtt_client_id.empty()) {
    so.mqtt_client_id = "outpost-agent-in-" + readAgentSettings(cfg).device_id;
  }
  auto security = mqttsec::load(cfg, "sources.mqtt.", so.mqtt_broker);
  if (!security) throw ConfigError(security.error().message());
  so.mqtt_security = std::move(*security);
  so.modbus_slaves = parseModbusSlaves(cfg);

  std::set<std::string> names;
  const auto& items = cfg.items("sensors");
  for (size_t i = 0; i < items.size(); ++i) {
    in.sensors.push_back(parseSensor(items[i], i, so, names));
  }
  if (in.sensors.empty()) {
    throw ConfigError("sensors: at least one [[sensors]] entry is required");
  }
  if (in.sensors.size() > 65535) throw ConfigError("sensors: at most 65535 sensors");
  return in;
}

}  // namespace outpost::agent

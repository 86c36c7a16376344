#pragma once

// The input half of the agent's configuration, typed: which sensors exist, where each one's
// readings come from, which filters they pass, which windows summarise them and what is sent.
// Parsed once at start-up from the validated config (the settings table is in inputs_config.cc;
// this adds the checks a table cannot express: keys that apply to one source or filter kind only,
// unique names, window bounds).

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "outpost/agent/line_parser.h"
#include "outpost/agent/modbus_spec.h"
#include "outpost/agent/simulated_source.h"
#include "outpost/common/clock.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"
#include "outpost/common/mqtt_security.h"
#include "outpost/common/settings.h"

namespace outpost::agent {

class Source;

// Each enum's names are spelled once, in its EnumNames table (inputs_config.cc): the settings'
// allowed values, parsing (an unknown name is a ConfigError naming the key) and messages use it.
enum class SourceKind { kSimulated, kStdin, kSocket, kMqtt, kHwmon, kThermal, kIio, kModbus };
const config::EnumNames<SourceKind>& sourceKindNames();
const char* sourceKindName(SourceKind kind);

enum class FilterKind { kRange, kDeadband, kRateLimit, kDedup };
const config::EnumNames<FilterKind>& filterKindNames();
const char* filterKindName(FilterKind kind);

// What a validation filter does with an offending reading.
enum class Action { kDrop, kBad, kSuspect };
const config::EnumNames<Action>& actionNames();

struct FilterSpec {
  FilterKind kind = FilterKind::kRange;
  // range
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  Action out_of_range = Action::kDrop;
  Action non_finite = Action::kDrop;  // kDrop or kBad
  // deadband: passes when |v - last passed| > max(absolute, |last passed| * percent / 100)
  double absolute = 0;
  double percent = 0;
  int64_t heartbeat_us = 0;  // 0: none
  // rate_limit (event time)
  int64_t min_interval_us = 0;
  uint32_t max_per_second = 0;  // 0: no limit
  // dedup
  uint32_t history = 1;
  bool operator==(const FilterSpec&) const = default;
};

enum class WindowKind { kNone, kTumbling, kSliding };
const config::EnumNames<WindowKind>& windowKindNames();

struct WindowSpec {
  WindowKind kind = WindowKind::kNone;
  int64_t size_us = 0;
  int64_t hop_us = 0;       // == size_us for tumbling windows
  int64_t lateness_us = 0;  // allowed lateness (event time behind the newest reading)
  bool operator==(const WindowSpec&) const = default;
};

enum class Output { kRaw, kWindows, kBoth };
const config::EnumNames<Output>& outputNames();

struct SensorSpec {
  uint16_t id = 0;  // index in AgentInputs::sensors
  std::string name;
  std::string unit;
  SourceKind source = SourceKind::kSimulated;
  std::string where;             // "sensors[3]" for messages
  int64_t poll_interval_us = 0;  // polled sources (sysfs)
  SimulatedSensorSpec simulated;
  // mqtt
  std::string mqtt_topic;
  std::string mqtt_field;
  std::string mqtt_timestamp_field;
  // sysfs: hwmon chip / thermal zone / IIO device, and hwmon input / IIO channel
  std::string sysfs_device;
  std::string sysfs_channel;
  ModbusPoint modbus;  // modbus (poll_interval_us 0: the slave's poll interval)
  std::vector<FilterSpec> filters;
  WindowSpec window;
  Output output = Output::kRaw;
};

// True when the filter chain, window and output of `a` and `b` are the same (SIGHUP keeps the
// sensor's filter and window state then).
bool samePipeline(const SensorSpec& a, const SensorSpec& b);
// True when `a` and `b` read the same thing the same way (id, name, unit, source and its
// settings); filters and windows are not compared.
bool sameReading(const SensorSpec& a, const SensorSpec& b);

// What the agent does when standard input ends.
enum class OnEof { kKeep, kStop };
const config::EnumNames<OnEof>& onEofNames();

const config::EnumNames<LineFormat>& lineFormatNames();  // "line", "json", "csv"

struct SourcesSpec {
  size_t queue_chunks = 256;
  size_t chunk_readings = 256;
  bool queue_block = true;
  size_t max_line_bytes = 4096;
  LineFormat stdin_format = LineFormat::kLine;
  std::string socket_path;
  LineFormat socket_format = LineFormat::kLine;
  size_t socket_max_clients = 16;
  std::string mqtt_broker;
  std::string mqtt_client_id;
  mqttsec::MqttSecurity mqtt_security;  // user, password (never logged), TLS
  bool mqtt_clean_session = false;
  int mqtt_qos = 1;
  size_t mqtt_max_payload_bytes = 65536;
  std::string sysfs_root = "/sys";
  OnEof stdin_on_eof = OnEof::kKeep;
  int64_t stdin_eof_drain_timeout_us = 30 * 1000000LL;
  std::vector<ModbusSlaveSpec> modbus_slaves;  // [[sources.modbus.slaves]]
};

struct AgentInputs {
  std::vector<SensorSpec> sensors;
  SourcesSpec sources;
  bool uses(SourceKind kind) const;
};

// Adds the input settings ([[sensors]] with their filters and windows, [sources.*]) to the agent's
// settings table.
void addInputSettings(config::Schema& schema);

// Typed view of the input settings; throws config::ConfigError naming the key. No side effects.
AgentInputs parseInputs(const config::Config& cfg);
// Only the [sources.*] scalars (no sensors, no modbus slaves, no credential files read).
SourcesSpec readSourcesSpec(const config::Config& cfg);

// Builds every source the sensors need (threads of stdin/socket/MQTT sources start here; sysfs
// paths are resolved here and a missing device is a ConfigError naming the key). The returned
// source polls them all; its sensors() are in the order of `inputs.sensors`, ids = index.
std::unique_ptr<Source> buildSources(const AgentInputs& inputs, const Clock& clock,
                                     metrics::Registry& registry);

}  // namespace outpost::agent

#pragma once

// Every source of the agent, kept by what it reads so that SIGHUP can change the sensors without
// a restart: simulated sensors one source each, the sysfs sensors one source, at most one
// stdin, socket and MQTT source, and one Modbus source per link (TCP slave or serial bus).
// Pipeline thread only (the threaded sources hand over through their own queues).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "outpost/agent/inputs.h"
#include "outpost/agent/source.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

class StdinSource;

// Sensor ids that stay with a sensor name for the life of the process, so a reading handed over
// by a reader thread keeps meaning the same sensor across a reload. The first configuration gets
// ids 0..n-1 in file order; a name added later gets the next id never used before (ids are not
// reused, so a queued reading of a removed sensor is never taken for a new one).
class SensorIds {
 public:
  // Sets the id of every sensor in `in`. Throws config::ConfigError when no id is left (65535
  // distinct names in the life of the process); then `in` and this object are unchanged.
  void assign(AgentInputs& in);

 private:
  std::map<std::string, uint16_t, std::less<>> ids_;
  uint32_t next_ = 0;
};

class InputSet final : public Source {
 public:
  // Builds every source `inputs` needs (see buildSources()).
  InputSet(const AgentInputs& inputs, const Clock& clock, metrics::Registry* registry);
  ~InputSet() override;

  // The sensors of every source, by id.
  const std::vector<codec::SensorInfo>& sensors() const override { return infos_; }
  int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) override;

  // SIGHUP: makes `next` (ids from SensorIds) the configuration. Sources whose sensors and
  // settings are unchanged keep running untouched; stdin and socket sources learn new sensor
  // names without a restart; a simulated sensor that changed, the sysfs source when any sysfs
  // sensor changed, the socket source when sources.socket.* changed and the MQTT source when its
  // sensors or sources.mqtt.* changed, and a Modbus link whose slaves or sensors changed are
  // rebuilt. What a rebuilt threaded source had queued is appended to `drained` (at most about a
  // queue's worth; handle it before the sensors change); what a kept reader queued keeps its
  // sensor ids and is polled as usual. Throws config::ConfigError (a sysfs device that does not
  // exist, a socket that cannot be opened, Modbus settings libmodbus rejects) before changing
  // anything.
  // Returns one line per source started, restarted or stopped, for the log.
  std::vector<std::string> reconfigure(const AgentInputs& next,
                                       std::vector<wire::Reading>& drained);

  // True once standard input ended and everything read from it was handed over (false without
  // a stdin source).
  bool stdinFinished() const;

 private:
  void rebuildDictionary();
  static void drain(Source& s, size_t max_polls, std::vector<wire::Reading>& out);

  const Clock& clock_;
  metrics::Registry* registry_;
  AgentInputs inputs_;
  std::map<std::string, std::unique_ptr<Source>, std::less<>> simulated_;  // by sensor name
  std::unique_ptr<Source> sysfs_;
  std::unique_ptr<StdinSource> stdin_;
  std::unique_ptr<Source> socket_;
  std::unique_ptr<Source> mqtt_;
  std::map<std::string, std::unique_ptr<Source>, std::less<>> modbus_;  // by link (linkKey())
  std::vector<Source*> all_;
  std::vector<int64_t> next_;  // per all_
  std::vector<codec::SensorInfo> infos_;
};

// The InputSet of `inputs`: ids as in `inputs` (SensorIds gives them).
std::unique_ptr<InputSet> buildInputSet(const AgentInputs& inputs, const Clock& clock,
                                        metrics::Registry* registry);

}  // namespace outpost::agent

#include <algorithm>
#include <limits>

#include "outpost/agent/inputs.h"
#include "outpost/agent/mqtt_source.h"
#include "outpost/agent/simulated_source.h"
#include "outpost/agent/source.h"
#include "outpost/agent/stream_source.h"
#include "outpost/agent/sysfs_source.h"

namespace outpost::agent {
namespace {

// Polls several sources; its dictionary holds every sensor, in id order. Pipeline thread only.
class MultiSource final : public Source {
 public:
  MultiSource(std::vector<std::unique_ptr<Source>> sources, size_t n_sensors)
      : sources_(std::move(sources)), next_(sources_.size(), 0) {
    infos_.resize(n_sensors);
    for (const auto& s : sources_) {
      for (const auto& info : s->sensors()) infos_[info.id] = info;
    }
  }
  const std::vector<codec::SensorInfo>& sensors() const override { return infos_; }
  int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) override {
    int64_t next = std::numeric_limits<int64_t>::max();
    for (size_t i = 0; i < sources_.size(); ++i) {
      if (next_[i] <= now_us) next_[i] = sources_[i]->poll(now_us, out);
      next = std::min(next, next_[i]);
    }
    return next;
  }

 private:
  std::vector<std::unique_ptr<Source>> sources_;
  std::vector<int64_t> next_;
  std::vector<codec::SensorInfo> infos_;
};

}  // namespace

std::unique_ptr<Source> buildSources(const AgentInputs& in, const Clock& clock,
                                     metrics::Registry& registry) {
  std::vector<std::unique_ptr<Source>> sources;
  const int64_t start = clock.nowUs();
  // Sysfs first: a missing device stops start-up before any thread is started.
  std::vector<SensorSpec> sysfs;
  for (const auto& s : in.sensors) {
    if (s.source == SourceKind::kHwmon || s.source == SourceKind::kThermal ||
        s.source == SourceKind::kIio) {
      sysfs.push_back(s);
    }
  }
  if (!sysfs.empty()) {
    sources.push_back(
        std::make_unique<SysfsSource>(sysfs, in.sources.sysfs_root, start, &registry));
  }
  for (const auto& s : in.sensors) {
    if (s.source == SourceKind::kSimulated) {
      // One per sensor: SimulatedSource numbers its sensors from first_id.
      sources.push_back(std::make_unique<SimulatedSource>(
          std::vector<SimulatedSensorSpec>{s.simulated}, start, s.id));
    }
  }
  if (in.uses(SourceKind::kStdin)) {
    sources.push_back(std::make_unique<StdinSource>(in.sensors, in.sources, clock, &registry));
  }
  if (in.uses(SourceKind::kSocket)) {
    sources.push_back(std::make_unique<SocketSource>(in.sensors, in.sources, clock, &registry));
  }
  if (in.uses(SourceKind::kMqtt)) {
    sources.push_back(std::make_unique<MqttSource>(in.sensors, in.sources, clock, &registry));
  }
  return std::make_unique<MultiSource>(std::move(sources), in.sensors.size());
}

}  // namespace outpost::agent

#include "outpost/agent/input_reload.h"

#include <spdlog/spdlog.h>

namespace outpost::agent {
namespace {

bool sameDictionary(const std::vector<codec::SensorInfo>& a,
                    const std::vector<codec::SensorInfo>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const codec::SensorInfo& x, const codec::SensorInfo& y) {
                      return x.id == y.id && x.name == y.name && x.unit == y.unit;
                    });
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "\"" : ", \"") + n + "\"";
  return out;
}

}  // namespace

bool reloadInputs(const config::Config& next, SensorIds& ids, InputSet& sources,
                  SensorPipeline& pipeline, Batcher& batcher, metrics::Counter* produced,
                  int64_t mono_us, const std::function<void()>& close_batch) {
  AgentInputs in = parseInputs(next);
  SensorIds next_ids = ids;
  next_ids.assign(in);
  const std::vector<codec::SensorInfo> before = sources.sensors();
  std::vector<wire::Reading> drained;
  const auto restarted = sources.reconfigure(in, drained);  // throws before any change
  ids = std::move(next_ids);

  for (const auto& r : drained) {
    pipeline.process(r, mono_us, batcher);
    if (batcher.full()) close_batch();
  }
  if (produced && !drained.empty()) produced->inc(drained.size());

  const auto ch = pipeline.reconfigure(in.sensors, mono_us, batcher);
  const bool dictionary_changed = !sameDictionary(before, sources.sensors());
  if (dictionary_changed || ch.any()) {
    if (!batcher.empty()) close_batch();
    batcher.setDictionary(sources.sensors());
  }
  for (const auto& line : restarted) spdlog::info("reload: {}", line);
  if (!ch.added.empty()) spdlog::info("reload: sensors added: {}", joined(ch.added));
  if (!ch.rebuilt.empty()) {
    spdlog::info(
        "reload: sensors rebuilt (filters, window or output changed; open windows "
        "flushed): {}",
        joined(ch.rebuilt));
  }
  if (!ch.removed.empty()) {
    spdlog::info("reload: sensors removed (open windows flushed): {}", joined(ch.removed));
  }
  const bool any = dictionary_changed || ch.any() || !restarted.empty();
  if (any) {
    spdlog::info("reload: inputs applied: {} sensors ({} kept with their state)", in.sensors.size(),
                 ch.kept);
  }
  return any;
}

}  // namespace outpost::agent

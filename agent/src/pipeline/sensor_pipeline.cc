#include "outpost/agent/sensor_pipeline.h"

namespace outpost::agent {

SensorPipeline::SensorPipeline(const std::vector<SensorSpec>& sensors,
                               metrics::Registry* registry) {
  if (registry) {
    filter_metrics_ = std::make_unique<FilterMetrics>(*registry);
    late_ = filter_metrics_->dropped[static_cast<size_t>(FilterDropReason::kLate)];
    windows_emitted_ = &registry->counter("outpost_agent_windows_emitted_total",
                                          "Window statistics added to batches");
  }
  for (const auto& spec : sensors) build(spec);
  rebuildWindowed();
  scratch_.reserve(64);
}

void SensorPipeline::build(const SensorSpec& spec) {
  if (spec.id >= sensors_.size()) sensors_.resize(static_cast<size_t>(spec.id) + 1);
  auto& s = sensors_[spec.id];
  s = PerSensor{};
  s.active = true;
  s.spec = spec;
  for (const auto& f : spec.filters) s.filters.push_back(makeFilter(f, filter_metrics_.get()));
  if (spec.window.kind != WindowKind::kNone) {
    s.window.emplace(spec.window, spec.id);
    s.idle_after_us = spec.window.size_us + spec.window.lateness_us;
  }
  s.raw = spec.output != Output::kWindows;
}

void SensorPipeline::rebuildWindowed() {
  windowed_.clear();
  for (size_t id = 0; id < sensors_.size(); ++id) {
    if (sensors_[id].active && sensors_[id].window) windowed_.push_back(static_cast<uint16_t>(id));
  }
}

SensorPipeline::Changes SensorPipeline::reconfigure(const std::vector<SensorSpec>& sensors,
                                                    int64_t mono_us, Batcher& batcher) {
  Changes ch;
  std::vector<bool> configured(sensors_.size(), false);
  for (const auto& spec : sensors) {
    if (spec.id < configured.size()) configured[spec.id] = true;
  }
  // Removed first: their windows close under the dictionary they were opened with.
  for (size_t id = 0; id < sensors_.size(); ++id) {
    auto& s = sensors_[id];
    if (!s.active || configured[id]) continue;
    if (s.window) {
      s.window->closeAll(scratch_);
      emit(mono_us, batcher);
    }
    ch.removed.push_back(s.spec.name);
    s = PerSensor{};
  }
  for (const auto& spec : sensors) {
    const bool known = spec.id < sensors_.size() && sensors_[spec.id].active;
    if (known && sensors_[spec.id].spec.name == spec.name &&
        samePipeline(sensors_[spec.id].spec, spec)) {
      sensors_[spec.id].spec = spec;  // e.g. a new unit or source setting: no pipeline state
      ++ch.kept;
      continue;
    }
    if (known) {
      auto& s = sensors_[spec.id];
      if (s.window) {
        s.window->closeAll(scratch_);
        emit(mono_us, batcher);
      }
      ch.rebuilt.push_back(spec.name);
    } else {
      ch.added.push_back(spec.name);
    }
    build(spec);
  }
  rebuildWindowed();
  return ch;
}

void SensorPipeline::emit(int64_t mono_us, Batcher& batcher) {
  for (const auto& w : scratch_) batcher.addWindow(w, mono_us);
  if (windows_emitted_ && !scratch_.empty()) windows_emitted_->inc(scratch_.size());
  scratch_.clear();
}

void SensorPipeline::process(const wire::Reading& in, int64_t mono_us, Batcher& batcher) {
  // Sources only produce configured ids; after a reload a reader thread may still hand over a
  // reading of a sensor that was just removed.
  if (in.sensor() >= sensors_.size() || !sensors_[in.sensor()].active) return;
  auto& s = sensors_[in.sensor()];
  wire::Reading r = in;
  for (auto& f : s.filters) {
    if (!f->apply(r)) return;
  }
  if (s.raw) batcher.add(r, mono_us);
  if (s.window && r.quality() != wire::Quality::Bad) {
    s.last_mono_us = mono_us;
    if (!s.window->add(r.ts_us(), r.value(), scratch_)) {
      if (late_) late_->inc();
    }
    if (!scratch_.empty()) emit(mono_us, batcher);
  }
}

void SensorPipeline::closeIdle(int64_t mono_us, Batcher& batcher) {
  if (windowed_.empty() || mono_us < next_idle_check_us_) return;
  next_idle_check_us_ = mono_us + 100000;
  for (uint16_t id : windowed_) {
    auto& s = sensors_[id];
    if (!s.window->empty() && mono_us - s.last_mono_us >= s.idle_after_us) {
      s.window->closeAll(scratch_);
      emit(mono_us, batcher);
    }
  }
}

void SensorPipeline::closeAll(int64_t mono_us, Batcher& batcher) {
  for (uint16_t id : windowed_) {
    sensors_[id].window->closeAll(scratch_);
    emit(mono_us, batcher);
  }
}

}  // namespace outpost::agent

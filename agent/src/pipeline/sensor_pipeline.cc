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
  sensors_.resize(sensors.size());
  for (const auto& spec : sensors) {
    auto& s = sensors_[spec.id];
    for (const auto& f : spec.filters) s.filters.push_back(makeFilter(f, filter_metrics_.get()));
    if (spec.window.kind != WindowKind::kNone) {
      s.window.emplace(spec.window, spec.id);
      s.idle_after_us = spec.window.size_us + spec.window.lateness_us;
      windowed_.push_back(spec.id);
    }
    s.raw = spec.output != Output::kWindows;
  }
  scratch_.reserve(64);
}

void SensorPipeline::emit(int64_t mono_us, Batcher& batcher) {
  for (const auto& w : scratch_) batcher.addWindow(w, mono_us);
  if (windows_emitted_ && !scratch_.empty()) windows_emitted_->inc(scratch_.size());
  scratch_.clear();
}

void SensorPipeline::process(const wire::Reading& in, int64_t mono_us, Batcher& batcher) {
  if (in.sensor() >= sensors_.size()) return;  // sources only produce configured ids
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

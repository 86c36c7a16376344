#include "outpost/agent/batcher.h"

namespace outpost::agent {

Batcher::Batcher(size_t max_readings, int64_t linger_us, std::vector<codec::SensorInfo> dictionary)
    : max_readings_(max_readings), linger_us_(linger_us), dictionary_(std::move(dictionary)),
      used_(65536, false) {
  readings_.reserve(max_readings_);
}

void Batcher::add(const wire::Reading& r, int64_t mono_now_us) {
  if (empty()) first_mono_us_ = mono_now_us;
  readings_.push_back(r);
  used_[r.sensor()] = true;
}

void Batcher::addWindow(const wire::WindowStat& w, int64_t mono_now_us) {
  if (empty()) first_mono_us_ = mono_now_us;
  windows_.push_back(w);
  used_[w.sensor()] = true;
}

codec::BatchContent Batcher::take(const std::string& device_id, int64_t created_us) {
  codec::BatchContent b;
  b.device_id = device_id;
  b.created_us = created_us;
  for (const auto& s : dictionary_) {
    if (used_[s.id]) {
      b.sensors.push_back(s);
      used_[s.id] = false;
    }
  }
  b.readings = std::move(readings_);
  readings_ = {};
  readings_.reserve(max_readings_);
  b.windows = std::move(windows_);
  windows_ = {};
  return b;
}

}  // namespace outpost::agent

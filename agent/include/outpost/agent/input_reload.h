#pragma once

// SIGHUP, the input half: sensors, filters, windows and sources change without a restart and
// without losing what is in flight. Pipeline thread only.

#include <cstdint>
#include <functional>

#include "outpost/agent/batcher.h"
#include "outpost/agent/input_set.h"
#include "outpost/agent/sensor_pipeline.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

// Applies the input settings of `next` (validated) to the running pipeline:
//  1. parses them and gives the sensors their stable ids (`ids`);
//  2. reconfigures the sources (InputSet::reconfigure; a failure there throws
//     config::ConfigError and nothing has changed);
//  3. runs what rebuilt threaded sources still had queued through the old pipeline (counted in
//     `produced`, may be null);
//  4. reconfigures the pipeline (windows of removed and changed sensors are emitted);
//  5. if the sensors changed, closes the open batch with `close_batch` (it is written under the
//     dictionary its readings were made with) and gives the batcher the new dictionary.
// Logs what changed. Returns true if anything did.
bool reloadInputs(const config::Config& next, SensorIds& ids, InputSet& sources,
                  SensorPipeline& pipeline, Batcher& batcher, metrics::Counter* produced,
                  int64_t mono_us, const std::function<void()>& close_batch);

}  // namespace outpost::agent

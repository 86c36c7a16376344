#pragma once

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "outpost/agent/source.h"
#include "outpost/common/settings.h"

namespace outpost::agent {

// Signal shapes of simulated sensors. `counter` (0, 1, 2, ... per sensor) makes every reading of a
// run distinct and predictable, which the end-to-end tests use.
enum class Shape { kSine, kSquare, kSawtooth, kRandomWalk, kConstant, kCounter };
const config::EnumNames<Shape>& shapeNames();  // "sine", "square", ... (the one spelling)
Shape parseShape(const std::string& name);     // throws std::invalid_argument

struct SimulatedSensorSpec {
  std::string name;
  std::string unit;
  double rate_hz = 1.0;
  Shape shape = Shape::kSine;
  double amplitude = 1.0;
  double offset = 0.0;
  double period_s = 60.0;
  double noise = 0.0;  // standard deviation of added Gaussian noise
  uint64_t seed = 1;
  bool operator==(const SimulatedSensorSpec&) const = default;
};

// Deterministic given the specs and the start time: reading k of a sensor has timestamp
// start_us + k / rate_hz, and its value depends only on (spec, k).
class SimulatedSource final : public Source {
 public:
  // `first_id` is the sensor id given to specs[0]; the rest follow.
  SimulatedSource(std::vector<SimulatedSensorSpec> specs, int64_t start_us, uint16_t first_id = 0);

  const std::vector<codec::SensorInfo>& sensors() const override { return infos_; }
  int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) override;

 private:
  struct State {
    SimulatedSensorSpec spec;
    uint16_t id;
    uint64_t k = 0;  // readings emitted so far
    double interval_us;
    double walk = 0.0;  // random-walk position
    std::mt19937_64 rng;
    std::normal_distribution<double> gauss{0.0, 1.0};
  };
  double valueAt(State& s, double t_s);

  int64_t start_us_;
  std::vector<State> states_;
  std::vector<codec::SensorInfo> infos_;
};

}  // namespace outpost::agent

#include "outpost/agent/simulated_source.h"

#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>

namespace outpost::agent {

const config::EnumNames<Shape>& shapeNames() {
  static const config::EnumNames<Shape> names{{Shape::kSine, "sine"},
                                              {Shape::kSquare, "square"},
                                              {Shape::kSawtooth, "sawtooth"},
                                              {Shape::kRandomWalk, "random_walk"},
                                              {Shape::kConstant, "constant"},
                                              {Shape::kCounter, "counter"}};
  return names;
}

Shape parseShape(const std::string& name) {
  if (auto s = shapeNames().find(name)) return *s;
  throw std::invalid_argument("unknown shape '" + name + "'; allowed: " +
                              shapeNames().allowedText());
}

SimulatedSource::SimulatedSource(std::vector<SimulatedSensorSpec> specs, int64_t start_us,
                                 uint16_t first_id)
    : start_us_(start_us) {
  uint16_t id = first_id;
  for (auto& spec : specs) {
    if (!(spec.rate_hz > 0)) throw std::invalid_argument("sensor " + spec.name + ": rate_hz <= 0");
    State s{.spec = spec, .id = id, .interval_us = 1e6 / spec.rate_hz, .rng = std::mt19937_64(spec.seed)};
    infos_.push_back({id, spec.name, spec.unit});
    states_.push_back(std::move(s));
    ++id;
  }
}

double SimulatedSource::valueAt(State& s, double t_s) {
  const auto& p = s.spec;
  const double phase = p.period_s > 0 ? std::fmod(t_s, p.period_s) / p.period_s : 0.0;
  double v = 0;
  switch (p.shape) {
    case Shape::kSine: v = p.offset + p.amplitude * std::sin(2 * std::numbers::pi * phase); break;
    case Shape::kSquare: v = p.offset + (phase < 0.5 ? p.amplitude : -p.amplitude); break;
    case Shape::kSawtooth: v = p.offset + p.amplitude * (2 * phase - 1); break;
    case Shape::kRandomWalk:
      s.walk += s.gauss(s.rng) * p.amplitude;
      v = p.offset + s.walk;
      break;
    case Shape::kConstant: v = p.offset; break;
    case Shape::kCounter: return static_cast<double>(s.k);  // exact, never noisy
  }
  if (p.noise > 0) v += s.gauss(s.rng) * p.noise;
  return v;
}

int64_t SimulatedSource::poll(int64_t now_us, std::vector<wire::Reading>& out) {
  int64_t next = std::numeric_limits<int64_t>::max();
  for (auto& s : states_) {
    for (;;) {
      const int64_t due = start_us_ + static_cast<int64_t>(std::llround(s.k * s.interval_us));
      if (due > now_us) {
        next = std::min(next, due);
        break;
      }
      const double t_s = static_cast<double>(due) / 1e6;
      out.emplace_back(due, valueAt(s, t_s), s.id, wire::Quality::Good);
      ++s.k;
    }
  }
  return next;
}

}  // namespace outpost::agent

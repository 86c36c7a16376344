#include "outpost/sim/fleet.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "outpost/sim/outputs.h"
#include "support/temp_dir.h"

namespace outpost::sim {
namespace {

constexpr int64_t kStart = 1714521600LL * 1'000'000;  // 2024-05-01T00:00:00Z

struct Run {
  std::vector<std::vector<wire::Reading>> readings;  // per device, all steps
  std::vector<std::vector<uint8_t>> tags;
  std::vector<Label> labels;
  std::vector<std::string> names;
};

Run generate(FleetOptions o, int steps) {
  Fleet fleet(o);
  Run run;
  run.readings.resize(static_cast<size_t>(o.devices));
  run.tags.resize(static_cast<size_t>(o.devices));
  for (int d = 0; d < o.devices; ++d) run.names.push_back(fleet.deviceName(d));
  std::vector<DeviceStep> out;
  for (int i = 0; i < steps; ++i) {
    fleet.step(out, run.labels);
    for (size_t d = 0; d < out.size(); ++d) {
      REQUIRE(out[d].readings.size() == out[d].anomaly.size());
      run.readings[d].insert(run.readings[d].end(), out[d].readings.begin(), out[d].readings.end());
      run.tags[d].insert(run.tags[d].end(), out[d].anomaly.begin(), out[d].anomaly.end());
    }
  }
  return run;
}

FleetOptions busyOptions(uint64_t seed) {
  FleetOptions o;
  o.seed = seed;
  o.devices = 3;
  o.start_us = kStart;
  o.interval_us = 10'000'000;
  o.end_us = kStart + 12LL * 3600 * 1'000'000;
  o.anomaly_rate = 1.5;  // per sensor-hour: every kind shows up in 12 h
  o.offline_rate = 0.3;
  return o;
}
constexpr int kBusySteps = 12 * 360;

bool sameBytes(const Run& a, const Run& b) {
  if (a.readings.size() != b.readings.size()) return false;
  for (size_t d = 0; d < a.readings.size(); ++d) {
    if (a.readings[d].size() != b.readings[d].size()) return false;
    if (std::memcmp(a.readings[d].data(), b.readings[d].data(),
                    a.readings[d].size() * sizeof(wire::Reading)) != 0) {
      return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("same seed and options give bit-identical readings and labels", "[sim][fleet]") {
  const Run a = generate(busyOptions(42), 2000);
  const Run b = generate(busyOptions(42), 2000);
  REQUIRE(sameBytes(a, b));
  REQUIRE(a.labels.size() == b.labels.size());
  REQUIRE(!a.labels.empty());
  for (size_t i = 0; i < a.labels.size(); ++i)
    CHECK(labelJson(a.labels[i]) == labelJson(b.labels[i]));
  SECTION("another seed gives other data") {
    const Run c = generate(busyOptions(43), 2000);
    CHECK_FALSE(sameBytes(a, c));
  }
}

TEST_CASE("labels match exactly what was injected", "[sim][fleet][labels]") {
  const FleetOptions with = busyOptions(7);
  FleetOptions without = with;
  without.anomaly_rate = 0;
  without.offline_rate = 0;
  const Run a = generate(with, kBusySteps);
  const Run clean = generate(without, kBusySteps);
  REQUIRE(a.labels.size() > 20);

  // Every kind was injected at least once in 12 h x 3 devices x 7 sensors.
  std::set<AnomalyKind> kinds;
  for (const auto& l : a.labels) kinds.insert(l.kind);
  CHECK(kinds.size() == static_cast<size_t>(kAnomalyKinds));

  Fleet names(with);
  const auto& sensors = names.sensors();
  auto inLabel = [&](size_t dev, uint16_t sensor, int64_t ts, bool value_kinds) {
    for (const auto& l : a.labels) {
      if (l.device != a.names[dev] || ts < l.start_us || ts > l.end_us) continue;
      const bool silent = l.kind == AnomalyKind::kDropout || l.kind == AnomalyKind::kOffline;
      if (value_kinds == silent) continue;
      if (l.sensor == "*" || l.sensor == sensors[sensor].name) return true;
    }
    return false;
  };

  // Per device: (sensor, ts) -> value, for the clean run and the run with anomalies.
  using Key = std::pair<uint16_t, int64_t>;
  std::vector<std::map<Key, double>> clean_values(a.readings.size()), got(a.readings.size());
  int mismatches = 0;
  for (size_t d = 0; d < a.readings.size(); ++d) {
    for (const auto& r : clean.readings[d]) clean_values[d][{r.sensor(), r.ts_us()}] = r.value();
    for (size_t i = 0; i < a.readings[d].size(); ++i) {
      const auto& r = a.readings[d][i];
      got[d][{r.sensor(), r.ts_us()}] = r.value();
      auto it = clean_values[d].find({r.sensor(), r.ts_us()});
      // Anomalies never invent readings or move them in time.
      if (it == clean_values[d].end()) {
        ++mismatches;
        continue;
      }
      const bool tagged = a.tags[d][i] != 0;
      if (tagged != inLabel(d, r.sensor(), r.ts_us(), true)) ++mismatches;
      if (it->second != r.value() && !tagged) {
        UNSCOPED_INFO("untagged change: " << a.names[d] << " " << sensors[r.sensor()].name << " "
                                          << r.ts_us());
        ++mismatches;
      }
    }
    // Missing readings are exactly those inside dropout / offline labels.
    for (const auto& [key, v] : clean_values[d]) {
      const bool missing = !got[d].contains(key);
      if (missing != inLabel(d, key.first, key.second, false)) ++mismatches;
    }
  }
  CHECK(mismatches == 0);

  // Each label's effect is visible.
  for (const auto& l : a.labels) {
    const size_t d =
        static_cast<size_t>(std::find(a.names.begin(), a.names.end(), l.device) - a.names.begin());
    REQUIRE(d < a.names.size());
    std::vector<std::pair<double, double>> inside;  // (anomalous, clean)
    int clean_inside = 0;
    const auto lo =
        std::lower_bound(clean.readings[d].begin(), clean.readings[d].end(), l.start_us,
                         [](const wire::Reading& r, int64_t t) { return r.ts_us() < t; });
    for (auto r = lo; r != clean.readings[d].end() && r->ts_us() <= l.end_us; ++r) {
      if (l.sensor != "*" && sensors[r->sensor()].name != l.sensor) continue;
      ++clean_inside;
      auto it = got[d].find({r->sensor(), r->ts_us()});
      if (it != got[d].end()) inside.emplace_back(it->second, r->value());
    }
    INFO(labelJson(l));
    REQUIRE(clean_inside > 0);  // a label is only written when a reading was affected
    switch (l.kind) {
      case AnomalyKind::kSpike:
      case AnomalyKind::kDip:
        REQUIRE(inside.size() == 1);
        CHECK(l.start_us == l.end_us);
        CHECK(inside[0].first != inside[0].second);
        CHECK((l.kind == AnomalyKind::kSpike) == (inside[0].first > inside[0].second));
        break;
      case AnomalyKind::kLevelShift:
      case AnomalyKind::kNoiseBurst: {
        int differ = 0;
        for (auto [x, c] : inside) differ += x != c;
        CHECK(differ >= 1);
        if (l.kind == AnomalyKind::kLevelShift) CHECK(differ == static_cast<int>(inside.size()));
        break;
      }
      case AnomalyKind::kDrift: {
        int differ = 0;
        for (auto [x, c] : inside) differ += x != c;
        if (inside.size() > 2) CHECK(differ >= 1);
        break;
      }
      case AnomalyKind::kStuck:
        for (auto [x, c] : inside) CHECK(x == inside.front().first);
        break;
      case AnomalyKind::kDropout:
      case AnomalyKind::kOffline:
        CHECK(inside.empty());
        break;
    }
  }
}

TEST_CASE("signals look like the physical quantities they model", "[sim][fleet]") {
  FleetOptions o;
  o.seed = 3;
  o.devices = 2;
  o.start_us = kStart;
  o.interval_us = 60'000'000;
  o.anomaly_rate = 0;
  o.offline_rate = 0;
  const Run run = generate(o, 24 * 60);  // one day
  Fleet f(o);
  for (size_t d = 0; d < run.readings.size(); ++d) {
    std::map<int64_t, double> temp, hum;
    double last_counter = -1;
    for (const auto& r : run.readings[d]) {
      const std::string& name = f.sensors()[r.sensor()].name;
      if (name == "temperature") temp[r.ts_us() / 5'000'000] = r.value();
      if (name == "humidity") hum[r.ts_us() / 5'000'000] = r.value();
      if (name == "counter") {
        CHECK(r.value() >= last_counter);  // a counter never goes back without an anomaly
        last_counter = r.value();
      }
      if (name == "vibration_rms" || name == "current" || name == "power") CHECK(r.value() >= 0);
      if (name == "pressure") CHECK((r.value() > 900 && r.value() < 1100));
    }
    // Humidity moves against temperature.
    double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    int n = 0;
    for (const auto& [k, t] : temp) {
      auto h = hum.find(k);
      if (h == hum.end()) continue;
      sx += t, sy += h->second, sxx += t * t, syy += h->second * h->second, sxy += t * h->second;
      ++n;
    }
    REQUIRE(n > 1000);
    const double corr = (n * sxy - sx * sy) / std::sqrt((n * sxx - sx * sx) * (n * syy - sy * sy));
    CHECK(corr < -0.8);
    // A daily cycle: the afternoon is warmer than the small hours.
    double am = 0, pm = 0;
    int nam = 0, npm = 0;
    for (const auto& [k, t] : temp) {
      const int hour = static_cast<int>((k * 5 / 3600) % 24);
      if (hour >= 2 && hour < 5) am += t, ++nam;
      if (hour >= 13 && hour < 16) pm += t, ++npm;
    }
    CHECK(pm / npm > am / nam + 1.0);
  }
}

TEST_CASE("bad fleet options are rejected with the option's name", "[sim][fleet]") {
  FleetOptions o;
  o.devices = 0;
  CHECK_THROWS_WITH(Fleet(o), Catch::Contains("--devices"));
  o = FleetOptions{};
  o.kinds = {AnomalyKind::kOffline};
  CHECK_THROWS_WITH(Fleet(o), Catch::Contains("--offline-rate"));
  o = FleetOptions{};
  o.device_prefix = "bad/prefix-";
  CHECK_THROWS_WITH(Fleet(o), Catch::Contains("--device-prefix"));
  CHECK(parseAnomalyKind("noise_burst") == AnomalyKind::kNoiseBurst);
  CHECK_FALSE(parseAnomalyKind("bogus"));
}

namespace {
std::map<std::string, std::string> readTree(const std::filesystem::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    files[std::filesystem::relative(e.path(), root).string()] = ss.str();
  }
  return files;
}

void writeRun(const std::string& dir, FleetOptions o, int steps) {
  Fleet fleet(o);
  auto lines = makeLinesOutput(dir + "/lines", fleet, LineTimestamp::kMicros);
  auto csv = makeCsvOutput(dir + "/csv", fleet);
  std::vector<DeviceStep> out;
  std::vector<Label> labels;
  for (int i = 0; i < steps; ++i) {
    fleet.step(out, labels);
    for (int d = 0; d < fleet.devices(); ++d) {
      REQUIRE(lines->write(fleet, d, out[static_cast<size_t>(d)]));
      REQUIRE(csv->write(fleet, d, out[static_cast<size_t>(d)]));
    }
  }
  REQUIRE(lines->finish());
  REQUIRE(csv->finish());
}
}  // namespace

TEST_CASE("line and CSV outputs are byte-identical for the same seed", "[sim][outputs]") {
  testing::TempDir tmp("outpost-sim");
  writeRun(tmp.file("a"), busyOptions(11), 600);
  writeRun(tmp.file("b"), busyOptions(11), 600);
  const auto a = readTree(tmp.file("a"));
  const auto b = readTree(tmp.file("b"));
  REQUIRE(a.size() == 3 + 3 * 7);  // 3 .lines files, 3 devices x 7 sensor CSVs
  CHECK(a == b);
  const std::string& csv = a.at("csv/sim-0001/temperature.csv");
  CHECK(csv.rfind("timestamp,value,label\n2024-05-01T", 0) == 0);
  const std::string& lines = a.at("lines/sim-0001.lines");
  std::istringstream first(lines);
  std::string sensor, ts;
  double value = 0;
  REQUIRE(first >> sensor >> value >> ts);
  CHECK(ts.size() == 16);  // µs since the epoch
}

}  // namespace outpost::sim

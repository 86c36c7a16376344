// Detection quality of outpost::detect::SensorDetector on labelled synthetic data
// (tests/detect/labelled_generator.h): precision, recall, F1 and mean detection delay per anomaly
// kind, and false alarms per sensor-day on clean data. Not a timed benchmark.
//
//   detect_quality [--seed N] [--sensors N] [--clean-sensors N] [--days D] [--check]
//                  [--check-floor] [--verbose] [--cfg NAME=VALUE ...]
//
// Matching: an alarm hits a labelled event when it is raised within [start, end + grace],
// grace = max(10 readings, 10% of the event's duration). Strict per kind: recall(K) counts
// events of kind K hit by an alarm labelled K; precision(K) counts alarms labelled K that hit an
// event of kind K. "any" columns ignore the label. Delay: first hitting alarm - event start.
// --check exits 1 unless F1 >= 0.9 for spike, dip, level_shift, stuck, F1 >= 0.7 for drift, and
// <= 1 false alarm per sensor-day on clean data (the targets). --check-floor asserts a
// regression floor for small runs: F1 >= 0.9 for stuck, silence, rate, range; >= 0.85 for spike,
// dip, level_shift; >= 0.7 for drift; <= 1 false alarm per sensor-day. --verbose adds a
// confusion table (label of the first alarm per event kind, kind hit per alarm label). --cfg
// overrides a numeric DetectorConfig field for tuning experiments (never on the reported seed).

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "labelled_generator.h"
#include "outpost/common/detect/sensor_detector.h"

using namespace outpost::detect;
using outpost::detect::DetectorConfig;
using outpost::detect::testing::GeneratorOptions;
using outpost::detect::testing::LabelledSeries;

namespace {

struct Alarm {
  int64_t start_ms;
  int64_t end_ms;
  AnomalyKind kind;
};

// --cfg name=value overrides (tuning experiments on other seeds than the reported one).
std::vector<std::pair<double DetectorConfig::*, double>> g_overrides;

std::vector<Alarm> runSeries(const LabelledSeries& series) {
  const LabelledSeries& s = series;
  DetectorConfig cfg = s.cfg;
  for (auto& [m, v] : g_overrides) cfg.*m = v;
  SensorDetector det(&cfg);
  std::vector<Alarm> alarms;
  auto onResult = [&](const DetectResult& r) {
    if (r.replaced && !alarms.empty()) {
      alarms.back().end_ms = det.previousEvent().end_ms;
      alarms.back().kind = det.previousEvent().kind;
    }
    if (r.transition == AlarmTransition::kRaised)
      alarms.push_back({det.event().start_ms, 0, det.event().kind});
    if (r.transition == AlarmTransition::kEnded && !alarms.empty()) {
      alarms.back().end_ms = det.event().end_ms;
      alarms.back().kind = det.event().kind;
    }
  };
  const int64_t poll_step = 30000;  // the live worker polls for silence every 30 s
  for (size_t i = 0; i < s.ts_ms.size(); ++i) {
    if (i > 0)
      for (int64_t t = s.ts_ms[i - 1] + poll_step; t < s.ts_ms[i]; t += poll_step)
        onResult(det.poll(t));
    onResult(det.update(s.ts_ms[i], s.value[i]));
  }
  if (det.alarmActive() && !alarms.empty()) alarms.back().kind = det.event().kind;
  return alarms;
}

struct KindStats {
  int events = 0, hit_strict = 0, hit_any = 0, alarms = 0, alarms_tp = 0;
  double delay_sum_s = 0;
  int delay_n = 0;
};

const AnomalyKind kKinds[] = {AnomalyKind::kSpike, AnomalyKind::kDip,   AnomalyKind::kLevelShift,
                              AnomalyKind::kDrift, AnomalyKind::kStuck, AnomalyKind::kSilence,
                              AnomalyKind::kRate,  AnomalyKind::kRange};

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = 20240501;
  int sensors = 200, clean = 100;
  double days = 6.0;
  bool check = false, verbose = false, floor = false;
  for (int i = 1; i < argc; ++i) {
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (!std::strcmp(argv[i], "--seed"))
      seed = std::strtoull(next(), nullptr, 10);
    else if (!std::strcmp(argv[i], "--sensors"))
      sensors = std::atoi(next());
    else if (!std::strcmp(argv[i], "--clean-sensors"))
      clean = std::atoi(next());
    else if (!std::strcmp(argv[i], "--days"))
      days = std::atof(next());
    else if (!std::strcmp(argv[i], "--check"))
      check = true;
    else if (!std::strcmp(argv[i], "--check-floor"))
      check = floor = true;
    else if (!std::strcmp(argv[i], "--verbose"))
      verbose = true;
    else if (!std::strcmp(argv[i], "--cfg")) {
      const std::string kv = next();
      const auto eq = kv.find('=');
      const std::map<std::string, double DetectorConfig::*> known = {
          {"spike_z", &DetectorConfig::spike_z},
          {"cusum_k", &DetectorConfig::cusum_k},
          {"cusum_h", &DetectorConfig::cusum_h},
          {"drift_z", &DetectorConfig::drift_z},
          {"drift_memory_s", &DetectorConfig::drift_memory_s},
          {"level_alpha", &DetectorConfig::level_alpha},
          {"scale_alpha", &DetectorConfig::scale_alpha}};
      auto it = eq == std::string::npos ? known.end() : known.find(kv.substr(0, eq));
      if (it == known.end()) {
        std::fprintf(stderr, "--cfg %s: expected NAME=VALUE with NAME one of the known fields\n",
                     kv.c_str());
        return 2;
      }
      g_overrides.push_back({it->second, std::atof(kv.c_str() + eq + 1)});
    } else {
      std::fprintf(stderr,
                   "usage: %s [--seed N] [--sensors N] [--clean-sensors N] [--days D] [--check]\n",
                   argv[0]);
      return 2;
    }
  }

  std::map<AnomalyKind, KindStats> st;
  // Confusion: event kind -> label of the first alarm that hits it (kNone: missed).
  std::map<AnomalyKind, std::map<AnomalyKind, int>> confusion;
  std::map<AnomalyKind, std::vector<double>> delay_frac;
  std::map<AnomalyKind, std::map<AnomalyKind, int>>
      alarm_hits;  // alarm label -> event kind hit  // first hit delay / event duration
  int false_alarms_labelled = 0, total_alarms = 0;
  GeneratorOptions opt;
  opt.seed = seed;
  opt.days = days;
  for (int k = 0; k < sensors; ++k) {
    const LabelledSeries s = generateSeries(opt, static_cast<uint64_t>(k));
    const auto alarms = runSeries(s);
    int64_t med_dt = 60000;
    if (s.ts_ms.size() > 2) {
      std::vector<int64_t> d;
      for (size_t i = 1; i < std::min<size_t>(s.ts_ms.size(), 200); ++i)
        d.push_back(s.ts_ms[i] - s.ts_ms[i - 1]);
      std::nth_element(d.begin(), d.begin() + d.size() / 2, d.end());
      med_dt = d[d.size() / 2];
    }
    auto hits = [&](const Alarm& a, const testing::LabelledEvent& e) {
      const int64_t grace = std::max<int64_t>(10 * med_dt, (e.end_ms - e.start_ms) / 10);
      return a.start_ms >= e.start_ms && a.start_ms <= e.end_ms + grace;
    };
    for (const auto& e : s.events) {
      KindStats& ks = st[e.kind];
      ++ks.events;
      bool any = false, strict = false;
      for (const auto& a : alarms) {
        if (!hits(a, e)) continue;
        if (!any) {
          ++confusion[e.kind][a.kind];
          if (e.end_ms > e.start_ms)
            delay_frac[e.kind].push_back(double(a.start_ms - e.start_ms) / (e.end_ms - e.start_ms));
          if (verbose && e.kind == AnomalyKind::kDrift)
            std::printf("drift event %s dur %.1fh: first alarm %s at %.2f of duration\n",
                        s.description.c_str(), (e.end_ms - e.start_ms) / 3.6e6, kindName(a.kind),
                        double(a.start_ms - e.start_ms) / (e.end_ms - e.start_ms));
          ks.delay_sum_s += (a.start_ms - e.start_ms) / 1000.0;
          ++ks.delay_n;
        }
        any = true;
        if (a.kind == e.kind) strict = true;
      }
      if (!any) ++confusion[e.kind][AnomalyKind::kNone];
      ks.hit_any += any;
      ks.hit_strict += strict;
    }
    for (const auto& a : alarms) {
      ++total_alarms;
      KindStats& ks = st[a.kind];
      ++ks.alarms;
      bool tp = false, any = false;
      for (const auto& e : s.events) {
        if (!hits(a, e)) continue;
        if (!any) ++alarm_hits[a.kind][e.kind];
        any = true;
        if (e.kind == a.kind) tp = true;
      }
      ks.alarms_tp += tp;
      if (!any) ++false_alarms_labelled;
      if (!any) ++alarm_hits[a.kind][AnomalyKind::kNone];
    }
  }

  // Clean data: no injected anomalies.
  GeneratorOptions copt = opt;
  copt.seed = seed ^ 0xC1EA4ull;
  copt.anomalies = 0;
  long clean_alarms = 0;
  std::map<AnomalyKind, int> clean_by_kind;
  for (int k = 0; k < clean; ++k) {
    const LabelledSeries s = generateSeries(copt, static_cast<uint64_t>(k));
    const auto alarms = runSeries(s);
    if (verbose && !alarms.empty()) {
      std::printf("clean %d: %s: %zu alarms:", k, s.description.c_str(), alarms.size());
      for (size_t i = 0; i < std::min<size_t>(alarms.size(), 6); ++i)
        std::printf(" %s@%.2fd", kindName(alarms[i].kind),
                    (alarms[i].start_ms - s.ts_ms[0]) / 86400000.0);
      std::printf("\n");
    }
    for (const auto& a : alarms) {
      ++clean_alarms;
      ++clean_by_kind[a.kind];
    }
  }
  const double sensor_days = clean * days;
  const double fa_per_day = sensor_days > 0 ? clean_alarms / sensor_days : 0.0;

  std::printf("seed %llu: %d labelled sensors x %.1f days, %d clean sensors\n\n",
              static_cast<unsigned long long>(seed), sensors, days, clean);
  std::printf("| kind | events | precision | recall | F1 | recall (any label) | mean delay |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  bool ok = true;
  for (AnomalyKind k : kKinds) {
    const KindStats& ks = st[k];
    const double p = ks.alarms ? double(ks.alarms_tp) / ks.alarms : 0.0;
    const double r = ks.events ? double(ks.hit_strict) / ks.events : 0.0;
    const double f1 = p + r > 0 ? 2 * p * r / (p + r) : 0.0;
    const double ra = ks.events ? double(ks.hit_any) / ks.events : 0.0;
    const double d = ks.delay_n ? ks.delay_sum_s / ks.delay_n : 0.0;
    std::printf("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.0f s |\n", kindName(k), ks.events, p, r,
                f1, ra, d);
    double target = 0;
    if (floor) {
      target = 0.9;
      if (k == AnomalyKind::kSpike || k == AnomalyKind::kDip || k == AnomalyKind::kLevelShift)
        target = 0.85;
      if (k == AnomalyKind::kDrift) target = 0.7;
    } else {
      if (k == AnomalyKind::kSpike || k == AnomalyKind::kDip || k == AnomalyKind::kLevelShift ||
          k == AnomalyKind::kStuck)
        target = 0.9;
      if (k == AnomalyKind::kDrift) target = 0.7;
    }
    if (ks.events > 0 && f1 < target) {
      ok = false;
      std::printf("  ^ below target F1 %.2f\n", target);
    }
  }
  if (verbose) {
    std::printf("\nfirst hitting alarm's label per event kind (none = missed):\n");
    for (AnomalyKind k : kKinds) {
      std::printf("  %-12s", kindName(k));
      for (auto& [j, n] : confusion[k])
        std::printf(" %s:%d", j == AnomalyKind::kNone ? "none" : kindName(j), n);
      auto& v = delay_frac[k];
      if (!v.empty()) {
        std::sort(v.begin(), v.end());
        std::printf("  delay/duration p50 %.2f p90 %.2f", v[v.size() / 2], v[v.size() * 9 / 10]);
      }
      std::printf("\n");
    }
  }
  if (verbose) {
    std::printf("\nevent kind hit per alarm label (none = false alarm):\n");
    for (AnomalyKind k : kKinds) {
      std::printf("  %-12s", kindName(k));
      for (auto& [j, n] : alarm_hits[k])
        std::printf(" %s:%d", j == AnomalyKind::kNone ? "none" : kindName(j), n);
      std::printf("\n");
    }
  }
  std::printf("\nalarms on labelled data: %d, hitting no labelled event: %d\n", total_alarms,
              false_alarms_labelled);
  std::printf("clean data: %ld alarms in %.0f sensor-days = %.3f false alarms per sensor-day",
              clean_alarms, sensor_days, fa_per_day);
  for (auto& [k, n] : clean_by_kind) std::printf(" %s:%d", kindName(k), n);
  std::printf("\n");
  if (fa_per_day > 1.0) ok = false;
  if (check) {
    std::printf("%s\n", ok ? "CHECK PASSED" : "CHECK FAILED");
    return ok ? 0 : 1;
  }
  return 0;
}

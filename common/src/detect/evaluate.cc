#include "outpost/common/detect/evaluate.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace outpost::detect {

Result<std::vector<EvalGroup>> evaluateFiles(const std::vector<std::string>& files,
                                             const DetectorConfig& cfg, const EvalOptions& opt) {
  std::vector<EvalGroup> groups;
  EvalGroup all;
  all.name = "all";
  const NabProfile profiles[3] = {kNabStandard, kNabLowFp, kNabLowFn};
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(ErrorCode::kIoError, "cannot open " + path);
    DeviceCsvOptions csv = opt.csv;
    csv.labels = {opt.anomaly_label, opt.changepoint_label};
    std::vector<int64_t> ts;
    std::vector<uint8_t> anomaly, changepoint, onset, transition, alarm;
    int64_t normal_ms = 0, last_ts = 0;
    bool have_last = false;
    uint64_t normal_alarms = 0;
    auto st = runDeviceCsv(in, cfg, csv, [&](const DeviceRow& r) {
      if (!r.valid) return;
      const double a = (*r.labels)[0], c = (*r.labels)[1];
      const bool is_anom = std::isfinite(a) && a != 0.0;
      ts.push_back(r.ts_ms);
      anomaly.push_back(is_anom);
      changepoint.push_back(std::isfinite(c) && c != 0.0);
      alarm.push_back(r.device.alarm);
      const bool raised = r.device.transition == AlarmTransition::kRaised;
      onset.push_back(raised);
      transition.push_back(r.device.transition != AlarmTransition::kNone);
      if (have_last && !is_anom) normal_ms += r.ts_ms - last_ts;
      if (raised && !is_anom) ++normal_alarms;
      last_ts = r.ts_ms;
      have_last = true;
    });
    if (!st) return fail(st.error().code(), path + ": " + st.error().message());
    const std::string dir = std::filesystem::path(path).parent_path().filename().string();
    EvalGroup* g = nullptr;
    for (auto& x : groups)
      if (x.name == dir) g = &x;
    if (!g) {
      groups.emplace_back();
      g = &groups.back();
      g->name = dir;
    }
    for (EvalGroup* t : {g, &all}) {
      ++t->files;
      if (!ts.empty()) t->hours += static_cast<double>(ts.back() - ts.front()) / 3.6e6;
      t->normal_hours += static_cast<double>(normal_ms) / 3.6e6;
      t->device_alarms += st->device_alarms;
      t->normal_alarms += normal_alarms;
    }
    if (st->label_present.size() == 2 && st->label_present[1]) {
      const auto windows = windowsRightOf(ts, changepoint, opt.window_ms);
      for (int k = 0; k < 3; ++k) {
        const NabScore s = nabScore(windows, transition, profiles[k]);
        g->nab[k] += s;
        all.nab[k] += s;
      }
      const NabScore s = nabScore(windows, onset, kNabStandard);
      g->nab_onsets += s;
      all.nab_onsets += s;
    }
    if (st->label_present.size() == 2 && st->label_present[0]) {
      PointCounts pc;
      for (size_t i = 0; i < ts.size(); ++i) pc.add(anomaly[i], alarm[i]);
      g->points += pc;
      all.points += pc;
    }
  }
  groups.push_back(all);
  return groups;
}

void writeEvalTable(const std::vector<EvalGroup>& groups, std::ostream& out) {
  out << "| files | n | hours | device alarms | alarms / normal hour | NAB standard | NAB low FP | "
         "NAB low FN | windows detected | NAB standard, raises only | F1 | precision | recall | "
         "FAR | MAR |\n"
         "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  char buf[512];
  for (const EvalGroup& g : groups) {
    const bool nab = g.nab[0].windows > 0;
    const bool pts = g.points.tp + g.points.fn + g.points.fp + g.points.tn > 0;
    std::snprintf(buf, sizeof buf, "| %s | %zu | %.2f | %llu | %.2f | ", g.name.c_str(), g.files,
                  g.hours, static_cast<unsigned long long>(g.device_alarms),
                  g.normal_hours > 0 ? static_cast<double>(g.normal_alarms) / g.normal_hours : 0.0);
    out << buf;
    if (nab) {
      std::snprintf(buf, sizeof buf, "%.2f | %.2f | %.2f | %zu / %zu | %.2f | ",
                    g.nab[0].normalised(), g.nab[1].normalised(), g.nab[2].normalised(),
                    g.nab[0].detected, g.nab[0].windows, g.nab_onsets.normalised());
    } else {
      std::snprintf(buf, sizeof buf, "- | - | - | - | - | ");
    }
    out << buf;
    if (pts) {
      std::snprintf(buf, sizeof buf, "%.3f | %.3f | %.3f | %.1f %% | %.1f %% |\n", g.points.f1(),
                    g.points.precision(), g.points.recall(), 100.0 * g.points.falseAlarmRate(),
                    100.0 * g.points.missedAlarmRate());
    } else {
      std::snprintf(buf, sizeof buf, "- | - | - | %.1f %% | - |\n",
                    100.0 * g.points.falseAlarmRate());
    }
    out << buf;
  }
}

}  // namespace outpost::detect

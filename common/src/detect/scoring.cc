#include "outpost/common/detect/scoring.h"

#include <algorithm>
#include <cmath>

namespace outpost::detect {

std::vector<NabWindow> windowsRightOf(const std::vector<int64_t>& ts,
                                      const std::vector<uint8_t>& cp, int64_t window_ms) {
  std::vector<NabWindow> out;
  const size_t n = std::min(ts.size(), cp.size());
  for (size_t i = 0; i < n; ++i) {
    if (!cp[i]) continue;
    size_t j = i;
    while (j + 1 < n && ts[j + 1] <= ts[i] + window_ms && !cp[j + 1]) ++j;
    out.push_back({i, j});
  }
  return out;
}

double nabScaledSigmoid(double y) {
  if (y > 3.0) return -1.0;
  return 2.0 / (1.0 + std::exp(5.0 * y)) - 1.0;
}

NabScore& NabScore::operator+=(const NabScore& o) {
  raw += o.raw;
  null += o.null;
  perfect += o.perfect;
  windows += o.windows;
  detected += o.detected;
  false_positives += o.false_positives;
  return *this;
}

double NabScore::normalised() const {
  if (perfect == null) return 0.0;
  return 100.0 * (raw - null) / (perfect - null);
}

NabScore nabScore(const std::vector<NabWindow>& windows, const std::vector<uint8_t>& det,
                  const NabProfile& p) {
  NabScore s;
  s.windows = windows.size();
  s.null = -p.a_fn * static_cast<double>(windows.size());
  s.perfect = p.a_tp * static_cast<double>(windows.size());
  const double max_tp = nabScaledSigmoid(-1.0);
  std::vector<uint8_t> credited(windows.size(), 0);
  size_t w = 0;          // first window whose last row is >= i
  long prev = -1;        // index of the last window that ended before i
  for (size_t i = 0; i < det.size(); ++i) {
    while (w < windows.size() && windows[w].last < i) prev = static_cast<long>(w++);
    if (!det[i]) continue;
    if (w < windows.size() && windows[w].first <= i) {
      if (credited[w]) continue;
      credited[w] = 1;
      const double width = static_cast<double>(windows[w].last - windows[w].first + 1);
      const double y = -static_cast<double>(windows[w].last - i + 1) / width;
      s.raw += p.a_tp * nabScaledSigmoid(y) / max_tp;
      ++s.detected;
    } else {
      ++s.false_positives;
      if (prev < 0) {
        s.raw -= p.a_fp;
      } else {
        const NabWindow& pw = windows[static_cast<size_t>(prev)];
        const double width = static_cast<double>(pw.last - pw.first + 1);
        const double y = static_cast<double>(i - pw.last) / std::max(1.0, width - 1.0);
        s.raw += p.a_fp * nabScaledSigmoid(y);
      }
    }
  }
  s.raw -= p.a_fn * static_cast<double>(windows.size() - s.detected);
  return s;
}

void PointCounts::add(bool label, bool alarm) {
  if (label)
    ++(alarm ? tp : fn);
  else
    ++(alarm ? fp : tn);
}

PointCounts& PointCounts::operator+=(const PointCounts& o) {
  tp += o.tp;
  fp += o.fp;
  fn += o.fn;
  tn += o.tn;
  return *this;
}

namespace {
double ratio(uint64_t a, uint64_t b) {
  return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}
}  // namespace

double PointCounts::precision() const { return ratio(tp, tp + fp); }
double PointCounts::recall() const { return ratio(tp, tp + fn); }
double PointCounts::f1() const {
  const double p = precision(), r = recall();
  return p + r > 0.0 ? 2.0 * p * r / (p + r) : 0.0;
}
double PointCounts::falseAlarmRate() const { return ratio(fp, fp + tn); }
double PointCounts::missedAlarmRate() const { return ratio(fn, fn + tp); }

}  // namespace outpost::detect

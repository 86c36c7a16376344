#pragma once

// Scoring a detector's own alarms against labels (no threshold sweep), written from the published
// definitions:
//
// NAB (Lavin & Ahmad 2015, "Evaluating real-time anomaly detection algorithms - the Numenta
// Anomaly Benchmark", and its reference code): each labelled anomaly has a window; in a window
// only the earliest detection counts, scored A_TP * sigma(y) / sigma(-1) with the scaled sigmoid
// sigma(y) = 2 / (1 + e^{5y}) - 1 and y = -(right - i + 1) / width its relative position (-1 at the
// window's first row: a detection there scores exactly A_TP); other detections in a window count
// nothing. A detection outside every window is a false positive scored A_FP * sigma(y) with y =
// (i - right of the preceding window) / (width of that window - 1), i.e. close behind a window it
// costs little, far behind it up to -A_FP (sigma(y) = -1 for y > 3), and -A_FP before the first
// window. Every window without a detection costs -A_FN. Profiles (A_TP, A_FP, A_FN): standard
// (1, 0.11, 1), reward_low_FP_rate (1, 0.22, 1), reward_low_FN_rate (1, 0.11, 2). Normalised
// over a corpus: 100 * (raw - null) / (perfect - null), null = no detection at all (-A_FN per
// window), perfect = one detection at the start of every window (A_TP per window).
//
// Point-wise: every row is labelled anomalous or not and alarmed or not; precision, recall, F1,
// false-alarm rate FP / (FP + TN) and missed-alarm rate FN / (FN + TP) (SKAB's FAR and MAR).

#include <cstddef>
#include <cstdint>
#include <vector>

namespace outpost::detect {

struct NabProfile {
  const char* name;
  double a_tp, a_fp, a_fn;
};
inline constexpr NabProfile kNabStandard{"standard", 1.0, 0.11, 1.0};
inline constexpr NabProfile kNabLowFp{"reward_low_FP_rate", 1.0, 0.22, 1.0};
inline constexpr NabProfile kNabLowFn{"reward_low_FN_rate", 1.0, 0.11, 2.0};

// Rows [first, last] (inclusive).
struct NabWindow {
  size_t first = 0;
  size_t last = 0;
};

// Windows to the right of labelled changepoints (SKAB's convention): for every row i with
// `changepoint[i]`, rows i .. the last row with ts <= ts[i] + window_ms, cut short before the next
// changepoint's row so windows never overlap. `ts` non-decreasing, same length as `changepoint`.
std::vector<NabWindow> windowsRightOf(const std::vector<int64_t>& ts,
                                      const std::vector<uint8_t>& changepoint, int64_t window_ms);

struct NabScore {
  double raw = 0.0;      // this file's score under the profile
  double null = 0.0;     // the score of no detection
  double perfect = 0.0;  // the score of a perfect detector
  size_t windows = 0;
  size_t detected = 0;   // windows with a detection
  size_t false_positives = 0;
  NabScore& operator+=(const NabScore& o);
  // 100 * (raw - null) / (perfect - null); 0 without windows.
  double normalised() const;
};

// Scores the detections (1 = the detector raised an alarm at this row) of one file of `rows`
// rows. Windows sorted and disjoint (windowsRightOf).
NabScore nabScore(const std::vector<NabWindow>& windows, const std::vector<uint8_t>& detections,
                  const NabProfile& profile);

// NAB's scaled sigmoid: -1 for y > 3, else 2 / (1 + e^{5y}) - 1.
double nabScaledSigmoid(double y);

struct PointCounts {
  uint64_t tp = 0, fp = 0, fn = 0, tn = 0;
  void add(bool label, bool alarm);
  PointCounts& operator+=(const PointCounts& o);
  double precision() const;
  double recall() const;
  double f1() const;
  double falseAlarmRate() const;   // FP / (FP + TN)
  double missedAlarmRate() const;  // FN / (FN + TP)
};

}  // namespace outpost::detect

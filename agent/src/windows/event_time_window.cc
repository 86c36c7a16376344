#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "outpost/agent/window.h"

namespace outpost::agent {

EventTimeWindow::EventTimeWindow(const WindowSpec& spec, uint16_t sensor)
    : spec_(spec), sensor_(sensor) {
  if (spec_.hop_us <= 0 || spec_.size_us <= 0 || spec_.size_us % spec_.hop_us != 0 ||
      spec_.lateness_us < 0) {
    throw std::invalid_argument("window: size must be a positive multiple of hop");
  }
  panes_per_window_ = spec_.size_us / spec_.hop_us;
  // Panes between the oldest open window's start and the newest reading: at most
  // (size + lateness) / hop + 1 (see add()); one more for rounding.
  ring_ = (spec_.size_us + spec_.lateness_us) / spec_.hop_us + 2;
  panes_.resize(static_cast<size_t>(ring_));
}

void EventTimeWindow::merge(Pane& a, const Pane& b) {
  if (b.count == 0) return;
  if (a.count == 0) {
    a = b;
    return;
  }
  const double na = static_cast<double>(a.count);
  const double nb = static_cast<double>(b.count);
  const double n = na + nb;
  // b's mean in a's shift: shift difference first (exact for nearby shifts), then the small part.
  const double d = (b.shift - a.shift) + b.mean - a.mean;
  a.mean += d * (nb / n);
  a.m2 += b.m2 + d * d * (na * nb / n);
  a.count += b.count;
  a.min = std::min(a.min, b.min);
  a.max = std::max(a.max, b.max);
  if (b.first_ts < a.first_ts) {
    a.first = b.first;
    a.first_ts = b.first_ts;
  }
  if (b.last_ts >= a.last_ts) {
    a.last = b.last;
    a.last_ts = b.last_ts;
  }
}

void EventTimeWindow::emitWindow(std::vector<wire::WindowStat>& out) {
  Pane acc;
  const int64_t first_pane = floorDiv(next_start_, spec_.hop_us);
  for (int64_t i = 0; i < panes_per_window_; ++i) merge(acc, paneAt(first_pane + i));
  if (acc.count > 0) {
    const double n = static_cast<double>(acc.count);
    out.emplace_back(next_start_, next_start_ + spec_.size_us, acc.min, acc.max,
                     acc.shift + acc.mean, std::sqrt(std::max(0.0, acc.m2 / n)), acc.first,
                     acc.last, static_cast<uint32_t>(std::min<uint64_t>(acc.count, UINT32_MAX)),
                     sensor_);
    ++emitted_;
  }
  // The oldest pane of this window belongs to no later window: release it.
  Pane& oldest = paneAt(first_pane);
  if (&oldest == cached_pane_) cached_pane_ = nullptr;
  if (oldest.count > 0) --non_empty_panes_;
  oldest = Pane{};
  next_start_ += spec_.hop_us;
}

void EventTimeWindow::emitReady(int64_t watermark, std::vector<wire::WindowStat>& out) {
  while (next_start_ + spec_.size_us <= watermark) {
    if (non_empty_panes_ == 0) {
      // Nothing held: skip the empty windows in one step (a gap of a year costs nothing).
      next_start_ = (floorDiv(watermark - spec_.size_us, spec_.hop_us) + 1) * spec_.hop_us;
      break;
    }
    emitWindow(out);
  }
}

bool EventTimeWindow::add(int64_t ts, double value, std::vector<wire::WindowStat>& out) {
  if (!started_) {
    started_ = true;
    // The first window that contains ts: the smallest multiple of hop above ts - size.
    next_start_ = (floorDiv(ts - spec_.size_us, spec_.hop_us) + 1) * spec_.hop_us;
    max_ts_ = ts;
  }
  // Some window containing ts was emitted already (its earliest window starts before next_start_).
  if (ts < next_start_ + spec_.size_us - spec_.hop_us) {
    ++late_;
    return false;
  }
  if (ts > max_ts_) {
    max_ts_ = ts;
    emitReady(max_ts_ - spec_.lateness_us, out);
  }
  if (!cached_pane_ || ts < cached_start_ || ts - cached_start_ >= spec_.hop_us) {
    const int64_t index = floorDiv(ts, spec_.hop_us);
    cached_pane_ = &paneAt(index);
    cached_start_ = index * spec_.hop_us;
  }
  Pane& p = *cached_pane_;
  if (p.count == 0) {
    p = Pane{1, value, 0, 0, value, value, value, value, ts, ts};
    ++non_empty_panes_;
    return true;
  }
  ++p.count;
  const double x = value - p.shift;
  const double d = x - p.mean;
  p.mean += d / static_cast<double>(p.count);
  p.m2 += d * (x - p.mean);
  p.min = std::min(p.min, value);
  p.max = std::max(p.max, value);
  if (ts < p.first_ts) {
    p.first = value;
    p.first_ts = ts;
  }
  if (ts >= p.last_ts) {
    p.last = value;
    p.last_ts = ts;
  }
  return true;
}

void EventTimeWindow::closeAll(std::vector<wire::WindowStat>& out) {
  if (!started_) return;
  // Bounded: each step releases one pane; the panes held span at most ring_ hops.
  for (int64_t guard = 0; non_empty_panes_ > 0 && guard <= ring_ + panes_per_window_; ++guard) {
    emitWindow(out);
  }
}

}  // namespace outpost::agent

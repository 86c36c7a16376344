#include "outpost/aggregator/ops_hooks.h"

#include <algorithm>
#include <limits>

namespace outpost::aggregator {

int64_t oldestItemUs(const wire::Batch& batch) {
  int64_t oldest = std::numeric_limits<int64_t>::max();
  if (const auto* r = batch.readings()) {
    for (const wire::Reading* x : *r) oldest = std::min(oldest, x->ts_us());
  }
  if (const auto* w = batch.windows()) {
    for (const wire::WindowStat* x : *w) oldest = std::min(oldest, x->start_us());
  }
  return oldest == std::numeric_limits<int64_t>::max() ? 0 : oldest;
}

}  // namespace outpost::aggregator

#include "outpost/agent/outbox_sender.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

namespace outpost::agent {
namespace {
constexpr int64_t kUndeletedRetryUs = 1000000;  // retry a failed delete of acked batches after 1 s
}  // namespace

const config::EnumNames<ReadOrder>& drainOrderNames() {
  static const config::EnumNames<ReadOrder> names{{ReadOrder::kOldestFirst, "oldest_first"},
                                                  {ReadOrder::kNewestFirst, "newest_first"}};
  return names;
}

Result<ReadOrder> parseDrainOrder(const std::string& s) {
  if (auto o = drainOrderNames().find(s)) return *o;
  return fail(ErrorCode::kInvalidArgument,
              "drain order \"" + s + "\"; allowed: " + drainOrderNames().joinedNames());
}

OutboxSender::OutboxSender(Outbox& outbox, SenderOptions options, metrics::Registry& reg,
                           const Clock& clock)
    : outbox_(outbox),
      options_(options),
      clock_(clock),
      drain_(options.drain),
      active_drain_(options.drain),
      sent_(reg.counter("outpost_agent_batches_sent_total", "Batches published (first sends)")),
      resent_(reg.counter("outpost_agent_batches_resent_total",
                          "Batches published again (ack timeout or reconnect)")),
      backlog_sent_(reg.counter("outpost_agent_backlog_batches_sent_total",
                                "Batches published from the backlog (stored before the current "
                                "connection opened)")),
      acked_(reg.counter("outpost_agent_batches_acked_total",
                         "Batches acknowledged by the aggregator", {{"status", "accepted"}})),
      rejected_(reg.counter("outpost_agent_batches_acked_total",
                            "Batches acknowledged by the aggregator", {{"status", "rejected"}})),
      readings_sent_(reg.counter("outpost_agent_readings_sent_total",
                                 "Readings in published batches (first sends)")),
      readings_acked_(reg.counter("outpost_agent_readings_acked_total",
                                  "Readings in batches the aggregator accepted")),
      bad_acks_(reg.counter("outpost_agent_bad_acks_total",
                            "Ack messages that failed verification or named another epoch")),
      ack_latency_(reg.histogram("outpost_agent_ack_round_trip_seconds",
                                 "Time from publishing a batch to its acknowledgement",
                                 metrics::exponentialBuckets(0.001, 2, 16))) {
  reg.gaugeFunction("outpost_agent_batches_in_flight", "Batches sent and not yet acknowledged",
                    [this] { return static_cast<double>(inFlight()); });
}

void OutboxSender::setDrain(const DrainSettings& drain) {
  MutexLock lock(drain_mu_);
  drain_ = drain;
  drain_changed_ = true;
}

void OutboxSender::onConnected() {
  inflight_.clear();
  backlog_inflight_ = 0;
  inflight_count_.store(0);
  const auto st = outbox_.stats();
  live_from_ = st.last_seq;
  live_cursor_ = live_from_;
  backlog_after_ = 0;
  backlog_before_ = live_from_ + 1;
  backlog_done_ = st.rows == 0;
  max_sent_ = std::max(max_sent_, max_sent_now_);
  tokens_ = 0;
  tokens_at_us_ = clock_.monotonicUs();
  if (st.rows > 0) {
    spdlog::info("uplink: {} batches ({} bytes) in the backlog; draining {} at {}", st.rows,
                 st.bytes,
                 active_drain_.order == ReadOrder::kOldestFirst ? "oldest first" : "newest first",
                 active_drain_.rate_readings_per_s > 0
                     ? std::to_string(static_cast<uint64_t>(active_drain_.rate_readings_per_s)) +
                           " readings/s"
                     : std::string("full speed"));
  }
}

bool OutboxSender::sendOne(const StoredBatch& b, const PublishFn& publish, int64_t now, bool live) {
  if (!publish(b)) return false;
  if (b.seq <= max_sent_) {
    resent_.inc();
  } else {
    sent_.inc();
    readings_sent_.inc(b.readings);
  }
  if (!live) backlog_sent_.inc();
  max_sent_now_ = std::max(max_sent_now_, b.seq);
  inflight_[b.seq] = {now, b.readings, live};
  if (!live) ++backlog_inflight_;
  return true;
}

bool OutboxSender::sendBacklog(const PublishFn& publish, int64_t now, size_t room) {
  const double rate = active_drain_.rate_readings_per_s;
  if (rate > 0) {
    tokens_ = std::min(tokens_ + rate * static_cast<double>(now - tokens_at_us_) / 1e6,
                       std::max(rate, 1.0));  // bursts of at most one second's worth
  }
  tokens_at_us_ = now;
  while (room > 0 && !backlog_done_) {
    if (rate > 0 && tokens_ <= 0) {
      next_due_us_ = std::min(next_due_us_, now + static_cast<int64_t>(-tokens_ / rate * 1e6) + 1);
      return true;
    }
    const size_t page = rate > 0 ? 1 : room;
    auto batches =
        active_drain_.order == ReadOrder::kOldestFirst
            ? outbox_.readRange(backlog_after_, live_from_ + 1, page, ReadOrder::kOldestFirst)
            : outbox_.readRange(0, backlog_before_, page, ReadOrder::kNewestFirst);
    if (!batches) {
      spdlog::error("outbox read failed: {}", batches.error().toString());
      return true;
    }
    if (batches->empty()) {
      backlog_done_ = true;
      spdlog::info("uplink: backlog sent");
      break;
    }
    for (const auto& b : *batches) {
      if (active_drain_.order == ReadOrder::kOldestFirst)
        backlog_after_ = b.seq;
      else
        backlog_before_ = b.seq;
      if (inflight_.contains(b.seq)) continue;  // drain order changed while it was in flight
      if (!sendOne(b, publish, now, false)) return false;
      if (rate > 0) tokens_ -= static_cast<double>(b.readings);
      --room;
    }
  }
  return true;
}

bool OutboxSender::pump(const PublishFn& publish) {
  const int64_t now = clock_.monotonicUs();
  next_due_us_ = INT64_MAX;
  {
    MutexLock lock(drain_mu_);
    if (drain_changed_) {
      drain_changed_ = false;
      if (drain_.order != active_drain_.order) {
        backlog_after_ = 0;  // walk the (remaining) backlog again in the new order
        backlog_before_ = live_from_ + 1;
        backlog_done_ = false;
      }
      active_drain_ = drain_;
    }
  }

  // 0. Acknowledged batches whose delete failed: delete them again, once a second.
  if (!undeleted_.empty()) {
    if (now >= undeleted_retry_us_) {
      if (auto st = outbox_.ackMany(undeleted_); st) {
        spdlog::info("outbox: deleted {} acknowledged batches after an earlier failure",
                     undeleted_.size());
        undeleted_.clear();
      } else {
        undeleted_retry_us_ = now + kUndeletedRetryUs;
      }
    }
    if (!undeleted_.empty()) next_due_us_ = std::min(next_due_us_, undeleted_retry_us_);
  }

  // 1. Batches not acknowledged in time go again (or are forgotten if no longer stored).
  const int64_t timeout_us = options_.ack_timeout_ms * 1000;
  for (auto it = inflight_.begin(); it != inflight_.end();) {
    auto& [seq, f] = *it;
    if (now - f.sent_us < timeout_us) {
      next_due_us_ = std::min(next_due_us_, f.sent_us + timeout_us);
      ++it;
      continue;
    }
    auto batches = outbox_.readRange(seq - 1, seq + 1, 1, ReadOrder::kOldestFirst);
    if (batches && batches->empty()) {  // evicted or expired meanwhile
      if (!f.live) --backlog_inflight_;
      it = inflight_.erase(it);
      continue;
    }
    if (batches) {
      if (!publish(batches->front())) return false;
      resent_.inc();
      f.sent_us = now;
      next_due_us_ = std::min(next_due_us_, now + timeout_us);
    }
    ++it;
  }

  // 2. Live batches first.
  while (inflight_.size() < options_.max_inflight) {
    auto batches = outbox_.readRange(
        live_cursor_, INT64_MAX, options_.max_inflight - inflight_.size(), ReadOrder::kOldestFirst);
    if (!batches) {
      spdlog::error("outbox read failed: {}", batches.error().toString());
      break;
    }
    if (batches->empty()) break;
    for (const auto& b : *batches) {
      live_cursor_ = b.seq;
      if (!sendOne(b, publish, now, true)) return false;
    }
  }

  // 3. Backlog in what is left of the window, keeping a quarter of it free for live batches.
  const size_t reserve = std::max<size_t>(1, options_.max_inflight / 4);
  const size_t backlog_cap = options_.max_inflight > reserve ? options_.max_inflight - reserve : 1;
  const size_t room =
      std::min(options_.max_inflight - std::min(options_.max_inflight, inflight_.size()),
               backlog_cap - std::min(backlog_cap, backlog_inflight_));
  if (!backlog_done_ && room > 0 && !sendBacklog(publish, now, room)) return false;
  inflight_count_.store(inflight_.size());
  return true;
}

void OutboxSender::onAcks(std::span<const AckEvent> acks) {
  if (acks.empty()) return;
  const int64_t now = clock_.monotonicUs();
  ack_scratch_.clear();
  for (const auto& ev : acks) {
    if (ev.epoch != outbox_.epoch()) {
      bad_acks_.inc();
      continue;
    }
    auto it = inflight_.find(ev.seq);
    if (it != inflight_.end()) {
      ack_latency_.observe(static_cast<double>(now - it->second.sent_us) / 1e6);
      if (ev.accepted) readings_acked_.inc(it->second.readings);
      if (!it->second.live) --backlog_inflight_;
      inflight_.erase(it);
    }
    ack_scratch_.push_back(ev.seq);
    if (ev.accepted) {
      acked_.inc();
    } else {
      rejected_.inc();
      spdlog::warn("aggregator rejected batch {} (now on its dead-letter topic): {}", ev.seq,
                   ev.reason);
    }
  }
  if (auto st = outbox_.ackMany(ack_scratch_); !st) {
    spdlog::error("outbox: cannot delete {} acknowledged batches (retrying every second): {}",
                  ack_scratch_.size(), st.error().toString());
    undeleted_.insert(undeleted_.end(), ack_scratch_.begin(), ack_scratch_.end());
    undeleted_retry_us_ = now + kUndeletedRetryUs;
    next_due_us_ = std::min(next_due_us_, undeleted_retry_us_);
  }
  inflight_count_.store(inflight_.size());
}

}  // namespace outpost::agent

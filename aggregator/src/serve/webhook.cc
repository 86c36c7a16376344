#include "outpost/aggregator/webhook.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "outpost/common/http_server.h"
#include "outpost/common/thread_name.h"

namespace outpost::aggregator {
namespace {

int64_t wallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<std::unique_ptr<Webhook>> Webhook::create(const WebhookOptions& options,
                                                 metrics::Registry& registry) {
  const std::string& url = options.url;
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0) {
    return fail(ErrorCode::kInvalidArgument,
                "alerts.webhook_url '" + url +
                    "' must start with http:// (https is not supported "
                    "by this build; use a local TLS relay)");
  }
  const size_t slash = url.find('/', scheme.size());
  const std::string authority = url.substr(scheme.size(), slash - scheme.size());
  if (authority.empty() || authority.find_first_of(" @") != std::string::npos) {
    return fail(ErrorCode::kInvalidArgument,
                "alerts.webhook_url '" + url + "' has no valid host[:port]");
  }
  std::string host;
  int port = 0;
  if (authority.find(':') != std::string::npos && !splitHostPort(authority, host, port)) {
    return fail(ErrorCode::kInvalidArgument, "alerts.webhook_url '" + url + "' has a bad port");
  }
  std::unique_ptr<Webhook> w(new Webhook(options, registry));
  w->host_ = scheme + authority;
  w->path_ = slash == std::string::npos ? "/" : url.substr(slash);
  Webhook* raw = w.get();
  w->thread_ = std::thread([raw] {
    setThreadName("op-webhook");
    raw->run();
  });
  return w;
}

Webhook::Webhook(WebhookOptions options, metrics::Registry& registry)
    : opt_(std::move(options)),
      tokens_(opt_.burst),
      refilled_(std::chrono::steady_clock::now()),
      sent_(registry.counter("outpost_aggregator_webhook_events_total",
                             "Alert events by outcome at the webhook", {{"result", "sent"}})),
      failed_(registry.counter("outpost_aggregator_webhook_events_total",
                               "Alert events by outcome at the webhook", {{"result", "failed"}})),
      suppressed_(registry.counter("outpost_aggregator_webhook_events_total",
                                   "Alert events by outcome at the webhook",
                                   {{"result", "rate_limited"}})),
      dropped_(registry.counter("outpost_aggregator_webhook_events_total",
                                "Alert events by outcome at the webhook",
                                {{"result", "queue_full"}})),
      attempts_(registry.counter("outpost_aggregator_webhook_attempts_total",
                                 "HTTP POST attempts to the webhook (retries included)")) {}

Webhook::~Webhook() { stop(); }

bool Webhook::takeToken() {
  const auto now = std::chrono::steady_clock::now();
  const double secs = std::chrono::duration<double>(now - refilled_).count();
  refilled_ = now;
  tokens_ = std::min<double>(opt_.burst, tokens_ + secs * opt_.rate_per_minute / 60.0);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

bool Webhook::post(std::string json) {
  MutexLock lock(mu_);
  if (stopping_) return false;
  if (!takeToken()) {
    if (pending_suppressed_++ == 0) suppressed_since_us_ = wallUs();
    suppressed_.inc();
    return false;
  }
  if (queue_.size() >= opt_.queue_capacity) {
    dropped_.inc();
    tokens_ += 1.0;  // not sent: give the token back
    return false;
  }
  queue_.push_back(std::move(json));
  cv_.notify_one();
  return true;
}

void Webhook::stop() {
  {
    MutexLock lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  MutexLock lock(mu_);
  failed_.inc(queue_.size());
  queue_.clear();
}

Webhook::Stats Webhook::stats() const {
  return {sent_.value(), failed_.value(), suppressed_.value(), dropped_.value(), attempts_.value()};
}

void Webhook::run() {
  for (;;) {
    std::string body;
    {
      MutexLock lock(mu_);
      // Wake at least every second: a rate-limited burst owes a summary once a token is back.
      cv_.wait_for(lock, std::chrono::seconds(1),
                   [&]() REQUIRES(mu_) { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      if (pending_suppressed_ > 0 && takeToken()) {
        body = "{\"type\":\"alerts_suppressed\",\"count\":" + std::to_string(pending_suppressed_) +
               ",\"since_us\":" + std::to_string(suppressed_since_us_) +
               ",\"until_us\":" + std::to_string(wallUs()) + "}";
        pending_suppressed_ = 0;
      } else if (!queue_.empty()) {
        body = std::move(queue_.front());
        queue_.pop_front();
      } else {
        continue;
      }
    }
    if (deliver(body))
      sent_.inc();
    else
      failed_.inc();
  }
}

bool Webhook::deliver(const std::string& body) {
  static thread_local std::mt19937 jitter(std::random_device{}());
  httplib::Client cli(host_);
  const auto timeout = std::chrono::milliseconds(opt_.timeout_ms);
  cli.set_connection_timeout(timeout);
  cli.set_read_timeout(timeout);
  cli.set_write_timeout(timeout);
  int64_t backoff_ms = opt_.backoff_min_ms;
  for (int attempt = 1;; ++attempt) {
    attempts_.inc();
    auto res = cli.Post(path_, body, "application/json");
    std::string why;
    if (res && res->status >= 200 && res->status < 300) return true;
    if (res) {
      why = "HTTP " + std::to_string(res->status);
      if (res->status >= 400 && res->status < 500 && res->status != 429) {
        spdlog::warn("webhook {}{}: {} (not retried)", host_, path_, why);
        return false;
      }
    } else {
      why = httplib::to_string(res.error());
    }
    if (attempt >= opt_.max_attempts) {
      spdlog::warn("webhook {}{}: {} after {} attempts; event dropped", host_, path_, why, attempt);
      return false;
    }
    std::uniform_int_distribution<int64_t> j(0, backoff_ms / 4);
    const auto until =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(backoff_ms + j(jitter));
    {
      MutexLock lock(mu_);
      if (cv_.wait_until(lock, until, [&]() REQUIRES(mu_) { return stopping_; })) return false;
    }
    backoff_ms = std::min<int64_t>(backoff_ms * 2, opt_.backoff_max_ms);
  }
}

}  // namespace outpost::aggregator

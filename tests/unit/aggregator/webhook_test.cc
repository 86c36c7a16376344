// The alert webhook against a real local HTTP receiver (cpp-httplib on a free loopback port).
// Timing: only lower bounds are asserted (a sleep can only get longer on a busy machine), and
// every wait is bounded.

#include "outpost/aggregator/webhook.h"

#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "outpost/aggregator/ops.h"
#include "outpost/common/clock.h"

using namespace outpost;
using namespace outpost::aggregator;
using Steady = std::chrono::steady_clock;

namespace {

// Answers each POST with the next status of `script` (then 200), recording bodies and times.
class Receiver {
 public:
  explicit Receiver(std::vector<int> script = {}) : script_(std::move(script)) {
    server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      const size_t i = calls_.size();
      calls_.push_back({Steady::now(), req.body, req.get_header_value("Content-Type")});
      res.status = i < script_.size() ? script_[i] : 200;
      res.set_content("{}", "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the listen loop runs would be lost (and the join would hang).
    const auto end = Steady::now() + std::chrono::seconds(10);
    while (!server_.is_running() && Steady::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(server_.is_running());
  }
  ~Receiver() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  struct Call {
    Steady::time_point at;
    std::string body;
    std::string content_type;
  };
  std::vector<Call> calls() {
    std::lock_guard lock(mu_);
    return calls_;
  }
  // Waits (at most 10 s) until at least n calls arrived.
  std::vector<Call> waitFor(size_t n) {
    const auto end = Steady::now() + std::chrono::seconds(10);
    while (Steady::now() < end) {
      if (calls().size() >= n) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return calls();
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::vector<int> script_;
  std::vector<Call> calls_;
};

WebhookOptions fast(const std::string& url) {
  WebhookOptions o;
  o.url = url;
  o.backoff_min_ms = 40;
  o.backoff_max_ms = 1000;
  o.timeout_ms = 2000;
  o.rate_per_minute = 6000;
  o.burst = 100;
  return o;
}

template <class F>
bool eventually(F f) {
  const auto end = Steady::now() + std::chrono::seconds(10);
  while (Steady::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return f();
}

}  // namespace

TEST_CASE("webhook retries 5xx and 429 with growing backoff, then delivers",
          "[aggregator][webhook]") {
  Receiver rx({500, 429, 503});
  metrics::Registry reg;
  auto w = Webhook::create(fast(rx.url()), reg);
  REQUIRE(w);
  REQUIRE((*w)->post(R"({"type":"test","n":1})"));
  const auto calls = rx.waitFor(4);
  REQUIRE(calls.size() == 4);
  for (const auto& c : calls) {
    CHECK(c.body == R"({"type":"test","n":1})");
    CHECK(c.content_type == "application/json");
  }
  // Backoff doubles from 40 ms: each gap is at least the nominal delay (jitter only adds).
  CHECK(calls[1].at - calls[0].at >= std::chrono::milliseconds(40));
  CHECK(calls[2].at - calls[1].at >= std::chrono::milliseconds(80));
  CHECK(calls[3].at - calls[2].at >= std::chrono::milliseconds(160));
  REQUIRE(eventually([&] { return (*w)->stats().sent == 1; }));
  CHECK((*w)->stats().attempts == 4);
  CHECK((*w)->stats().failed == 0);
}

TEST_CASE("webhook gives up after max_attempts and does not retry other 4xx",
          "[aggregator][webhook]") {
  SECTION("always 503") {
    Receiver rx({503, 503, 503});
    metrics::Registry reg;
    auto o = fast(rx.url());
    o.max_attempts = 3;
    auto w = Webhook::create(o, reg);
    REQUIRE(w);
    (*w)->post("{}");
    REQUIRE(eventually([&] { return (*w)->stats().failed == 1; }));
    CHECK(rx.calls().size() == 3);
    CHECK((*w)->stats().sent == 0);
    // The next event is sent on its own (the queue is not stuck behind the failed one).
    (*w)->post(R"({"n":2})");
    REQUIRE(eventually([&] { return (*w)->stats().sent == 1; }));
    CHECK(rx.calls().back().body == R"({"n":2})");
  }
  SECTION("400 is final") {
    Receiver rx({400});
    metrics::Registry reg;
    auto w = Webhook::create(fast(rx.url()), reg);
    REQUIRE(w);
    (*w)->post("{}");
    REQUIRE(eventually([&] { return (*w)->stats().failed == 1; }));
    CHECK(rx.calls().size() == 1);
  }
  SECTION("nobody listening: connection errors are retried, then given up") {
    metrics::Registry reg;
    int dead_port = 0;
    {
      Receiver gone;  // bind a free port, then close it
      dead_port = std::stoi(gone.url().substr(17, 5));
    }
    auto o = fast("http://127.0.0.1:" + std::to_string(dead_port) + "/hook");
    o.max_attempts = 2;
    auto w = Webhook::create(o, reg);
    REQUIRE(w);
    (*w)->post("{}");
    REQUIRE(eventually([&] { return (*w)->stats().failed == 1; }));
    CHECK((*w)->stats().attempts == 2);
  }
}

TEST_CASE("webhook rate limit: an incident does not flood the receiver", "[aggregator][webhook]") {
  Receiver rx;
  metrics::Registry reg;
  auto o = fast(rx.url());
  o.burst = 3;
  o.rate_per_minute = 60;  // one token per second after the burst
  auto w = Webhook::create(o, reg);
  REQUIRE(w);
  int accepted = 0;
  for (int i = 0; i < 50; ++i) accepted += (*w)->post("{\"n\":" + std::to_string(i) + "}");
  // The burst passes (a token or so may have refilled while posting on a slow machine).
  CHECK(accepted >= 3);
  CHECK(accepted <= 4);
  CHECK((*w)->stats().suppressed == static_cast<uint64_t>(50 - accepted));
  // Once a token is back, one summary reports what was held back.
  const auto calls = rx.waitFor(static_cast<size_t>(accepted) + 1);
  REQUIRE(calls.size() == static_cast<size_t>(accepted) + 1);
  const std::string& summary = calls.back().body;
  CHECK(summary.find(R"("type":"alerts_suppressed")") != std::string::npos);
  CHECK(summary.find("\"count\":" + std::to_string(50 - accepted) + ",") != std::string::npos);
  CHECK(reg.render().find(R"(outpost_aggregator_webhook_events_total{result="rate_limited"})") !=
        std::string::npos);
}

TEST_CASE("webhook rejects URLs it cannot serve", "[aggregator][webhook]") {
  metrics::Registry reg;
  for (const char* bad :
       {"https://example.invalid/x", "ftp://h/x", "http://", "http://h:99999/x", "hooks.local/x"}) {
    WebhookOptions o;
    o.url = bad;
    auto w = Webhook::create(o, reg);
    CHECK_FALSE(w);
    if (!w) CHECK(w.error().toString().find("alerts.webhook_url") != std::string::npos);
  }
}

TEST_CASE("ops center sends anomalies and device-offline events to the webhook and Kafka",
          "[aggregator][webhook][ops]") {
  Receiver rx;
  metrics::Registry reg;
  OpsOptions o;
  o.webhook = fast(rx.url());
  o.alert_online = true;
  std::mutex mu;
  std::vector<std::tuple<std::string, std::string, std::string>> published;
  OpsCenter ops(
      o, reg, SystemClock::instance(),
      [&](const std::string& t, const std::string& k, const std::string& v) {
        std::lock_guard lock(mu);
        published.emplace_back(t, k, v);
        return true;
      },
      [] { return std::vector<std::string>{}; });
  ops.start();

  // A synthetic anomaly through the AnomalySink interface (as the detector workers will call it).
  AnomalyEvent a;
  a.device = "dev-7";
  a.sensor = "temp";
  a.kind = "spike";
  a.value = 99.5;
  a.score = 0.97;
  a.ts_us = 1'700'000'000'000'000;
  for (int i = 0; i < 200; ++i) a.recent.emplace_back(a.ts_us - (200 - i) * 1000, i % 7);
  ops.onAnomaly(a);
  // The device goes online, then its last will arrives.
  ops.onStatus("dev-7", R"({"state":"online","version":"0.1.0","backlog_rows":0})", false);
  ops.onStatus("dev-7", R"({"state":"offline","reason":"last_will"})", false);

  const auto calls = rx.waitFor(2);
  REQUIRE(calls.size() == 2);  // anomaly + offline (a device first heard of as online is no news)
  CHECK(calls[0].body.find(
            R"({"type":"anomaly","event":{"device":"dev-7","sensor":"temp","kind":"spike")") == 0);
  CHECK(calls[1].body.find(R"("type":"device_status")") != std::string::npos);
  CHECK(calls[1].body.find(R"("state":"offline","reason":"last_will")") != std::string::npos);

  // The dashboard keeps the anomaly (bounded); counting by kind is the detection stage's
  // (outpost_aggregator_anomalies_total, anomaly_stage_test.cc), so the ops side must not count.
  const std::string anomalies = ops.anomaliesJson();
  CHECK(anomalies.find(R"("kind":"spike")") != std::string::npos);
  CHECK(reg.render().find("outpost_aggregator_anomalies_total") == std::string::npos);

  ops.stop();  // publishes what is queued
  std::lock_guard lock(mu);
  REQUIRE(published.size() == 2);
  CHECK(std::get<0>(published[0]) == "outpost.device-status");
  CHECK(std::get<1>(published[0]) == "dev-7");
  CHECK(std::get<2>(published[0]).find(R"("state":"online")") != std::string::npos);
  CHECK(std::get<2>(published[1]).find(R"("state":"offline")") != std::string::npos);
}

TEST_CASE("ops center device API pages and validates its parameters", "[aggregator][ops]") {
  metrics::Registry reg;
  OpsCenter ops({}, reg, SystemClock::instance(), {}, {});
  for (int i = 0; i < 120; ++i) ops.onStatus("d" + std::to_string(i), "online", false);
  HttpServer::Request r;
  r.params = {{"offset", "100"}, {"limit", "50"}};
  auto res = ops.devicesPage(r);
  CHECK(res.status == 200);
  CHECK(res.body.find(R"({"total":120,"offset":100,"limit":50,"items":[)") == 0);
  for (auto bad : std::vector<std::multimap<std::string, std::string>>{{{"limit", "0"}},
                                                                       {{"limit", "501"}},
                                                                       {{"offset", "-1"}},
                                                                       {{"state", "sleeping"}},
                                                                       {{"limit", "ten"}}}) {
    r.params = bad;
    CHECK(ops.devicesPage(r).status == 400);
  }
  CHECK(ops.deviceById("d5").status == 200);
  CHECK(ops.deviceById("nope").status == 404);
  ops.tick();
  CHECK(ops.snapshot().find(R"("devices":{"known":120,"online":120,"offline":0})") !=
        std::string::npos);
}

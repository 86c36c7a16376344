// The agent's evhttp-based OpsHttpServer answers /metrics, /healthz and /readyz exactly as the
// cpp-httplib HttpServer does (status, Content-Type, body), against a real loopback client.

#include "outpost/common/ops_http_server.h"

#include <httplib.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace outpost;

TEST_CASE("OpsHttpServer answers like HttpServer", "[common][http]") {
  metrics::Registry reg;
  reg.counter("outpost_test_total", "A test counter.").inc(7);
  bool healthy = true;
  std::vector<std::string> reasons;
  auto health = [&](std::string& d) {
    d = healthy ? "fine \"really\"" : "uplink \x01 stalled";
    return healthy;
  };
  auto ready = [&] { return reasons; };
  HttpServer ref(reg, health, ready);
  OpsHttpServer ops(reg, health, ready);
  REQUIRE(ref.start("127.0.0.1:0"));
  REQUIRE(ops.start("127.0.0.1:0"));
  REQUIRE(ops.port() > 0);
  httplib::Client a("127.0.0.1", ref.port());
  httplib::Client b("127.0.0.1", ops.port());
  auto same = [&](const std::string& path, int want_status) {
    auto ra = a.Get(path);
    auto rb = b.Get(path);
    REQUIRE(ra);
    REQUIRE(rb);
    CHECK(rb->status == want_status);
    CHECK(rb->status == ra->status);
    CHECK(rb->body == ra->body);
    if (want_status != 404) {
      CHECK(rb->get_header_value("Content-Type") == ra->get_header_value("Content-Type"));
    }
  };
  same("/metrics", 200);
  same("/metrics?x=1", 200);
  same("/healthz", 200);
  same("/readyz", 200);
  same("/nothing-here", 404);
  healthy = false;
  reasons = {"uplink: not connected", "outbox 99% full"};
  same("/healthz", 503);
  same("/readyz", 503);
  auto rm = b.Get("/metrics");
  REQUIRE(rm);
  CHECK(rm->body.find("outpost_test_total 7") != std::string::npos);
  // Only GET and HEAD are served (evhttp answers other methods 501 Not Implemented).
  auto post = b.Post("/metrics", "x", "text/plain");
  REQUIRE(post);
  CHECK(post->status == 501);
  ops.stop();
  ref.stop();
}

TEST_CASE("OpsHttpServer refuses a bad or busy listen address", "[common][http]") {
  metrics::Registry reg;
  OpsHttpServer first(reg, {});
  REQUIRE(first.start("127.0.0.1:0"));
  OpsHttpServer second(reg, {});
  auto st = second.start("127.0.0.1:" + std::to_string(first.port()));
  REQUIRE_FALSE(st);
  CHECK(st.error().toString().find("in use") != std::string::npos);
  OpsHttpServer bad(reg, {});
  auto st2 = bad.start("no-port");
  REQUIRE_FALSE(st2);
  CHECK(st2.error().toString().find("not host:port") != std::string::npos);
}

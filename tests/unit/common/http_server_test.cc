// The ops endpoint against a real loopback client: /healthz and /readyz JSON, routes with query
// parameters, and the bounded event stream.

#include "outpost/common/http_server.h"

#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

using namespace outpost;

TEST_CASE("readyz answers JSON with the reasons", "[common][http]") {
  metrics::Registry reg;
  std::vector<std::string> reasons;
  HttpServer http(
      reg,
      [](std::string& d) {
        d = "fine \"really\"";
        return true;
      },
      [&] { return reasons; });
  REQUIRE(http.start("127.0.0.1:0"));
  httplib::Client cli("127.0.0.1", http.port());
  auto r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "{\"ready\":true,\"reasons\":[]}\n");
  reasons = {"kafka: all brokers down", "worker 0 queue 250/256 batches"};
  r = cli.Get("/readyz");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->get_header_value("Content-Type") == "application/json");
  CHECK(r->body ==
        "{\"ready\":false,\"reasons\":[\"kafka: all brokers down\",\"worker 0 queue 250/256 "
        "batches\"]}\n");
  r = cli.Get("/healthz");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "{\"status\":\"ok\",\"detail\":\"fine \\\"really\\\"\"}\n");
  http.stop();
}

TEST_CASE("request handlers see path groups and query parameters", "[common][http]") {
  metrics::Registry reg;
  HttpServer http(reg, {});
  http.addRequestHandler(R"(/api/things/([^/]+))", [](const HttpServer::Request& r) {
    return HttpServer::Response{200, "text/plain", r.matches.at(1) + "|" + r.param("q", "none")};
  });
  REQUIRE(http.start("127.0.0.1:0"));
  httplib::Client cli("127.0.0.1", http.port());
  auto r = cli.Get("/api/things/abc?q=x%20y");
  REQUIRE(r);
  CHECK(r->body == "abc|x y");
  r = cli.Get("/api/things/abc");
  REQUIRE(r);
  CHECK(r->body == "abc|none");
  r = cli.Get("/api/things/");
  REQUIRE(r);
  CHECK(r->status == 404);
}

TEST_CASE("event stream pushes snapshots and refuses clients beyond its limit", "[common][http]") {
  metrics::Registry reg;
  HttpServer http(reg, {}, {}, /*threads=*/4);
  std::atomic<int> n{0};
  http.addEventStream(
      "/events", [&] { return "{\"n\":" + std::to_string(n++) + "}"; }, 50, 1);
  REQUIRE(http.start("127.0.0.1:0"));

  std::atomic<bool> stop{false};
  std::atomic<int> events{0};
  std::string first;
  std::thread holder([&] {
    httplib::Client cli("127.0.0.1", http.port());
    cli.Get("/events", [&](const char* data, size_t len) {
      if (events.load() == 0) first.assign(data, len);
      ++events;
      return !stop.load();
    });
  });
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (events.load() < 3 && std::chrono::steady_clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(events.load() >= 3);
  CHECK(first == "data: {\"n\":0}\n\n");
  CHECK(http.streamClients() == 1);

  // A second client while the first holds the only slot: 503, it does not wait.
  httplib::Client second("127.0.0.1", http.port());
  auto r = second.Get("/events");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->body.find("too many") != std::string::npos);

  stop = true;
  holder.join();
  const auto end2 = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (http.streamClients() != 0 && std::chrono::steady_clock::now() < end2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(http.streamClients() == 0);
  http.stop();
}

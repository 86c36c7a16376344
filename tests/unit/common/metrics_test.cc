#include "outpost/common/metrics.h"

#include <cmath>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace metrics = outpost::metrics;

namespace {

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// Checks the whole exposition against the text format 0.0.4 grammar: every line is a HELP or
// TYPE comment or a sample `name{labels} value`; each family's HELP and TYPE come once, before
// its samples; the text ends with a newline.
void requireValidExposition(const std::string& text) {
  REQUIRE_FALSE(text.empty());
  REQUIRE(text.back() == '\n');
  static const std::regex help(R"(^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$)");
  static const std::regex type(
      R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*")(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*")*\})? (NaN|[+-]Inf|[-+]?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?)$)");
  std::string current_family;
  std::vector<std::string> seen_types;
  for (const auto& line : lines(text)) {
    INFO("line: " << line);
    std::smatch m;
    if (line.rfind("# HELP ", 0) == 0) {
      CHECK(std::regex_match(line, help));
    } else if (std::regex_match(line, m, type)) {
      current_family = m[1];
      for (const auto& t : seen_types) CHECK(t != current_family);
      seen_types.push_back(current_family);
    } else {
      REQUIRE(std::regex_match(line, m, sample));
      const std::string name = m[1];
      // Samples belong to the family declared just above (histograms add suffixes).
      const bool ok = name == current_family || name == current_family + "_bucket" ||
                      name == current_family + "_sum" || name == current_family + "_count";
      CHECK(ok);
    }
  }
}

}  // namespace

TEST_CASE("counters render with HELP, TYPE and labels", "[common][metrics]") {
  metrics::Registry reg;
  auto& plain = reg.counter("outpost_batches_total", "Batches sent.");
  auto& labelled = reg.counter("outpost_rejected_total", "Rejected batches by reason.",
                               {{"reason", "bad_timestamp"}});
  auto& other = reg.counter("outpost_rejected_total", "Rejected batches by reason.",
                            {{"reason", "too_large"}});
  plain.inc();
  plain.inc(41);
  labelled.inc(3);
  CHECK(plain.value() == 42);
  CHECK(other.value() == 0);

  const std::string text = reg.render();
  requireValidExposition(text);
  CHECK(contains(text, "# HELP outpost_batches_total Batches sent.\n"));
  CHECK(contains(text, "# TYPE outpost_batches_total counter\n"));
  CHECK(contains(text, "\noutpost_batches_total 42\n"));
  CHECK(contains(text, "# TYPE outpost_rejected_total counter\n"));
  CHECK(contains(text, "outpost_rejected_total{reason=\"bad_timestamp\"} 3\n"));
  CHECK(contains(text, "outpost_rejected_total{reason=\"too_large\"} 0\n"));
}

TEST_CASE("gauges render their value, including non-finite values", "[common][metrics]") {
  metrics::Registry reg;
  auto& g = reg.gauge("outpost_outbox_bytes", "Bytes in the outbox.", {{"device", "dev-01"}});
  g.set(1024);
  g.add(512);
  g.add(-24);
  CHECK(g.value() == 1512);
  auto& neg = reg.gauge("outpost_temperature", "Temperature.");
  neg.set(-2.5);
  auto& inf = reg.gauge("outpost_inf", "Infinite.");
  inf.set(std::numeric_limits<double>::infinity());
  auto& nan = reg.gauge("outpost_nan", "Not a number.");
  nan.set(std::numeric_limits<double>::quiet_NaN());

  const std::string text = reg.render();
  requireValidExposition(text);
  CHECK(contains(text, "# TYPE outpost_outbox_bytes gauge\n"));
  CHECK(contains(text, "outpost_outbox_bytes{device=\"dev-01\"} 1512\n"));
  CHECK(contains(text, "outpost_temperature -2.5\n"));
  CHECK(contains(text, "outpost_inf +Inf\n"));
  CHECK(contains(text, "outpost_nan NaN\n"));
}

TEST_CASE("gaugeFunction is evaluated at render time", "[common][metrics]") {
  metrics::Registry reg;
  double level = 1.5;
  int calls = 0;
  reg.gaugeFunction("outpost_queue_depth", "Queue depth.", [&] {
    ++calls;
    return level;
  }, {{"queue", "uplink"}});
  CHECK(calls == 0);
  std::string text = reg.render();
  requireValidExposition(text);
  CHECK(contains(text, "# TYPE outpost_queue_depth gauge\n"));
  CHECK(contains(text, "outpost_queue_depth{queue=\"uplink\"} 1.5\n"));
  level = 7;
  text = reg.render();
  CHECK(contains(text, "outpost_queue_depth{queue=\"uplink\"} 7\n"));
  CHECK(calls == 2);

  SECTION("re-registering the same series replaces the function") {
    reg.gaugeFunction("outpost_queue_depth", "Queue depth.", [] { return 9.0; },
                      {{"queue", "uplink"}});
    text = reg.render();
    CHECK(contains(text, "outpost_queue_depth{queue=\"uplink\"} 9\n"));
    CHECK_FALSE(contains(text, "outpost_queue_depth{queue=\"uplink\"} 7\n"));
  }
}

TEST_CASE("label values escape backslash, double quote and newline", "[common][metrics]") {
  metrics::Registry reg;
  reg.counter("outpost_odd_total", "Odd labels.",
              {{"path", "C:\\dir\\file"}, {"quote", "say \"hi\""}, {"nl", "two\nlines"}})
      .inc();
  const std::string text = reg.render();
  requireValidExposition(text);
  CHECK(contains(
      text,
      "outpost_odd_total{path=\"C:\\\\dir\\\\file\",quote=\"say \\\"hi\\\"\",nl=\"two\\nlines\"} 1\n"));
  // The newline is escaped, so "lines" is on the sample's own line.
  for (const auto& line : lines(text)) CHECK(line.rfind("lines", 0) != 0);
}

TEST_CASE("histograms render cumulative buckets, +Inf, _sum and _count", "[common][metrics]") {
  metrics::Registry reg;
  auto& h = reg.histogram("outpost_batch_bytes", "Encoded batch size.", {100, 1000, 10000},
                          {{"device", "dev-01"}});
  for (double v : {50.0, 100.0, 101.0, 999.0, 5000.0, 20000.0, 30000.0}) h.observe(v);

  auto snap = h.snapshot();
  REQUIRE(snap.cumulative.size() == 4);
  CHECK(snap.cumulative[0] == 2);  // <= 100 (bounds are inclusive)
  CHECK(snap.cumulative[1] == 4);  // <= 1000
  CHECK(snap.cumulative[2] == 5);  // <= 10000
  CHECK(snap.cumulative[3] == 7);  // +Inf
  CHECK(snap.count == 7);
  CHECK(snap.sum == Approx(56250.0));

  const std::string text = reg.render();
  requireValidExposition(text);
  CHECK(contains(text, "# HELP outpost_batch_bytes Encoded batch size.\n"));
  CHECK(contains(text, "# TYPE outpost_batch_bytes histogram\n"));
  CHECK(contains(text, "outpost_batch_bytes_bucket{device=\"dev-01\",le=\"100\"} 2\n"));
  CHECK(contains(text, "outpost_batch_bytes_bucket{device=\"dev-01\",le=\"1000\"} 4\n"));
  CHECK(contains(text, "outpost_batch_bytes_bucket{device=\"dev-01\",le=\"10000\"} 5\n"));
  CHECK(contains(text, "outpost_batch_bytes_bucket{device=\"dev-01\",le=\"+Inf\"} 7\n"));
  CHECK(contains(text, "outpost_batch_bytes_sum{device=\"dev-01\"} 56250\n"));
  CHECK(contains(text, "outpost_batch_bytes_count{device=\"dev-01\"} 7\n"));

  // Buckets are non-decreasing, in order, and +Inf equals _count.
  std::vector<uint64_t> counts;
  for (const auto& line : lines(text)) {
    if (line.rfind("outpost_batch_bytes_bucket", 0) == 0) {
      counts.push_back(std::stoull(line.substr(line.rfind(' ') + 1)));
    }
  }
  REQUIRE(counts.size() == 4);
  for (size_t i = 1; i < counts.size(); ++i) CHECK(counts[i] >= counts[i - 1]);
  CHECK(counts.back() == 7);

  SECTION("without labels, le is the only label") {
    auto& bare = reg.histogram("outpost_latency_seconds", "Latency.", {0.5});
    bare.observe(0.25);
    const std::string t = reg.render();
    requireValidExposition(t);
    CHECK(contains(t, "outpost_latency_seconds_bucket{le=\"0.5\"} 1\n"));
    CHECK(contains(t, "outpost_latency_seconds_bucket{le=\"+Inf\"} 1\n"));
    CHECK(contains(t, "outpost_latency_seconds_sum 0.25\n"));
    CHECK(contains(t, "outpost_latency_seconds_count 1\n"));
  }
}

TEST_CASE("an empty histogram renders zeros", "[common][metrics]") {
  metrics::Registry reg;
  reg.histogram("outpost_empty", "Nothing yet.", {1, 2});
  const std::string text = reg.render();
  requireValidExposition(text);
  CHECK(contains(text, "outpost_empty_bucket{le=\"1\"} 0\n"));
  CHECK(contains(text, "outpost_empty_bucket{le=\"+Inf\"} 0\n"));
  CHECK(contains(text, "outpost_empty_sum 0\n"));
  CHECK(contains(text, "outpost_empty_count 0\n"));
}

TEST_CASE("exponentialBuckets", "[common][metrics]") {
  auto b = metrics::exponentialBuckets(1, 2, 5);
  CHECK(b == std::vector<double>{1, 2, 4, 8, 16});
  CHECK(metrics::exponentialBuckets(1, 2, 0).empty());
}

TEST_CASE("the same name and labels return the same metric", "[common][metrics]") {
  metrics::Registry reg;
  auto& a = reg.counter("outpost_x_total", "X.", {{"k", "v"}});
  auto& b = reg.counter("outpost_x_total", "X.", {{"k", "v"}});
  auto& c = reg.counter("outpost_x_total", "X.", {{"k", "w"}});
  CHECK(&a == &b);
  CHECK(&a != &c);

  auto& g1 = reg.gauge("outpost_g", "G.");
  auto& g2 = reg.gauge("outpost_g", "G.");
  CHECK(&g1 == &g2);

  auto& h1 = reg.histogram("outpost_h", "H.", {1}, {{"k", "v"}});
  auto& h2 = reg.histogram("outpost_h", "H.", {1}, {{"k", "v"}});
  CHECK(&h1 == &h2);

  // References stay valid while many more metrics are registered.
  for (int i = 0; i < 1000; ++i) reg.counter("outpost_many_total", "M.", {{"i", std::to_string(i)}});
  a.inc(5);
  CHECK(reg.counter("outpost_x_total", "X.", {{"k", "v"}}).value() == 5);

  // One series per name+labels in the output.
  const std::string text = reg.render();
  requireValidExposition(text);
  size_t n = 0;
  for (const auto& line : lines(text)) n += line.rfind("outpost_x_total{k=\"v\"}", 0) == 0;
  CHECK(n == 1);

  SECTION("registering one name with two types is a programming error") {
    CHECK_THROWS_AS(reg.gauge("outpost_x_total", "X."), std::logic_error);
    CHECK_THROWS_AS(reg.histogram("outpost_g", "G.", {1}), std::logic_error);
  }
}

TEST_CASE("concurrent updates from 4 threads sum exactly", "[common][metrics]") {
  metrics::Registry reg;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&reg] {
      // Each thread looks the metrics up itself: registration races too.
      auto& c = reg.counter("outpost_concurrent_total", "C.", {{"k", "v"}});
      auto& g = reg.gauge("outpost_concurrent_gauge", "G.");
      auto& h = reg.histogram("outpost_concurrent_hist", "H.", {0.5});
      for (int i = 0; i < kPerThread; ++i) {
        c.inc();
        g.add(1);
        h.observe(1);
      }
    });
  }
  // Scrapes while writers run must not crash or tear the format.
  for (int i = 0; i < 20; ++i) {
    const std::string text = reg.render();
    if (!text.empty()) requireValidExposition(text);
  }
  for (auto& t : threads) t.join();

  const uint64_t expected = uint64_t(kThreads) * kPerThread;
  CHECK(reg.counter("outpost_concurrent_total", "C.", {{"k", "v"}}).value() == expected);
  CHECK(reg.gauge("outpost_concurrent_gauge", "G.").value() == static_cast<double>(expected));
  auto snap = reg.histogram("outpost_concurrent_hist", "H.", {0.5}).snapshot();
  CHECK(snap.count == expected);
  CHECK(snap.sum == static_cast<double>(expected));
  CHECK(snap.cumulative[0] == 0);
  CHECK(snap.cumulative[1] == expected);
  CHECK(contains(reg.render(), "outpost_concurrent_total{k=\"v\"} 400000\n"));
}

TEST_CASE("Registry escapes HELP text and prints bucket bounds in shortest form", "[common][metrics]") {
  outpost::metrics::Registry reg;
  reg.counter("outpost_help_test_total", "line one\nline two with a \\ backslash").inc();
  reg.histogram("outpost_bounds_seconds", "bounds", {0.1, 0.2, 0.3}).observe(0.15);
  const std::string text = reg.render();
  CHECK(text.find("# HELP outpost_help_test_total line one\\nline two with a \\\\ backslash\n") !=
        std::string::npos);
  CHECK(text.find("outpost_bounds_seconds_bucket{le=\"0.1\"} 0\n") != std::string::npos);
  CHECK(text.find("outpost_bounds_seconds_bucket{le=\"0.2\"} 1\n") != std::string::npos);
  CHECK(text.find("outpost_bounds_seconds_bucket{le=\"0.3\"} 1\n") != std::string::npos);
}

#include "outpost/agent/stream_source.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "support/temp_dir.h"

using namespace outpost;
using namespace outpost::agent;
using namespace std::chrono_literals;

namespace {

constexpr int64_t k2024 = 1714564800LL * 1000000;

class FixedClock final : public Clock {
 public:
  int64_t nowUs() const override { return k2024 + 3600LL * 1000000; }
  int64_t monotonicUs() const override { return 0; }
};

struct VectorSink final : ReadingSink {
  std::vector<wire::Reading> got;
  void push(const wire::Reading& r) override { got.push_back(r); }
};

std::vector<SensorSpec> sensors(SourceKind kind, std::initializer_list<const char*> names) {
  std::vector<SensorSpec> out;
  for (const char* n : names) {
    SensorSpec s;
    s.id = static_cast<uint16_t>(out.size());
    s.name = n;
    s.unit = "u";
    s.source = kind;
    out.push_back(s);
  }
  return out;
}

size_t count(const LineDecoder::Counts& c, LineError e) { return c.errors[static_cast<size_t>(e)]; }

// Polls until `n` readings arrived or 10 s passed.
std::vector<wire::Reading> collect(Source& src, size_t n) {
  std::vector<wire::Reading> out;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
    const size_t before = out.size();
    src.poll(k2024, out);
    if (out.size() == before) std::this_thread::sleep_for(2ms);
  }
  return out;
}

void writeAll(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    REQUIRE(n > 0);
    off += static_cast<size_t>(n);
  }
}

}  // namespace

TEST_CASE("LineDecoder splits, parses and counts", "[agent][source][stream]") {
  SensorNames names{{"a", 0}, {"b", 1}};
  FixedClock clock;
  VectorSink sink;
  metrics::Registry reg;

  SECTION("lines split across feeds, missing timestamp = receive time, errors by reason") {
    LineDecoder dec(LineFormat::kLine, &names, 64, "test");
    dec.feed("a 1\nb 2 17145648", clock.nowUs(), sink);
    dec.feed("00\nc 3\na x\n\n# note\na 4 1999-01-01T00:00:00Z\nb 5", clock.nowUs(), sink);
    dec.finish(clock.nowUs(), sink);
    REQUIRE(sink.got.size() == 3);
    CHECK(sink.got[0].sensor() == 0);
    CHECK(sink.got[0].value() == 1);
    CHECK(sink.got[0].ts_us() == clock.nowUs());
    CHECK(sink.got[1].sensor() == 1);
    CHECK(sink.got[1].ts_us() == k2024);
    CHECK(sink.got[2].value() == 5);
    const auto& c = dec.counts();
    CHECK(c.readings == 3);
    CHECK(count(c, LineError::kUnknownSensor) == 1);
    CHECK(count(c, LineError::kBadValue) == 1);
    CHECK(count(c, LineError::kBadTimestamp) == 1);  // before 2000: the aggregator would reject it
    CHECK(count(c, LineError::kEmpty) == 2);
    CHECK(c.errorsTotal() == 3);
  }
  SECTION("a too-long line is rejected once and the stream recovers") {
    LineDecoder dec(LineFormat::kLine, &names, 16, "test");
    dec.feed("a 1\n" + std::string(40, 'x'), clock.nowUs(), sink);
    dec.feed(std::string(40, 'y') + "\na 2\n", clock.nowUs(), sink);
    dec.feed(std::string(20, 'z') + "\na 3\n", clock.nowUs(), sink);
    REQUIRE(sink.got.size() == 3);
    CHECK(sink.got[2].value() == 3);
    CHECK(count(dec.counts(), LineError::kTooLong) == 2);
    CHECK(dec.counts().lines == 5);
  }
  SECTION("error counters are exported by reason") {
    std::array<metrics::Counter*, static_cast<size_t>(LineError::kCount)> ctr{};
    ctr[static_cast<size_t>(LineError::kSyntax)] =
        &reg.counter("errs", "h", {{"reason", "syntax"}});
    LineDecoder dec(LineFormat::kCsv, &names, 64, "test", &ctr);
    dec.feed("sensor,value\na\nb,2\n", clock.nowUs(), sink);
    CHECK(ctr[static_cast<size_t>(LineError::kSyntax)]->value() == 1);
    CHECK(sink.got.size() == 1);
  }
}

TEST_CASE("StdinSource reads a pipe on its own thread", "[agent][source][stream]") {
  FixedClock clock;
  metrics::Registry reg;
  int p[2];
  REQUIRE(::pipe(p) == 0);
  SourcesSpec opt;

  SECTION("JSON lines end to end, end of input") {
    opt.stdin_format = LineFormat::kJson;
    StdinSource src(sensors(SourceKind::kStdin, {"a", "b"}), opt, clock, &reg, p[0]);
    writeAll(p[1], R"({"sensor":"a","value":1})"
                   "\n"
                   R"({"sensor":"b","value":2,"ts":1714564800})"
                   "\nnot json\n");
    ::close(p[1]);
    auto got = collect(src, 2);
    REQUIRE(got.size() == 2);
    CHECK(got[1].ts_us() == k2024);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!src.finished() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(2ms);
    }
    CHECK(src.finished());
    CHECK(count(src.counts(), LineError::kSyntax) == 1);
    CHECK(reg.render().find("outpost_agent_source_line_errors_total{source=\"stdin\","
                            "reason=\"syntax\"} 1") != std::string::npos);
  }
  SECTION("back-pressure: a tiny queue in block mode loses nothing") {
    opt.queue_chunks = 2;
    opt.chunk_readings = 4;
    opt.queue_block = true;
    StdinSource src(sensors(SourceKind::kStdin, {"a"}), opt, clock, &reg, p[0]);
    std::thread writer([&] {
      std::string text;
      for (int i = 0; i < 5000; ++i) text += "a " + std::to_string(i) + "\n";
      writeAll(p[1], text);
      ::close(p[1]);
    });
    auto got = collect(src, 5000);
    writer.join();
    REQUIRE(got.size() == 5000);
    for (int i = 0; i < 5000; ++i) REQUIRE(got[static_cast<size_t>(i)].value() == i);
    CHECK(reg.render().find("outpost_agent_source_dropped_total{source=\"stdin\"} 0") !=
          std::string::npos);
  }
  SECTION("drop mode: a full queue drops whole chunks and counts them") {
    opt.queue_chunks = 2;
    opt.chunk_readings = 4;
    opt.queue_block = false;
    StdinSource src(sensors(SourceKind::kStdin, {"a"}), opt, clock, &reg, p[0]);
    std::string text;
    for (int i = 0; i < 1000; ++i) text += "a " + std::to_string(i) + "\n";
    writeAll(p[1], text);  // nobody drains meanwhile: at most 2 chunks fit
    ::close(p[1]);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!src.finished() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(2ms);
      if (src.counts().lines == 1000) break;
    }
    std::this_thread::sleep_for(50ms);
    std::vector<wire::Reading> got;
    src.poll(k2024, got);
    src.poll(k2024, got);
    CHECK(got.size() <= 8);
    CHECK(src.counts().readings == 1000);
    const std::string m = reg.render();
    const std::string key = "outpost_agent_source_dropped_total{source=\"stdin\"} ";
    const auto pos = m.find(key);
    REQUIRE(pos != std::string::npos);
    const uint64_t dropped = std::stoull(m.substr(pos + key.size()));
    CHECK(dropped + got.size() == 1000);
  }
  ::close(p[0]);
}

TEST_CASE("SocketSource serves several clients on a Unix socket", "[agent][source][stream]") {
  FixedClock clock;
  metrics::Registry reg;
  outpost::testing::TempDir dir("outpost-sock-test");
  SourcesSpec opt;
  opt.socket_path = dir.file("in.sock");
  opt.socket_format = LineFormat::kCsv;
  opt.socket_max_clients = 2;
  auto specs = sensors(SourceKind::kSocket, {"a", "b"});
  SocketSource src(specs, opt, clock, &reg);

  auto connectClient = [&] {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, opt.socket_path.c_str());
    REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
  };
  int c1 = connectClient();
  const int c2 = connectClient();
  writeAll(c1, "sensor,value,timestamp\na,1,1714564800\na,");
  writeAll(c2, "b,10\nb,oops\n");
  writeAll(c1, "2\n");
  auto got = collect(src, 3);
  REQUIRE(got.size() == 3);
  double sum_a = 0, sum_b = 0;
  for (const auto& r : got) (r.sensor() == 0 ? sum_a : sum_b) += r.value();
  CHECK(sum_a == 3);
  CHECK(sum_b == 10);

  SECTION("a third client is refused while two are connected") {
    const int c3 = connectClient();
    char byte;
    // The server closes it: read returns 0 (EOF) rather than blocking forever.
    CHECK(::read(c3, &byte, 1) == 0);
    ::close(c3);
    CHECK(reg.render().find("outpost_agent_socket_refused_total 1") != std::string::npos);
  }
  SECTION("a closed client's last line without newline is still read") {
    writeAll(c1, "a,5");
    ::close(c1);
    c1 = -1;
    auto more = collect(src, 1);
    REQUIRE(more.size() == 1);
    CHECK(more[0].value() == 5);
  }
  if (c1 >= 0) ::close(c1);
  ::close(c2);
  src.stop();
  CHECK(count(src.counts(), LineError::kBadValue) == 1);
}

TEST_CASE("StdinSource takes new sensor names (SIGHUP) without losing its place",
          "[agent][source][stream][reload]") {
  FixedClock clock;
  metrics::Registry reg;
  int p[2];
  REQUIRE(::pipe(p) == 0);
  SourcesSpec opt;
  StdinSource src(sensors(SourceKind::kStdin, {"a", "b"}), opt, clock, &reg, p[0]);
  writeAll(p[1], "a 1\nb 2\nn 3\n");  // n is not configured yet
  auto got = collect(src, 2);
  REQUIRE(got.size() == 2);

  // Reload: a removed, b kept (id 1), n added with id 7 (ids are stable, not indexes).
  auto next = sensors(SourceKind::kStdin, {"b", "n"});
  next[0].id = 1;
  next[1].id = 7;
  src.setSensors(next);
  REQUIRE(src.sensors().size() == 2);
  CHECK(src.sensors()[1].id == 7);
  writeAll(p[1], "b 4\nn 5\na 6\n");
  ::close(p[1]);
  got = collect(src, 2);
  REQUIRE(got.size() == 2);
  CHECK(got[0].sensor() == 1);
  CHECK(got[0].value() == 4);
  CHECK(got[1].sensor() == 7);
  CHECK(got[1].value() == 5);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!src.finished() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
  }
  REQUIRE(src.finished());
  CHECK(count(src.counts(), LineError::kUnknownSensor) == 2);  // n before, a after the reload
  CHECK(src.counts().lines == 6);
  ::close(p[0]);
}

#include "outpost/common/detect/backtest.h"

#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using namespace outpost::detect;

TEST_CASE("timestamp formats", "[common][detect][backtest]") {
  const int64_t want = 1714571100000;  // 2024-05-01T13:45:00Z
  CHECK(parseTimestampMs("2024-05-01 13:45:00").value() == want);
  CHECK(parseTimestampMs("2024-05-01T13:45:00Z").value() == want);
  CHECK(parseTimestampMs("2024-05-01T15:45:00+02:00").value() == want);
  CHECK(parseTimestampMs("2024-05-01T08:45:00-0500").value() == want);
  CHECK(parseTimestampMs("2024-05-01 13:45").value() == want);
  CHECK(parseTimestampMs("2024-05-01T13:45:00.250Z").value() == want + 250);
  CHECK(parseTimestampMs("\"2024-05-01 13:45:00\"").value() == want);
  CHECK(parseTimestampMs("1714571100").value() == want);
  CHECK(parseTimestampMs("1714571100.5").value() == want + 500);
  CHECK(parseTimestampMs("1714571100000").value() == want);
  CHECK(parseTimestampMs("2024-05-01").value() == 1714521600000);
  CHECK(parseTimestampMs("1970-01-01T00:00:00Z").value() == 0);
  CHECK(parseTimestampMs("2000-02-29 00:00:00").value() == 951782400000);
  for (const char* bad : {"", "hello", "2024-13-01 00:00:00", "2024-05-01X13:45", "12:30",
                          "2024-05-01 25:00:00", "2024-05-01T13:45:00Q"})
    CHECK_FALSE(parseTimestampMs(bad).has_value());
}

TEST_CASE("backtestCsv writes one row per input row", "[common][detect][backtest]") {
  DetectorConfig cfg;
  std::ostringstream csv;
  csv << "sensor,value,timestamp,unit\n";
  // Issue 13: calibrated scores need a history (warmup_samples = 200): the spike comes after it.
  for (int i = 0; i < 400; ++i) {
    const double v = 10.0 + ((i * 7919) % 13) * 0.1 + (i == 350 ? 50.0 : 0.0);
    csv << "s1," << v << ',' << 1714571100 + i * 60 << ",C\n";
  }
  csv << "s1,oops,1714595100,C\n";
  std::istringstream in(csv.str());
  std::ostringstream out;
  auto st = backtestCsv(in, out, cfg);
  REQUIRE(st.has_value());
  CHECK(st->rows == 401);
  CHECK(st->bad_rows == 1);
  CHECK(st->alarms == 1);
  std::istringstream lines(out.str());
  std::vector<std::string> rows;
  for (std::string l; std::getline(lines, l);) rows.push_back(l);
  REQUIRE(rows.size() == 402);
  CHECK(rows[0] == "timestamp,value,anomaly_score,alarm,kind");
  CHECK(rows[351].find(",1,spike") != std::string::npos);
  CHECK(rows[1].rfind("1714571100,10,", 0) == 0);

  SECTION("no header: timestamp then value; ISO timestamps") {
    std::istringstream in2("2024-05-01T13:45:00Z,1.5\n2024-05-01T13:46:00Z,1.6\n");
    std::ostringstream out2;
    auto st2 = backtestCsv(in2, out2, cfg);
    REQUIRE(st2.has_value());
    CHECK(st2->rows == 2);
  }
  SECTION("errors") {
    std::istringstream empty("");
    std::ostringstream o;
    CHECK_FALSE(backtestCsv(empty, o, cfg).has_value());
    std::istringstream nocol("a,b\n1,2\n");
    auto e = backtestCsv(nocol, o, cfg);
    REQUIRE_FALSE(e.has_value());
    CHECK(e.error().message().find("timestamp") != std::string::npos);
  }
}

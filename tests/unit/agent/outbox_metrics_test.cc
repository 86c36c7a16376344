// The outbox's /metrics series (outbox_metrics.h).
#include "outpost/agent/outbox_metrics.h"

#include <catch2/catch.hpp>

#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "support/temp_dir.h"

using namespace outpost;
using namespace outpost::agent;

TEST_CASE("Outbox metrics follow Prometheus conventions", "[agent][metrics]") {
  testing::TempDir dir("outpost-metrics-test");
  OutboxOptions o;
  o.path = dir.file("o.db");
  auto box = std::move(*Outbox::open(o, SystemClock::instance()));
  metrics::Registry reg;
  registerOutboxMetrics(reg, *box, SystemClock::instance());
  box->addDropped(7);
  const std::string text = reg.render();
  CHECK(text.find("# TYPE outpost_agent_readings_dropped_total counter") != std::string::npos);
  CHECK(text.find("outpost_agent_readings_dropped_total{reason=\"upstream\"} 7") !=
        std::string::npos);
  CHECK(text.find("outpost_agent_readings_dropped_total{reason=\"outbox_full\"} 0") !=
        std::string::npos);
  CHECK(text.find("outpost_agent_outbox_oldest_age_seconds 0") != std::string::npos);
  CHECK(text.find("outpost_agent_outbox_bytes 0") != std::string::npos);
}

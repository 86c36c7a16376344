// The agent as a whole: readiness (/readyz) after SIGHUP reload.
#include "outpost/agent/agent.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "outpost/agent/agent_config.h"
#include "outpost/agent/config_reload.h"
#include "outpost/agent/outbox.h"
#include "outpost/agent/uplink.h"
#include "outpost/common/clock.h"
#include "outpost/common/codec.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"
#include "support/temp_dir.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

config::Config load(const std::string& dir, uint64_t max_bytes) {
  // The uplink is never started: no connection is attempted.
  const std::string toml = "device_id = \"dev-1\"\n[outbox]\npath = \"" + dir +
                           "/outbox.db\"\nmax_bytes = " + std::to_string(max_bytes) + "\n" +
                           "[uplink.mqtt]\nbroker = \"tcp://127.0.0.1:1\"\n" +
                           "[[sensors]]\nname = \"a\"\n";
  return config::parseToml(toml, agentSchema(), "test.toml");
}

class NullUplink final : public Uplink {
 public:
  void start() override {}
  void notify() override {}
  void stop() override {}
  bool connected() const override { return false; }
  size_t inFlight() const override { return 0; }
  void setDrain(const DrainSettings&) override {}
};

bool mentions(const std::vector<std::string>& reasons, const std::string& what) {
  for (const auto& r : reasons) {
    if (r.find(what) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

// Regression: /readyz compared the outbox with outbox.max_bytes of the start-up config, so after
// a SIGHUP that lowered the limit the agent still reported the old one (and stayed "ready").
TEST_CASE("Readiness uses the outbox limit in effect after a reload", "[agent][readyz][reload]") {
  testing::TempDir dir("outpost-agent-readyz-test");
  const config::Config started = load(dir.path().string(), 1048576);
  metrics::Registry reg;
  Agent agent(started, reg, SystemClock::instance());

  // About 92% of 65536 bytes of payload in the outbox: far below the start-up limit.
  for (int i = 0; i < 200 && agent.outbox().stats().bytes < 60300; ++i) {
    codec::BatchContent b;
    b.device_id = "dev-1";
    b.created_us = SystemClock::instance().nowUs();
    b.sensors = {{1, "a", ""}};
    for (int k = 0; k < 50; ++k) {
      b.readings.emplace_back(b.created_us + k, static_cast<double>(k), 1, wire::Quality::Good);
    }
    REQUIRE(agent.outbox().append(b).has_value());
  }
  const uint64_t stored = agent.outbox().stats().bytes;
  REQUIRE(stored >= 60300);
  REQUIRE(stored < 65536);

  auto reasons = agent.notReadyReasons();
  CHECK(mentions(reasons, "mqtt: not connected to the broker"));
  CHECK_FALSE(mentions(reasons, "outbox:"));

  // What SIGHUP does with a lower outbox.max_bytes (Agent::reload → applyReload).
  const config::Config next = load(dir.path().string(), 65536);
  NullUplink uplink;
  applyReload(agentSchema(), started, started, next, agent.outbox(), uplink);
  reasons = agent.notReadyReasons();
  CHECK(mentions(reasons, "outbox: " + std::to_string(stored) + " of 65536 bytes used"));
}

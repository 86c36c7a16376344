// SIGHUP reload: which settings changed, which apply live, which need a restart.
#include "outpost/agent/config_reload.h"

#include <catch2/catch.hpp>
#include <memory>

#include "outpost/agent/agent_config.h"
#include "outpost/agent/outbox.h"
#include "outpost/common/clock.h"
#include "outpost/common/config.h"
#include "outpost/common/metrics.h"
#include "support/temp_dir.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

config::Config load(const std::string& extra) {
  const std::string toml = "device_id = \"dev-1\"\n" + extra + "\n[[sensors]]\nname = \"a\"\n";
  return config::parseToml(toml, agentSchema(), "test.toml");
}

class RecordingUplink final : public Uplink {
 public:
  void start() override {}
  void notify() override {}
  void stop() override {}
  bool connected() const override { return false; }
  size_t inFlight() const override { return 0; }
  void setDrain(const DrainSettings& d) override {
    drain = d;
    ++calls;
  }
  DrainSettings drain;
  int calls = 0;
};

}  // namespace

TEST_CASE("Reload applies outbox limits and drain settings live", "[agent][reload]") {
  testing::TempDir dir("outpost-reload-test");
  const std::string path = "\n[outbox]\npath = \"" + dir.file("o.db") + "\"\n";
  auto started = load(path);
  auto box = std::move(*Outbox::open(outboxOptionsFrom(started), SystemClock::instance()));
  RecordingUplink uplink;

  auto next = load("log_level = \"debug\"\n[outbox]\npath = \"" + dir.file("o.db") +
                   "\"\nmax_bytes = 1000000\nfull_policy = \"drop_newest\"\nmax_age_s = 3600\n"
                   "[uplink.drain]\norder = \"newest_first\"\nrate = 5000.0\n");
  auto restart = applyReload(agentSchema(), started, started, next, *box, uplink);
  CHECK(restart.empty());
  CHECK(box->limits().max_bytes == 1000000);
  CHECK(box->limits().max_age_s == 3600);
  CHECK(box->limits().full_policy == FullPolicy::kDropNewest);
  REQUIRE(uplink.calls == 1);
  CHECK(uplink.drain.order == ReadOrder::kNewestFirst);
  CHECK(uplink.drain.rate_readings_per_s == 5000.0);

  SECTION("going back to the old values applies them again") {
    applyReload(agentSchema(), started, next, started, *box, uplink);
    CHECK(box->limits().max_bytes == 256ull << 20);
    CHECK(box->limits().full_policy == FullPolicy::kDropOldest);
    CHECK(uplink.drain.order == ReadOrder::kOldestFirst);
  }
}

TEST_CASE("Reload names the settings that need a restart", "[agent][reload]") {
  testing::TempDir dir("outpost-reload-test");
  const std::string path = "[outbox]\npath = \"" + dir.file("o.db") + "\"\n";
  auto started = load(path);
  auto box = std::move(*Outbox::open(outboxOptionsFrom(started), SystemClock::instance()));
  RecordingUplink uplink;
  auto next = load("[outbox]\npath = \"" + dir.file("o.db") +
                   "\"\nsynchronous = \"normal\"\n[uplink.mqtt]\nbroker = \"tcp://10.0.0.1:1883\"\n"
                   "[batch]\nmax_readings = 100\n");
  auto restart = applyReload(agentSchema(), started, started, next, *box, uplink);
  CHECK(restart ==
        std::vector<std::string>{"batch.max_readings", "outbox.synchronous", "uplink.mqtt.broker"});
  CHECK(uplink.calls == 0);
  CHECK(box->limits().max_bytes == 256ull << 20);
  // Still named on the next reload (still not applied).
  CHECK(applyReload(agentSchema(), started, next, next, *box, uplink).size() == 3);
}

TEST_CASE("changedSettings compares sensors entry by entry", "[agent][reload]") {
  auto a = load("");
  auto b = config::parseToml("device_id = \"dev-1\"\n[[sensors]]\nname = \"a\"\nrate_hz = 5.0\n",
                             agentSchema(), "t.toml");
  CHECK(changedSettings(agentSchema(), a, a).empty());
  CHECK(changedSettings(agentSchema(), a, b) == std::vector<std::string>{"sensors"});
  CHECK(isReloadable("sensors"));  // applied by reloadInputs()
  CHECK(isReloadable("sources.mqtt.broker"));
  CHECK_FALSE(isReloadable("sources.stdin.format"));
  CHECK_FALSE(isReloadable("uplink.mqtt.broker"));
  CHECK(isReloadable("uplink.drain.rate"));
}

#include "outpost/agent/agent.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "outpost/agent/batcher.h"
#include "outpost/agent/inputs.h"
#include "outpost/agent/outbox.h"
#include "outpost/agent/sensor_pipeline.h"
#include "outpost/agent/source.h"
#include "outpost/agent/uplink_factory.h"
#include "outpost/common/signals.h"

namespace outpost::agent {

struct Agent::Batching {
  Batcher batcher;
  std::vector<wire::Reading> scratch;
  metrics::Counter& produced;
  metrics::Counter& accepted_batches;
  metrics::Counter& accepted_readings;
  metrics::Counter& append_failures;
  std::unique_ptr<SensorPipeline> pipeline;  // filters and windows per sensor
};

void validateConfig(const config::Config& cfg) {
  const std::string& id = cfg.getString("device_id");
  if (!codec::isValidDeviceId(id)) {
    throw config::ConfigError("device_id = \"" + id +
                              "\" is not allowed; allowed: 1..64 of [A-Za-z0-9._-], not starting "
                              "with '.' (set it in the file or with --device-id)");
  }
  (void)parseInputs(cfg);
  checkUplinkConfig(cfg);
}

Agent::Agent(const config::Config& cfg, metrics::Registry& registry, const Clock& clock)
    : cfg_(cfg), registry_(registry), clock_(clock), device_id_(cfg.getString("device_id")) {
  validateConfig(cfg);
  OutboxOptions oo;
  oo.path = cfg.getString("outbox.path");
  oo.max_bytes = static_cast<uint64_t>(cfg.getInt("outbox.max_bytes"));
  oo.synchronous = cfg.getString("outbox.synchronous");
  auto box = Outbox::open(oo, clock);
  if (!box) throw std::runtime_error("cannot open the outbox: " + box.error().toString());
  outbox_ = std::move(*box);

  const AgentInputs inputs = parseInputs(cfg);
  source_ = buildSources(inputs, clock, registry);
  batching_.reset(new Batching{
      Batcher(static_cast<size_t>(cfg.getInt("batch.max_readings")),
              cfg.getInt("batch.linger_ms") * 1000, source_->sensors()),
      {},
      registry.counter("outpost_agent_readings_produced_total", "Readings read from sources"),
      registry.counter("outpost_agent_batches_accepted_total",
                       "Batches committed to the outbox (accepted)"),
      registry.counter("outpost_agent_readings_accepted_total",
                       "Readings in batches committed to the outbox"),
      registry.counter("outpost_agent_outbox_append_failures_total",
                       "Batches that could not be committed (their readings count as dropped)"),
      std::make_unique<SensorPipeline>(inputs.sensors, &registry)});

  uplink_ = makeUplink(cfg, device_id_, *outbox_, registry, clock);

  Outbox* box_ptr = outbox_.get();
  registry.gaugeFunction("outpost_agent_outbox_batches", "Batches waiting in the outbox",
                         [box_ptr] { return static_cast<double>(box_ptr->stats().rows); });
  registry.gaugeFunction("outpost_agent_outbox_bytes", "Payload bytes waiting in the outbox",
                         [box_ptr] { return static_cast<double>(box_ptr->stats().bytes); });
  registry.gaugeFunction("outpost_agent_outbox_oldest_age_seconds",
                         "Age of the oldest batch waiting in the outbox", [box_ptr, &clock] {
                           const auto oldest = box_ptr->stats().oldest_created_us;
                           return oldest == 0 ? 0.0 : (clock.nowUs() - oldest) / 1e6;
                         });
  registry.gaugeFunction("outpost_agent_dropped_readings_total",
                         "Readings dropped because the outbox was full or failed (since the store "
                         "was created)",
                         [box_ptr] {
                           return static_cast<double>(box_ptr->stats().dropped_readings_total);
                         });
}

Agent::~Agent() {
  if (uplink_) uplink_->stop();
}

bool Agent::healthy(std::string& detail) const {
  const auto st = outbox_->stats();
  detail = cfg_.getString("uplink.transport") +
           (uplink_->connected() ? " connected" : " disconnected") +
           ", outbox " + std::to_string(st.rows) + " batches";
  return true;  // disconnected is a state the agent is built to survive, not a failure
}

void Agent::flush(int64_t mono_now) {
  auto& b = *batching_;
  if (b.batcher.empty()) return;
  codec::BatchContent content = b.batcher.take(device_id_, clock_.nowUs());
  const size_t n = content.readings.size();
  auto seq = outbox_->append(content);
  if (!seq) {
    b.append_failures.inc();
    spdlog::error("outbox: batch of {} readings not accepted: {}", n, seq.error().toString());
    return;
  }
  b.accepted_batches.inc();
  b.accepted_readings.inc(n);
  uplink_->notify();
}

int Agent::run(const RunLimits& limits) {
  auto& b = *batching_;
  uplink_->start();
  spdlog::info("agent {} running: {} sensors, outbox epoch {}", device_id_,
               source_->sensors().size(), outbox_->epoch());
  uint64_t produced = 0;
  bool producing = true;
  int64_t next_due_us = clock_.nowUs();
  while (!signals::stopRequested()) {
    const int64_t mono = clock_.monotonicUs();
    if (producing && clock_.nowUs() >= next_due_us) {
      b.scratch.clear();
      next_due_us = source_->poll(clock_.nowUs(), b.scratch);
      for (const auto& r : b.scratch) {
        if (limits.max_readings && produced >= limits.max_readings) {
          producing = false;
          break;
        }
        b.pipeline->process(r, mono, b.batcher);
        ++produced;
        b.produced.inc();
        if (b.batcher.full()) flush(mono);
      }
      if (limits.max_readings && produced >= limits.max_readings) {
        producing = false;
        b.pipeline->closeAll(mono, b.batcher);
        flush(mono);
        spdlog::info("produced {} readings (--max-readings); no more readings will be read",
                     produced);
      }
    }
    b.pipeline->closeIdle(mono, b.batcher);
    if (b.batcher.due(mono)) flush(mono);
    if (signals::takeReloadRequest()) {
      spdlog::warn("configuration reload (SIGHUP) is not implemented yet; restart the agent to "
                   "apply a new configuration");
    }
    if (!producing && limits.exit_when_drained && b.batcher.empty() &&
        outbox_->stats().rows == 0) {
      spdlog::info("outbox drained: every accepted batch is acknowledged; exiting");
      break;
    }
    // Sleep until the next reading or batch deadline, at most 100 ms (stop/ack latency).
    int64_t wait_us = 100000;
    if (producing) wait_us = std::min(wait_us, next_due_us - clock_.nowUs());
    if (!b.batcher.empty()) wait_us = std::min(wait_us, b.batcher.deadline() - clock_.monotonicUs());
    if (wait_us > 0) signals::waitForStop(std::chrono::milliseconds((wait_us + 999) / 1000));
  }
  b.pipeline->closeAll(clock_.monotonicUs(), b.batcher);
  flush(clock_.monotonicUs());
  uplink_->stop();
  const auto st = outbox_->stats();
  spdlog::info("agent stopped: {} readings produced, {} batches waiting in the outbox", produced,
               st.rows);
  return 0;
}

}  // namespace outpost::agent

#include "outpost/agent/agent.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "outpost/agent/agent_config.h"
#include "outpost/agent/config_reload.h"
#include "outpost/agent/batcher.h"
#include "outpost/agent/input_reload.h"
#include "outpost/agent/input_set.h"
#include "outpost/agent/inputs.h"
#include "outpost/agent/outbox.h"
#include "outpost/agent/outbox_metrics.h"
#include "outpost/agent/outbox_writer.h"
#include "outpost/agent/sensor_pipeline.h"
#include "outpost/agent/source.h"
#include "outpost/agent/uplink_factory.h"
#include "outpost/common/signals.h"

namespace outpost::agent {

struct Agent::Batching {
  Batcher batcher;
  std::vector<wire::Reading> scratch;
  metrics::Counter& produced;
  OutboxWriter writer;
  std::unique_ptr<SensorPipeline> pipeline;  // filters and windows per sensor
  SensorIds ids;                             // stable across reloads
};

void validateConfig(const config::Config& cfg) {
  const std::string id = readAgentSettings(cfg).device_id;  // also rejects invalid combinations
  if (!codec::isValidDeviceId(id)) {
    throw config::ConfigError("device_id = \"" + id +
                              "\" is not allowed; allowed: 1..64 of [A-Za-z0-9._-], not starting "
                              "with '.' (set it in the file or with --device-id)");
  }
  (void)parseInputs(cfg);
  checkUplinkConfig(cfg);
}

Agent::Agent(const config::Config& cfg, metrics::Registry& registry, const Clock& clock)
    : cfg_(cfg), registry_(registry), clock_(clock) {
  validateConfig(cfg);
  const AgentSettings settings = readAgentSettings(cfg);
  device_id_ = settings.device_id;
  transport_ = settings.transport;
  auto box = Outbox::open(settings.outbox, clock);
  if (!box) throw std::runtime_error("cannot open the outbox: " + box.error().toString());
  outbox_ = std::move(*box);

  AgentInputs inputs = parseInputs(cfg);
  SensorIds ids;
  ids.assign(inputs);
  source_ = buildInputSet(inputs, clock, &registry);
  batching_.reset(new Batching{
      Batcher(settings.batch.max_readings, settings.batch.linger_us, source_->sensors()),
      {},
      registry.counter("outpost_agent_readings_produced_total", "Readings read from sources"),
      OutboxWriter(*outbox_, settings.outbox.group_max_batches, registry,
                   [this] { uplink_->notify(); }),
      std::make_unique<SensorPipeline>(inputs.sensors, &registry),
      std::move(ids)});

  uplink_ = makeUplink(cfg, device_id_, *outbox_, registry, clock);
  registerOutboxMetrics(registry, *outbox_, clock);
  registry.gaugeFunction("outpost_agent_uplink_connected", "1 while the uplink is connected",
                         [this] { return uplink_->connected() ? 1.0 : 0.0; });
}

Agent::~Agent() {
  if (uplink_) uplink_->stop();
}

bool Agent::healthy(std::string& detail) const {
  const auto st = outbox_->stats();
  detail = std::string(uplinkTransportNames().name(transport_)) +
           (uplink_->connected() ? " connected" : " disconnected") +
           ", outbox " + std::to_string(st.rows) + " batches";
  return true;  // disconnected is a state the agent is built to survive, not a failure
}

std::vector<std::string> Agent::notReadyReasons() const {
  std::vector<std::string> why;
  if (!uplink_->connected()) {
    why.push_back(transport_ == UplinkTransport::kZmq
                      ? "zmq: not connected to the aggregator"
                      : "mqtt: not connected to the broker");
  }
  const auto st = outbox_->stats();
  const uint64_t limit = outbox_->limits().max_bytes;  // in effect: SIGHUP may have changed it
  if (st.bytes * 10 > limit * 9) {
    why.push_back("outbox: " + std::to_string(st.bytes) + " of " + std::to_string(limit) +
                  " bytes used (" + std::to_string(st.rows) + " batches)");
  }
  return why;
}

void Agent::flush(int64_t /*mono_now*/) {
  auto& b = *batching_;
  if (b.batcher.empty()) return;
  b.writer.add(b.batcher.take(device_id_, clock_.nowUs()));  // committed by the round's commit()
}

void Agent::setConfigLoader(std::function<config::Config()> loader) {
  loader_ = std::move(loader);
}

void Agent::reload() {
  if (!loader_) {
    spdlog::warn("reload (SIGHUP): no configuration source; ignored");
    return;
  }
  try {
    config::Config next = loader_();
    validateConfig(next);
    if (readAgentSettings(next).device_id != device_id_) {
      throw config::ConfigError("device_id cannot change without a restart (the outbox epoch "
                                "and seqs belong to the device)");
    }
    auto& b = *batching_;  // sensors, filters, windows, sources first: they may still refuse
    reloadInputs(next, b.ids, *source_, *b.pipeline, b.batcher, &b.produced, clock_.monotonicUs(),
                 [this] { flush(clock_.monotonicUs()); });
    applyReload(agentSchema(), cfg_, applied_, next, *outbox_, *uplink_);
    applied_ = std::move(next);
  } catch (const std::exception& e) {
    spdlog::error("reload (SIGHUP): the new configuration is invalid, keeping the running one: {}",
                  e.what());
  }
}

static bool stdinStops(const config::Config& cfg) {
  return readSourcesSpec(cfg).stdin_on_eof == OnEof::kStop;
}

int Agent::run(const RunLimits& limits) {
  auto& b = *batching_;
  uplink_->start();
  spdlog::info("agent {} running: {} sensors, outbox epoch {}", device_id_,
               source_->sensors().size(), outbox_->epoch());
  uint64_t produced = 0;
  bool producing = true;
  int64_t next_due_us = clock_.nowUs();
  int64_t next_expire_us = 0;
  bool eof_stop = false;  // on_eof = "stop" and stdin ended: exit once drained, or at the deadline
  int64_t eof_deadline_us = 0;
  while (!signals::stopRequested()) {
    const int64_t mono = clock_.monotonicUs();
    // Block policy: while the outbox refuses batches the sources are not read (they wait).
    if (b.writer.blocked()) b.writer.commit();
    if (producing && !b.writer.blocked() && clock_.nowUs() >= next_due_us) {
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
    if (producing && source_->stdinFinished() && stdinStops(applied_)) {  // on_eof = "stop"
      producing = false;
      eof_stop = true;
      b.pipeline->closeAll(mono, b.batcher);
      flush(mono);
      const int64_t drain_us = readSourcesSpec(applied_).stdin_eof_drain_timeout_us;
      eof_deadline_us = mono + drain_us;
      spdlog::info(
          "stdin ended (sources.stdin.on_eof = stop): waiting up to {} s for the outbox "
          "to drain, then exiting",
          drain_us / 1000000);
    }
    b.pipeline->closeIdle(mono, b.batcher);
    if (b.batcher.due(mono)) flush(mono);
    if (!b.writer.blocked()) b.writer.commit();  // one transaction for this round's batches
    if (mono >= next_expire_us) {
      next_expire_us = mono + 1000000;
      (void)outbox_->expire();  // max_age also applies while nothing is appended
      // Drop counts whose write failed (an I/O error) are written again, not only with the next
      // batch, which may never come (--max-readings, a stop).
      (void)outbox_->persistDropCounts();
    }
    if (signals::takeReloadRequest()) reload();
    if (!producing && (limits.exit_when_drained || eof_stop) && b.batcher.empty() &&
        b.writer.queued() == 0 && outbox_->stats().rows == 0 && outbox_->persistDropCounts()) {
      spdlog::info("outbox drained: every accepted batch is acknowledged; exiting");
      break;
    }
    if (eof_stop && mono >= eof_deadline_us) {
      spdlog::warn(
          "sources.stdin.eof_drain_timeout_s passed: exiting with {} batches in the "
          "outbox (sent after the next start)",
          outbox_->stats().rows);
      break;
    }
    // Sleep until the next reading or batch deadline, at most 100 ms (stop/ack latency).
    int64_t wait_us = 100000;
    if (producing) wait_us = std::min(wait_us, next_due_us - clock_.nowUs());
    if (!b.batcher.empty()) wait_us = std::min(wait_us, b.batcher.deadline() - clock_.monotonicUs());
    if (b.writer.blocked()) wait_us = std::min<int64_t>(wait_us, 20000);
    if (wait_us > 0) signals::waitForStop(std::chrono::milliseconds((wait_us + 999) / 1000));
  }
  b.pipeline->closeAll(clock_.monotonicUs(), b.batcher);
  flush(clock_.monotonicUs());
  b.writer.finish();
  uplink_->stop();
  // Drop counts not yet in the store (their write failed): try for up to 3 s, else say how many
  // dropped readings the cloud will never hear of.
  bool counted = outbox_->persistDropCounts();
  for (int i = 0; i < 30 && !counted; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    counted = outbox_->persistDropCounts();
  }
  if (!counted) {
    spdlog::error("outbox: cannot write the drop counters ({} dropped readings not yet reported); "
                  "they are lost with this stop",
                  outbox_->pendingDropped());
  }
  const auto st = outbox_->stats();
  spdlog::info("agent stopped: {} readings produced, {} batches waiting in the outbox", produced,
               st.rows);
  return 0;
}

}  // namespace outpost::agent

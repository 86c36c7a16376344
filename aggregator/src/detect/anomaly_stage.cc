#include "outpost/aggregator/anomaly_stage.h"

#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>

#include "outpost/aggregator/json.h"
#include "outpost/common/json.h"
#include "outpost/common/detect/state_io.h"
#include "outpost/aggregator/kafka.h"
#include "outpost/common/settings.h"

namespace outpost::aggregator {
namespace {

using detect::AnomalyKind;
using detect::DetectorConfig;

// The DetectorConfig settings: [detect] declares them with the built-in defaults,
// [[detect.classes]] entries override the ones they set.
constexpr double kNoLimit = 1e300;  // |range_min|, |range_max| at or beyond this: no limit

double noLimit(double v) { return std::isinf(v) ? (v > 0 ? kNoLimit : -kNoLimit) : v; }

const config::SettingsTable<DetectorConfig>& detectorTable() {
  using D = DetectorConfig;
  static const DetectorConfig def;
  static const auto t =
      config::SettingsTable<D>()
          .real("alarm_on", &D::alarm_on, def.alarm_on, 0.01, 1,
                "Calibrated score that raises an alarm (0.5: tail probability 1e-4 for this "
                "sensor)")
          .real("alarm_off", &D::alarm_off, def.alarm_off, 0, 1,
                "An open alarm counts readings below this score (hysteresis; <= alarm_on)")
          .real("calib_samples", &D::calib_samples, def.calib_samples, 10, 1e9,
                "Effective length, in readings, of the sensor's evidence history that scores are "
                "calibrated against")
          .real("evidence_surprise", &D::evidence_surprise, def.evidence_surprise, 0.01, 1e6,
                "Cap on the calibrated surprise (-log10 p): this x q^2, q = raw evidence in units "
                "of the detector's threshold")
          .real("resolution", &D::resolution, def.resolution, 0, 1e300,
                "Smallest step of the sensor's values, a floor of its robust sigma (0: the "
                "smallest change seen)")
          .integer("clear_samples", &D::clear_samples, def.clear_samples, 1, 100000,
                   "An alarm ends after this many consecutive readings below alarm_off (hold-off)")
          .integer("warmup_samples", &D::warmup_samples, def.warmup_samples, 3, 1000000,
                   "No alarm except range/rate before this many valid readings")
          .integer("accept_after_samples",
                   &D::accept_after_samples, def.accept_after_samples, 1, static_cast<int64_t>(1e9),
                   "A level_shift/drift alarm longer than this many readings ends; its level "
                   "becomes the norm")
          .integer("device_min_samples", &D::device_min_samples, def.device_min_samples, 1,
                   100000,
                   "A device alarm is raised when the device score stayed >= alarm_on for this "
                   "many consecutive evaluations")
          .integer("device_clear_samples", &D::device_clear_samples, def.device_clear_samples, 1,
                   100000,
                   "A device alarm ends after this many consecutive evaluations below alarm_off")
          .real("level_alpha", &D::level_alpha, def.level_alpha, 1e-6, 1,
                "EWMA weight of the local level")
          .real("scale_alpha", &D::scale_alpha, def.scale_alpha, 1e-6, 1,
                "EWMA weight of the robust scale (mean absolute residual)")
          .real("spike_z", &D::spike_z, def.spike_z, 0.5, 1e6,
                "Residual in robust sigmas at which the spike/dip score is 0.5")
          .integer("spike_max_len", &D::spike_max_len, def.spike_max_len, 1, 7,
                   "A run of outliers on one side longer than this is a level shift")
          .real("cusum_k", &D::cusum_k, def.cusum_k, 0, 100,
                "CUSUM slack, in sigmas")
          .real("cusum_h", &D::cusum_h, def.cusum_h, 0.01, 1e6,
                "Cumulated sigmas at which the level-shift score is 0.5")
          .integer("shift_fast_samples", &D::shift_fast_samples, def.shift_fast_samples, 2, 1000000,
                   "Sustained shift: readings in the recent mean compared with the reference")
          .integer("shift_ref_samples",
                   &D::shift_ref_samples, def.shift_ref_samples, 3, static_cast<int64_t>(1e8),
                   "Sustained shift: readings in the reference mean (> shift_fast_samples; frozen "
                   "during an alarm; the detector is armed after this many readings)")
          .real("shift_z", &D::shift_z, def.shift_z, 0.1, 1e6,
                "Sustained shift: displacement / its normal spread at which the evidence reaches "
                "the threshold")
          .real("drift_z", &D::drift_z, def.drift_z, 0.1, 1e6,
                "Level offset / its normal spread at which the drift score is 0.5")
          .real("drift_memory_s", &D::drift_memory_s, def.drift_memory_s, 1, 1e9,
                "Time constant of the level's normal spread (the drift reference), seconds")
          .real("drift_tau_s", &D::drift_tau_s, def.drift_tau_s, 0.001, 1e9,
                "Time constant of the slow level the drift detector compares with the reference, "
                "seconds")
          .real("season_period_s", &D::season_period_s, def.season_period_s, 0, 1e9,
                "Seasonal period in seconds (a daily cycle: 86400); 0 disables the seasonal "
                "profile")
          .integer("season_bins", &D::season_bins, def.season_bins, 1,
                   static_cast<int64_t>(detect::kMaxSeasonBins),
                   "Bins of the seasonal profile")
          .real("season_memory_periods",
                &D::season_memory_periods, def.season_memory_periods, 0.1, 1e6,
                "The seasonal profile forgets with this time constant, in periods")
          .real("stuck_surprise", &D::stuck_surprise, def.stuck_surprise, 0.1, 1e6,
                "Surprise (-ln probability) of a run of unchanged values, given the normal repeat "
                "rate, at which the stuck score is 0.5")
          .integer("stuck_min_samples",
                   &D::stuck_min_samples, def.stuck_min_samples, 2, static_cast<int64_t>(1e9),
                   "Never stuck with fewer unchanged readings than this")
          .real("stuck_tolerance", &D::stuck_tolerance, def.stuck_tolerance, 0, 1e300,
                "A change of at most this counts as unchanged (0: exactly equal)")
          .real("silence_factor", &D::silence_factor, def.silence_factor, 1, 1e6,
                "Silence: a gap of at least this many usual intervals ...")
          .real("silence_dev_factor", &D::silence_dev_factor, def.silence_dev_factor, 0, 1e6,
                "... and at least the usual interval + this many mean interval deviations")
          .real(
              "range_min", [](D& c, double v) { c.range_min = v <= -kNoLimit ? -HUGE_VAL : v; },
              noLimit(def.range_min), -kNoLimit, kNoLimit,
                "Lowest physically valid value (-1e300: no limit)")
          .real(
              "range_max", [](D& c, double v) { c.range_max = v >= kNoLimit ? HUGE_VAL : v; },
              noLimit(def.range_max), -kNoLimit, kNoLimit,
                "Highest physically valid value (1e300: no limit)")
          .real("max_rate_per_s", &D::max_rate_per_s, def.max_rate_per_s, 0, 1e300,
                "Absolute change per second above this is a rate anomaly (0: off)")
          .boolean("enable_spike", &D::enable_spike, def.enable_spike,
                   "Spike and dip detector on")
          .boolean("enable_level_shift", &D::enable_level_shift, def.enable_level_shift,
                   "Level-shift detector (CUSUM) on")
          .boolean("enable_drift", &D::enable_drift, def.enable_drift,
                   "Drift detector on")
          .boolean("enable_shift", &D::enable_shift, def.enable_shift,
                   "Sustained-shift detector on (reported as level_shift)")
          .boolean("enable_stuck", &D::enable_stuck, def.enable_stuck,
                   "Stuck-sensor detector on")
          .boolean("enable_silence", &D::enable_silence, def.enable_silence,
                   "Silence (device or sensor offline) detector on");
  return t;
}

bool globMatch(const std::string& pattern, std::string_view s) {
  if (pattern == "*") return true;
  const std::string str(s);
  return fnmatch(pattern.c_str(), str.c_str(), 0) == 0;
}

int kindIndex(AnomalyKind k) { return static_cast<int>(k); }

// [[detect.classes]] entries: the globs, and any DetectorConfig key as an override.
const config::SettingsTable<SensorClass>& classTable() {
  static const auto t =
      config::SettingsTable<SensorClass>()
          .requiredString("name", &SensorClass::name, "Name of the sensor class (in messages)")
          .string("match", &SensorClass::match, "*",
                  "fnmatch(3) glob on the sensor name, e.g. \"temp*\"")
          .string("device", &SensorClass::device, "*", "fnmatch(3) glob on the device id")
          .declaredBy([](config::Schema& s, const std::string& p) {
            detectorTable().declare(s, p, "Override (default: the [detect] value): ");
          });
  return t;
}

const config::SettingsTable<AnomalyOptions>& anomalyTable() {
  using A = AnomalyOptions;
  static const auto t =
      config::SettingsTable<A>()
          .boolean("detect.enabled", &A::enabled, true,
                   "Run the anomaly detectors on every reading and publish alarms to "
                   "kafka.anomalies_topic")
          .string("kafka.anomalies_topic", &A::topic, "outpost.anomalies",
                  "Topic for anomaly events (JSON, key = device; docs/detection.md)")
          .integer("detect.max_sensors", &A::max_sensors, 100000, 16, 100000000,
                   "Tracked (device, sensor) detectors, all workers together (~1.5 KB each); "
                   "beyond it the least recently seen is evicted (counted)")
          .integer("detect.poll_interval_ms", &A::poll_interval_ms, 1000, 10, 600000,
                   "How often each worker checks every tracked sensor for silence")
          .nested(&A::defaults, detectorTable(), "detect.")
          .tableArray("detect.classes", classTable().schema("detect class"),
                      "Per-sensor-class detector settings: the first entry whose globs match a "
                      "sensor applies; keys not set keep the [detect] value");
  return t;
}

}  // namespace

void addDetectSettings(config::Schema& s) { anomalyTable().declare(s); }

AnomalyOptions anomalyOptionsFrom(const config::Config& cfg) {
  AnomalyOptions o = anomalyTable().read(cfg);
  if (auto st = detect::validateDetectorConfig(o.defaults); !st) {
    throw config::ConfigError("[detect]: " + st.error().message());
  }
  const auto& items = cfg.items("detect.classes");
  for (size_t i = 0; i < items.size(); ++i) {
    const std::string where = "detect.classes[" + std::to_string(i) + "]";
    SensorClass c = classTable().read(items[i]);
    if (c.match.empty() || c.device.empty()) {
      throw config::ConfigError(where + " ('" + c.name +
                                "'): match and device must be non-empty globs (\"*\" = any)");
    }
    c.cfg = o.defaults;
    detectorTable().read(items[i], c.cfg, "", /*only_set=*/true);
    if (auto st = detect::validateDetectorConfig(c.cfg); !st) {
      throw config::ConfigError(where + " ('" + c.name + "'): " + st.error().message());
    }
    o.classes.push_back(std::move(c));
  }
  return o;
}

void appendAnomalyJson(const AnomalyRecord& r, std::string& out) {
  json::Writer w(out);
  w.beginObject()
      .member("device", r.device)
      .member("sensor", r.sensor)
      .member("kind", detect::kindName(r.kind))
      .member("detector", detect::detectorName(r.kind))
      .member("state", r.ended ? "ended" : (r.changed ? "changed" : "open"))
      .member("timestamp_us", r.timestamp_us)
      .member("value", r.value)
      .member("score", r.score)
      .member("expected_lo", r.expected_lo)
      .member("expected_hi", r.expected_hi)
      .key("ended_us");
  if (r.ended) {
    w.integer(r.ended_us);
  } else {
    w.null();
  }
  if (r.changed) {
    w.member("changed_us", r.changed_us).member("phase", r.subsided ? "subsided" : "resumed");
  }
  if (r.device_level) {
    w.member("scope", "device").key("sensors").beginArray();
    for (const auto& name : r.sensors) w.string(name);
    w.endArray();
  }
  w.endObject();
}

// --- AnomalyDetection ---

AnomalyDetection::AnomalyDetection(AnomalyOptions options, metrics::Registry& registry)
    : opt_(std::move(options)),
      ended_(registry.counter("outpost_aggregator_anomalies_ended_total",
                              "Anomaly alarms that ended (an end event was produced)")),
      readings_(registry.counter("outpost_aggregator_detect_readings_total",
                                 "Readings fed to the anomaly detectors")),
      invalid_(registry.counter(
          "outpost_aggregator_detect_ignored_readings_total",
          "Readings the detectors ignored (non-finite value, or older than the sensor's last)")),
      evictions_(registry.counter(
          "outpost_aggregator_detect_evictions_total",
          "Detectors evicted (least recently seen) because detect.max_sensors was reached")),
      unbatched_failed_(registry.counter(
          "outpost_aggregator_anomaly_delivery_failures_total",
          "Silence events (produced by the timer, not with a batch) whose delivery failed")),
      batch_seconds_(registry.histogram(
          "outpost_aggregator_detect_batch_seconds",
          "Time in the detectors per batch (_sum / outpost_aggregator_detect_readings_total = "
          "seconds per reading)",
          metrics::exponentialBuckets(1e-6, 4, 12))),
      reading_seconds_(registry.histogram("outpost_aggregator_detect_reading_seconds",
                                          "Detector time per reading, averaged over each batch",
                                          metrics::exponentialBuckets(2.5e-8, 2, 14))) {
  for (AnomalyKind k :
       {AnomalyKind::kSpike, AnomalyKind::kDip, AnomalyKind::kLevelShift, AnomalyKind::kDrift,
        AnomalyKind::kStuck, AnomalyKind::kRate, AnomalyKind::kRange, AnomalyKind::kSilence,
        AnomalyKind::kCombined}) {
    by_kind_[kindIndex(k)] = &registry.counter("outpost_aggregator_anomalies_total",
                                               "Anomaly alarms raised, by kind at the start",
                                               {{"kind", detect::kindName(k)}});
  }
  registry.gaugeFunction("outpost_aggregator_detect_sensors",
                         "(device, sensor) detectors tracked, all workers", [this] {
                           MutexLock lock(stages_mu_);
                           size_t n = 0;
                           for (const AnomalyStage* s : stages_) n += s->tracked();
                           return static_cast<double>(n);
                         });
}

AnomalyDetection::~AnomalyDetection() = default;

void AnomalyDetection::addObserver(AnomalyObserver observer) {
  observers_.push_back(std::move(observer));
}

std::unique_ptr<AnomalyStage> AnomalyDetection::newStage(size_t workers) {
  const size_t cap =
      std::max<size_t>(16, (opt_.max_sensors + workers - 1) / std::max<size_t>(1, workers));
  auto stage = std::make_unique<AnomalyStage>(*this, cap);
  MutexLock lock(stages_mu_);
  stages_.push_back(stage.get());
  return stage;
}

const DetectorConfig* detectorConfigFor(const AnomalyOptions& options, std::string_view device,
                                        std::string_view sensor) {
  for (const SensorClass& c : options.classes) {
    if (globMatch(c.match, sensor) && globMatch(c.device, device)) return &c.cfg;
  }
  return &options.defaults;
}

const DetectorConfig* AnomalyDetection::configFor(std::string_view device,
                                                  std::string_view sensor) const {
  return detectorConfigFor(opt_, device, sensor);
}

Status AnomalyDetection::produce(Publisher& publisher, const AnomalyRecord& record,
                                 DeliveryListener* listener, std::string& scratch) {
  scratch.clear();
  appendAnomalyJson(record, scratch);
  auto st = publisher.produce(opt_.topic, record.device, scratch,
                              {{kHeaderDevice, record.device},
                               {"outpost-anomaly",
                                record.ended ? "ended" : (record.changed ? "changed" : "open")},
                               {"content-type", "application/json"}},
                              listener);
  if (!st) return st;
  for (const auto& obs : observers_) obs(record, scratch);
  return {};
}

void AnomalyDetection::onUnbatchedDelivery(bool ok) {
  if (!ok) unbatched_failed_.inc();
}

// --- AnomalyStage ---

AnomalyStage::AnomalyStage(AnomalyDetection& shared, size_t capacity)
    : shared_(shared), capacity_(capacity) {
  index_.reserve(std::min<size_t>(capacity, 4096));
}

void AnomalyStage::unlink(uint32_t i) {
  Entry& e = entries_[i];
  if (e.prev != kNil)
    entries_[e.prev].next = e.next;
  else
    head_ = e.next;
  if (e.next != kNil)
    entries_[e.next].prev = e.prev;
  else
    tail_ = e.prev;
  e.prev = e.next = kNil;
}

void AnomalyStage::touch(uint32_t i) {
  if (head_ == i) return;
  Entry& e = entries_[i];
  if (e.prev != kNil || e.next != kNil || tail_ == i) unlink(i);  // linked: move to the front
  e.next = head_;
  if (head_ != kNil) entries_[head_].prev = i;
  head_ = i;
  if (tail_ == kNil) tail_ = i;
}

uint32_t AnomalyStage::lookup(std::string_view device, std::string_view sensor) {
  key_scratch_.assign(device);
  key_scratch_ += '\x1f';
  key_scratch_ += sensor;
  if (auto it = index_.find(key_scratch_); it != index_.end()) {
    touch(it->second);
    return it->second;
  }
  const DetectorConfig* cfg = shared_.configFor(device, sensor);
  uint32_t i;
  if (!free_.empty()) {  // freed by dropDevice
    i = free_.back();
    free_.pop_back();
    const uint32_t gen = entries_[i].gen;
    entries_[i] = Entry(cfg);
    entries_[i].gen = gen;
    tracked_.store(entries_.size() - free_.size(), std::memory_order_relaxed);
  } else if (entries_.size() < capacity_) {
    i = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back(cfg);
    tracked_.store(entries_.size() - free_.size(), std::memory_order_relaxed);
  } else {
    i = tail_;  // least recently seen
    Entry& old = entries_[i];
    forgetEntry(i);
    index_.erase(old.key);
    unlink(i);
    const uint32_t gen = old.gen + 1;
    old = Entry(cfg);
    old.gen = gen;
    shared_.evictions_.inc();
  }
  Entry& e = entries_[i];
  e.key = key_scratch_;
  index_.emplace(e.key, i);
  e.prev = e.next = kNil;
  touch(i);
  auto d = by_device_.find(device);
  if (d == by_device_.end()) d = by_device_.emplace(device, std::vector<uint32_t>{}).first;
  d->second.push_back(i);
  return i;
}

void AnomalyStage::forgetEntry(uint32_t i) {
  const std::string& key = entries_[i].key;
  auto d = by_device_.find(std::string_view(key).substr(0, key.find('\x1f')));
  if (d == by_device_.end()) return;
  std::erase(d->second, i);
  if (d->second.empty()) by_device_.erase(d);
}

void AnomalyStage::emit(const Entry& e, const detect::AnomalyEvent& ev, bool ended,
                        int64_t start_us, std::vector<AnomalyRecord>& out) {
  const size_t sep = e.key.find('\x1f');
  AnomalyRecord& r = out.emplace_back();
  r.device = e.key.substr(0, sep);
  r.sensor = e.key.substr(sep + 1);
  r.kind = ev.kind;
  r.ended = ended;
  r.timestamp_us = start_us;
  r.ended_us = ended ? ev.end_ms * 1000 : 0;
  r.value = ev.value;
  r.score = ev.peak_score;
  r.expected_lo = ev.expected_lo;
  r.expected_hi = ev.expected_hi;
  if (ended) {
    shared_.ended_.inc();
  } else if (metrics::Counter* c = shared_.by_kind_[kindIndex(ev.kind)]) {
    c->inc();
  }
}

void AnomalyStage::onBatch(std::string_view device, const wire::Batch& batch, int64_t now_mono_us,
                           std::vector<AnomalyRecord>& out) {
  const auto* readings = batch.readings();
  const auto* sensors = batch.sensors();
  if (!readings || readings->size() == 0 || !sensors) return;
  const auto t0 = std::chrono::steady_clock::now();
  ++batch_no_;
  DeviceState& ds = deviceState(device);
  // Sensor id -> dictionary position, for this batch.
  for (uint32_t k = 0; k < sensors->size(); ++k) {
    const uint16_t id = sensors->Get(k)->id();
    if (id >= slots_.size()) slots_.resize(static_cast<size_t>(id) + 1);
    slots_[id] = Slot{kNil, 0, batch_no_, k};
  }
  uint64_t invalid = 0;
  // The batch's readings of one sensor up to position `upto` (inclusive), last kRecentValues.
  auto recentOf = [readings](uint16_t id, uint32_t upto) {
    std::vector<std::pair<int64_t, double>> v;
    for (uint32_t j = upto + 1; j-- > 0 && v.size() < kRecentValues;) {
      const wire::Reading* x = readings->Get(j);
      if (x->sensor() == id) v.emplace_back(x->ts_us(), x->value());
    }
    std::reverse(v.begin(), v.end());
    return v;
  };
  for (uint32_t pos = 0; pos < readings->size(); ++pos) {
    const wire::Reading* rd = readings->Get(pos);
    const uint16_t id = rd->sensor();
    if (id >= slots_.size() || slots_[id].batch != batch_no_) {
      ++invalid;  // not in the dictionary (verified batches never get here)
      continue;
    }
    Slot& s = slots_[id];
    if (s.entry == kNil || entries_[s.entry].gen != s.gen) {
      const bool first = s.entry == kNil;
      s.entry = lookup(device, sensors->Get(s.dict)->name()->string_view());
      Entry& e = entries_[s.entry];
      s.gen = e.gen;
      if (first) {
        s.wall_gap_us =
            e.arrivals > 0 ? static_cast<double>(now_mono_us - e.last_arrival_us) : -1.0;
        s.prev_ts_ms = e.last_ts_ms;
        s.first_gap = e.arrivals == 1;
        e.last_arrival_us = now_mono_us;
        ++e.arrivals;
      }
    }
    Entry& e = entries_[s.entry];
    const int64_t ts_us = rd->ts_us();
    const int64_t ts_ms = ts_us >= 0 ? ts_us / 1000 : -((-ts_us + 999) / 1000);
    const detect::DetectResult res = e.det.update(ts_ms, rd->value());
    if (!res.valid) {
      ++invalid;
      continue;
    }
    // Device level: the readings of one timestamp are evaluated together.
    if (ds.pending_ts_ms != INT64_MIN && ts_ms != ds.pending_ts_ms)
      evaluateDevice(device, ds, out);
    if (e.device_index == UINT32_MAX || e.device_index >= ds.names.size() ||
        ds.names[e.device_index] != sensors->Get(s.dict)->name()->string_view()) {
      const std::string_view name = sensors->Get(s.dict)->name()->string_view();
      const auto it = std::find(ds.names.begin(), ds.names.end(), name);
      if (it != ds.names.end()) {
        e.device_index = static_cast<uint32_t>(it - ds.names.begin());
      } else {
        e.device_index = ds.det.addSensor();
        ds.names.emplace_back(name);
      }
    }
    ds.det.set(e.device_index, res.surprise, res.kind);
    ds.pending_ts_ms = ts_ms;
    e.last_ts_ms = ts_ms;
    if (res.transition == detect::AlarmTransition::kRaised) {
      e.start_ts_us = ts_us;
      e.open_pending = true;
    }
    if (e.open_pending) {
      // A spike is told from a step only by the next reading: the open event of a spike/dip
      // waits for the first reading that is not an outlier of the same kind (one reading for a
      // genuine spike), so the event carries its final kind (e.g. level_shift).
      const AnomalyKind k = e.det.event().kind;
      const bool spiky = k == AnomalyKind::kSpike || k == AnomalyKind::kDip;
      if (!spiky || res.kind != k || res.transition == detect::AlarmTransition::kEnded) {
        emit(e, e.det.event(), false, e.start_ts_us, out);
        out.back().recent = recentOf(id, pos);
        e.open_pending = false;
      }
    }
    if (res.transition == detect::AlarmTransition::kEnded) {
      emit(e, e.det.event(), true, e.start_ts_us, out);
    }
  }
  if (ds.pending_ts_ms != INT64_MIN) evaluateDevice(device, ds, out);
  // The interval between a sensor's batches, for the silence timer: the wall-clock gap, but
  // never less than the event time the batch covered. A backlog delivered in a burst (catch-up
  // after a process-role failover or rebalance, an agent draining its outbox after an outage)
  // arrives milliseconds apart while each batch still covers its usual interval; learned from
  // the wall clock alone, the cadence shrank to those milliseconds and the next batch on time
  // looked like a silence, which also ended (and accepted the level of) any open alarm
  // (integration.cluster). Event time up to an hour per batch (a device clock that jumps).
  for (uint32_t k = 0; k < sensors->size(); ++k) {
    Slot& s = slots_[sensors->Get(k)->id()];
    if (s.batch != batch_no_ || s.entry == kNil || s.wall_gap_us < 0) continue;
    Entry& e = entries_[s.entry];
    if (e.gen != s.gen) continue;
    const int64_t covered_ms = std::clamp<int64_t>(e.last_ts_ms - s.prev_ts_ms, 0, 3'600'000);
    const double gap = std::max(s.wall_gap_us, static_cast<double>(covered_ms) * 1000.0);
    e.arrival_gap_us = s.first_gap ? gap : e.arrival_gap_us + 0.2 * (gap - e.arrival_gap_us);
    s.wall_gap_us = -1.0;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  shared_.readings_.inc(readings->size());
  if (invalid) shared_.invalid_.inc(invalid);
  shared_.batch_seconds_.observe(secs);
  shared_.reading_seconds_.observe(secs / static_cast<double>(readings->size()));
}

AnomalyStage::DeviceState& AnomalyStage::deviceState(std::string_view device) {
  key_scratch_.assign(device);
  if (auto it = devices_.find(key_scratch_); it != devices_.end()) return *it->second;
  if (devices_.size() >= capacity_) {
    // Make room: drop a device without an open alarm (its sensors keep their own detectors).
    for (auto it = devices_.begin(); it != devices_.end(); ++it) {
      if (!it->second->det.alarmActive()) {
        devices_.erase(it);
        break;
      }
    }
  }
  auto [it, _] =
      devices_.emplace(key_scratch_, std::make_unique<DeviceState>(&shared_.opt_.defaults));
  return *it->second;
}

void AnomalyStage::evaluateDevice(std::string_view device, DeviceState& ds,
                                  std::vector<AnomalyRecord>& out) {
  const int64_t ts_ms = ds.pending_ts_ms;
  ds.pending_ts_ms = INT64_MIN;
  // One sensor: its own events say it all.
  if (ds.det.sensors() < 2) return;
  const detect::DeviceResult r = ds.det.evaluate(ts_ms);
  if (r.transition == detect::AlarmTransition::kNone) return;
  const bool ended = r.transition == detect::AlarmTransition::kEnded;
  const detect::DeviceEvent& ev = ds.det.event();
  AnomalyRecord& rec = out.emplace_back();
  rec.device.assign(device);
  rec.device_level = true;
  for (uint32_t i : ev.sensors) {
    if (i >= ds.names.size()) continue;
    if (!rec.sensor.empty()) rec.sensor += '+';
    rec.sensor += ds.names[i];
    rec.sensors.push_back(ds.names[i]);
  }
  rec.kind = ev.kind;
  rec.ended = ended;
  if (r.transition == detect::AlarmTransition::kChanged) {
    rec.changed = true;
    rec.subsided = ds.det.subsided();
    rec.changed_us = ts_ms * 1000;
  }
  rec.timestamp_us = ev.start_ms * 1000;
  rec.ended_us = ended ? ev.end_ms * 1000 : 0;
  rec.value = std::numeric_limits<double>::quiet_NaN();
  rec.score = ended || rec.changed ? ev.peak_score : r.score;
  rec.expected_lo = rec.expected_hi = std::numeric_limits<double>::quiet_NaN();
  if (ended) {
    shared_.ended_.inc();
  } else if (rec.changed) {
    // A phase of an alarm already counted when it opened.
  } else if (metrics::Counter* c = shared_.by_kind_[kindIndex(ev.kind)]) {
    c->inc();
  }
}

bool AnomalyStage::poll(int64_t now_mono_us, std::vector<AnomalyRecord>& out) {
  if (now_mono_us < next_poll_us_) return false;
  next_poll_us_ = now_mono_us + static_cast<int64_t>(shared_.opt_.poll_interval_ms) * 1000;
  for (uint32_t i = head_; i != kNil; i = entries_[i].next) {
    Entry& e = entries_[i];
    // The arrival cadence needs a few batches; the detector's own cadence, its warm-up.
    if (e.arrivals < 3 || e.det.validReadings() == 0) continue;
    const DetectorConfig* cfg = e.det.config();
    if (!cfg->enable_silence) continue;
    // Readings arrive in batches: silence is measured against the usual interval between the
    // batches that carry this sensor, then the detector weighs the gap in event time.
    const int64_t gap_us = now_mono_us - e.last_arrival_us;
    if (static_cast<double>(gap_us) < cfg->silence_factor * e.arrival_gap_us) continue;
    const detect::DetectResult res = e.det.poll(e.last_ts_ms + gap_us / 1000);
    if (res.replaced) {
      // An open alarm of another kind ended; the silence is a new event.
      if (e.open_pending) emit(e, e.det.previousEvent(), false, e.start_ts_us, out);
      e.open_pending = false;
      emit(e, e.det.previousEvent(), true, e.start_ts_us, out);
    }
    if (res.transition == detect::AlarmTransition::kRaised) {
      e.start_ts_us = e.det.event().start_ms * 1000;
      emit(e, e.det.event(), false, e.start_ts_us, out);
    }
  }
  return true;
}

// --- Moving a device's detector state (issue 19) ---

namespace {

constexpr uint8_t kStageStateTag = 0x41;  // 'A'
constexpr uint8_t kStageStateVersion = 1;
constexpr uint32_t kMaxStateSensors = 65536;  // sensor ids are 16-bit
constexpr int64_t kMaxRelativeUs = int64_t{1} << 60;

// The bookkeeping of one tracked sensor besides its detector (AnomalyStage::Entry), as saved;
// monotonic times relative to the save.
struct SensorBook {
  uint32_t arrivals = 0;
  int64_t last_arrival_rel_us = 0;  // last_arrival_us - now_mono_us of the save
  double arrival_gap_us = 0.0;
  int64_t last_ts_ms = 0;
  int64_t start_ts_us = 0;
  bool open_pending = false;
  uint32_t device_index = UINT32_MAX;
};

template <class Ar>
void stateFields(Ar& ar, SensorBook& b) {
  ar(b.arrivals, b.last_arrival_rel_us, b.arrival_gap_us, b.last_ts_ms, b.start_ts_us,
     b.open_pending, b.device_index);
  ar.check(b.last_arrival_rel_us > -kMaxRelativeUs && b.last_arrival_rel_us < kMaxRelativeUs,
           "last arrival time");
  ar.check(detect::saneStateMs(b.last_ts_ms) && detect::saneStateUs(b.start_ts_us), "timestamp");
}

bool validSensorName(std::string_view name) {
  return !name.empty() && name.size() <= 128 && name.find('\x1f') == std::string_view::npos;
}

}  // namespace

bool AnomalyStage::saveDevice(std::string_view device, int64_t now_mono_us,
                              std::string& out) const {
  const auto d = by_device_.find(device);
  if (d == by_device_.end() || d->second.empty()) return false;
  detect::StateWriter w(out);
  w.begin(kStageStateTag, kStageStateVersion);
  w(static_cast<uint32_t>(d->second.size()));
  for (uint32_t i : d->second) {
    const Entry& e = entries_[i];
    const std::string name = e.key.substr(e.key.find('\x1f') + 1);
    SensorBook b;
    b.arrivals = e.arrivals;
    b.last_arrival_rel_us = e.last_arrival_us - now_mono_us;
    b.arrival_gap_us = e.arrival_gap_us;
    b.last_ts_ms = e.last_ts_ms;
    b.start_ts_us = e.start_ts_us;
    b.open_pending = e.open_pending;
    b.device_index = e.device_index;
    w(name, b);
    w.nested(e.det);
  }
  const auto ds = devices_.find(std::string(device));
  const bool has_device = ds != devices_.end();
  w(has_device);
  if (has_device) {
    w(ds->second->names, ds->second->pending_ts_ms);
    w.nested(ds->second->det);
  }
  w.end();
  return true;
}

Status AnomalyStage::restoreDevice(std::string_view device, std::span<const uint8_t> bytes,
                                   int64_t now_mono_us) {
  // Everything is read and checked first; the stage changes only when all of it is valid.
  detect::StateReader rd(bytes);
  if (!rd.begin(kStageStateTag, kStageStateVersion, "device detector state")) return rd.status();
  struct Parsed {
    std::string name;
    SensorBook book;
    detect::SensorDetector det;
  };
  std::vector<Parsed> sensors;
  uint32_t n = 0;
  rd(n);
  rd.check(n >= 1 && n <= kMaxStateSensors, "sensor count");
  std::set<std::string_view> seen;
  for (uint32_t k = 0; k < n && rd.ok(); ++k) {
    std::string name;
    SensorBook book;
    rd(name, book);
    rd.check(validSensorName(name), "sensor name");
    if (!rd.ok()) break;
    const DetectorConfig* cfg = shared_.configFor(device, name);
    Parsed& p = sensors.emplace_back(Parsed{std::move(name), book, detect::SensorDetector(cfg)});
    rd.nested(p.det);
  }
  for (const Parsed& p : sensors) rd.check(seen.insert(p.name).second, "repeated sensor name");
  bool has_device = false;
  rd(has_device);
  std::vector<std::string> names;
  int64_t pending_ts_ms = INT64_MIN;
  detect::DeviceDetector ddet(&shared_.opt_.defaults, 0);
  if (has_device) {
    rd(names, pending_ts_ms);
    rd.nested(ddet);
    rd.check(names.size() == ddet.sensors(), "device sensor names");
    rd.check(pending_ts_ms == INT64_MIN || detect::saneStateMs(pending_ts_ms), "device time");
    for (const std::string& s : names) rd.check(validSensorName(s), "device sensor name");
  }
  if (!rd.end()) return rd.status();
  if (rd.consumed() != bytes.size()) {
    return fail(ErrorCode::kCorrupt, "device detector state: " +
                                         std::to_string(bytes.size() - rd.consumed()) +
                                         " bytes after the image");
  }

  dropDevice(device);
  for (Parsed& p : sensors) {
    const uint32_t i = lookup(device, p.name);
    Entry& e = entries_[i];
    e.det = p.det;
    e.arrivals = p.book.arrivals;
    e.last_arrival_us = now_mono_us + p.book.last_arrival_rel_us;
    e.arrival_gap_us = p.book.arrival_gap_us;
    e.last_ts_ms = p.book.last_ts_ms;
    e.start_ts_us = p.book.start_ts_us;
    e.open_pending = p.book.open_pending;
    // An index into another device state (one dropped to make room) is re-resolved by onBatch.
    e.device_index = has_device && p.book.device_index < names.size() ? p.book.device_index
                                                                       : UINT32_MAX;
  }
  if (has_device) {
    DeviceState& ds = deviceState(device);
    ds.det = std::move(ddet);
    ds.names = std::move(names);
    ds.pending_ts_ms = pending_ts_ms;
  }
  return {};
}

void AnomalyStage::dropDevice(std::string_view device) {
  if (auto d = by_device_.find(device); d != by_device_.end()) {
    for (uint32_t i : d->second) {
      Entry& e = entries_[i];
      index_.erase(e.key);
      unlink(i);
      e.key.clear();
      ++e.gen;  // slots resolved to it are stale
      free_.push_back(i);
    }
    by_device_.erase(d);
    tracked_.store(entries_.size() - free_.size(), std::memory_order_relaxed);
  }
  if (auto it = devices_.find(std::string(device)); it != devices_.end()) devices_.erase(it);
}

}  // namespace outpost::aggregator

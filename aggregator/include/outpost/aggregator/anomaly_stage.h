#pragma once

// Live anomaly detection in the aggregator (docs/detection.md, "Live detection").
//
// AnomalyDetection (one per aggregator) holds the [detect] configuration, the metrics, the
// observer list and renders/produces the JSON events of `kafka.anomalies_topic`. Each device-pinned
// worker owns one AnomalyStage: the SensorDetector of every (device, sensor) it has seen, bounded
// by `detect.max_sensors` (least-recently-seen evicted, counted). Readings go in per verified,
// new batch; alarm transitions (raised, ended) come out as AnomalyRecords, which the aggregator
// produces with the batch, so the batch's ack waits for their delivery reports too. Silence needs
// time to pass without data: the worker calls AnomalyStage::poll() on a timer.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "outpost/common/config.h"
#include "outpost/common/detect/device_detector.h"
#include "outpost/common/detect/sensor_detector.h"
#include "outpost/common/metrics.h"
#include "outpost/common/status.h"
#include "outpost/common/thread_annotations.h"
#include "outpost/wire/batch_generated.h"

namespace outpost::aggregator {

class DeliveryListener;
class Publisher;

// Detector settings for the sensors whose name matches `match` (and device `device`), both
// fnmatch(3) globs. The first matching class wins; no match: the [detect] defaults.
struct SensorClass {
  std::string name;
  std::string match = "*";
  std::string device = "*";
  detect::DetectorConfig cfg;
};

struct AnomalyOptions {
  bool enabled = true;
  std::string topic = "outpost.anomalies";
  size_t max_sensors = 100000;  // tracked (device, sensor) detectors, all workers together
  int poll_interval_ms = 1000;  // silence check period of each worker
  detect::DetectorConfig defaults;
  std::vector<SensorClass> classes;
};

// Adds the [detect] settings and the [[detect.classes]] table array to `schema`.
void addDetectSettings(config::Schema& schema);
// Reads them back. Throws config::ConfigError naming the key when a detector configuration is
// invalid (validateDetectorConfig) or a glob is empty.
AnomalyOptions anomalyOptionsFrom(const config::Config& cfg);

// One alarm transition of one sensor: what goes on the anomalies topic.
struct AnomalyRecord {
  std::string device;
  std::string sensor;
  detect::AnomalyKind kind = detect::AnomalyKind::kNone;
  bool ended = false;        // false: the alarm opened (or changed); true: it closed
  // Device-level events only: the open alarm's evidence subsided (`subsided`) or resumed, at
  // changed_us; the alarm stays open (state "changed" on Kafka).
  bool changed = false;
  bool subsided = false;
  int64_t changed_us = 0;
  int64_t timestamp_us = 0;  // when the anomaly started (the reading or poll that raised it)
  int64_t ended_us = 0;      // last reading still anomalous (ended events only)
  double value = 0.0;        // value at the start (NaN for silence)
  double score = 0.0;        // opened: the raising score; ended: the peak score of the event
  double expected_lo = 0.0;  // expected range at the start (NaN for silence)
  double expected_hi = 0.0;
  // Opened events raised by a batch: that batch's readings of the sensor up to the one that opened
  // the event (ts_us, value), oldest first, at most kRecentValues (the dashboard's sparkline).
  std::vector<std::pair<int64_t, double>> recent;
  // Device-level events (docs/detection.md, "Device-level detection"): the contributing sensors;
  // `sensor` is then their names joined by '+', value and expected range NaN.
  bool device_level = false;
  std::vector<std::string> sensors;
};

inline constexpr size_t kRecentValues = 60;

// The detector configuration for one sensor: the first class whose globs match, else the
// [detect] defaults. The pointer is into `options`.
const detect::DetectorConfig* detectorConfigFor(const AnomalyOptions& options,
                                                std::string_view device, std::string_view sensor);

// The event as one JSON object (docs/detection.md, "Kafka events"); reusable by any sink.
void appendAnomalyJson(const AnomalyRecord& r, std::string& out);

// Called once per event when it is handed to Kafka, on the worker thread that produced it (so it
// must be quick and thread-safe); `json` is the message value.
using AnomalyObserver = std::function<void(const AnomalyRecord& record, std::string_view json)>;

class AnomalyStage;

// Thread-safety: addObserver() before Aggregator::start(); everything else from any thread.
class AnomalyDetection {
 public:
  AnomalyDetection(AnomalyOptions options, metrics::Registry& registry);
  ~AnomalyDetection();

  const AnomalyOptions& options() const { return opt_; }
  bool enabled() const { return opt_.enabled; }
  void addObserver(AnomalyObserver observer);

  // A stage for one of `workers` workers (its share of max_sensors).
  std::unique_ptr<AnomalyStage> newStage(size_t workers);
  // The detector configuration for one sensor (first matching class, else the defaults).
  const detect::DetectorConfig* configFor(std::string_view device, std::string_view sensor) const;

  // Produces one event on the anomalies topic (key = device), reported to `listener`, and tells
  // the observers. Errors are the publisher's.
  Status produce(Publisher& publisher, const AnomalyRecord& record, DeliveryListener* listener,
                 std::string& scratch);
  // Delivery reports of events produced without a batch (timer: silence).
  void onUnbatchedDelivery(bool ok);
  // Alarms raised so far, every kind (outpost_aggregator_anomalies_total).
  uint64_t raised() const {
    uint64_t n = 0;
    for (const metrics::Counter* c : by_kind_) n += c ? c->value() : 0;
    return n;
  }

 private:
  friend class AnomalyStage;
  AnomalyOptions opt_;
  std::vector<AnomalyObserver> observers_;
  metrics::Counter* by_kind_[10] = {};
  metrics::Counter& ended_;
  metrics::Counter& readings_;
  metrics::Counter& invalid_;
  metrics::Counter& evictions_;
  metrics::Counter& unbatched_failed_;
  metrics::Histogram& batch_seconds_;
  metrics::Histogram& reading_seconds_;
  Mutex stages_mu_;
  std::vector<const AnomalyStage*> stages_ GUARDED_BY(stages_mu_);  // for the sensors gauge
};

// The detectors of one worker. Thread-safety: none; owned and called by one worker thread.
class AnomalyStage {
 public:
  AnomalyStage(AnomalyDetection& shared, size_t capacity);

  // Feeds every reading of a verified batch from `device`; appends alarm transitions to `out`.
  // `now_mono_us`: arrival time (monotonic), the reference of the silence timer.
  void onBatch(std::string_view device, const wire::Batch& batch, int64_t now_mono_us,
               std::vector<AnomalyRecord>& out);
  // Silence check of every tracked sensor at monotonic time `now_mono_us`; appends raised
  // silence alarms to `out`. Does nothing (returns false) before the poll interval has elapsed.
  bool poll(int64_t now_mono_us, std::vector<AnomalyRecord>& out);

  size_t tracked() const { return tracked_.load(std::memory_order_relaxed); }
  size_t capacity() const { return capacity_; }

  // State moves between aggregator instances (issue 19, device_state.h).
  // Appends the detector state of `device` (each tracked sensor: name, its SensorDetector, its
  // Entry bookkeeping; and the device's DeviceDetector with its sensor names) to `out` as opaque
  // versioned bytes. Returns false (out unchanged) when the device has no tracked sensor.
  // Monotonic times (last_arrival_us, ...) are stored relative to `now_mono_us`, so another
  // process can restore them.
  bool saveDevice(std::string_view device, int64_t now_mono_us, std::string& out) const;
  // Replaces the state of `device` with bytes from saveDevice (possibly of another instance). Each
  // sensor's detector config comes from this stage's options (configFor). Error (and nothing
  // changed) on malformed bytes or another format version. Respects capacity (evicts LRU like
  // lookup does).
  Status restoreDevice(std::string_view device, std::span<const uint8_t> bytes,
                       int64_t now_mono_us);
  // Forgets every sensor of `device` and its device detector (its partition moved away).
  void dropDevice(std::string_view device);

 private:
  static constexpr uint32_t kNil = UINT32_MAX;
  struct Entry {
    explicit Entry(const detect::DetectorConfig* cfg) : det(cfg) {}
    detect::SensorDetector det;
    std::string key;       // device '\x1f' sensor
    uint32_t prev = kNil;  // LRU list: prev = more recent
    uint32_t next = kNil;
    uint32_t gen = 0;             // bumped on eviction/reuse
    uint32_t arrivals = 0;        // batches that carried this sensor
    int64_t last_arrival_us = 0;  // monotonic
    double arrival_gap_us = 0.0;  // EWMA of the interval between those batches
    int64_t last_ts_ms = 0;       // event time of the last reading
    int64_t start_ts_us = 0;      // exact timestamp of the reading that raised the open alarm
    bool open_pending = false;    // raised as spike/dip, open event not produced yet
    uint32_t device_index = UINT32_MAX;  // this sensor in its device's DeviceDetector
  };
  // Device-level detection of one device: its sensors' latest evidence, evaluated once per
  // reading timestamp (and at the end of each batch).
  struct DeviceState {
    explicit DeviceState(const detect::DetectorConfig* cfg) : det(cfg, 0) {}
    detect::DeviceDetector det;
    std::vector<std::string> names;  // by sensor index
    int64_t pending_ts_ms = INT64_MIN;
  };
  DeviceState& deviceState(std::string_view device);
  void evaluateDevice(std::string_view device, DeviceState& ds, std::vector<AnomalyRecord>& out);
  uint32_t lookup(std::string_view device, std::string_view sensor);
  void touch(uint32_t i);
  void unlink(uint32_t i);
  void emit(const Entry& e, const detect::AnomalyEvent& ev, bool ended, int64_t start_us,
            std::vector<AnomalyRecord>& out);

  AnomalyDetection& shared_;
  size_t capacity_;
  std::deque<Entry> entries_;  // stable addresses; grows up to capacity_
  std::unordered_map<std::string, uint32_t> index_;
  uint32_t head_ = kNil;  // most recently seen
  uint32_t tail_ = kNil;  // least recently seen: evicted first
  std::atomic<size_t> tracked_{0};
  int64_t next_poll_us_ = 0;
  std::string key_scratch_;
  struct Slot {
    uint32_t entry = kNil;
    uint32_t gen = 0;
    uint32_t batch = 0;  // batch number the slot was resolved in
    uint32_t dict = 0;   // position in that batch's sensor dictionary
    // The batch's arrival, learned at its end (the event time it covered is known then):
    // wall-clock gap since the sensor's previous batch (< 0: none), its last event time then.
    double wall_gap_us = -1.0;
    int64_t prev_ts_ms = 0;
    bool first_gap = false;  // the sensor's first interval: the EWMA starts at it
  };
  std::vector<Slot> slots_;  // by sensor id, valid when batch == batch_no_
  // Bounded by capacity_ devices (a device not in alarm is dropped to make room).
  std::unordered_map<std::string, std::unique_ptr<DeviceState>> devices_;
  uint32_t batch_no_ = 0;
  // Issue 19: the entries of each device (saveDevice/dropDevice), maintained when an entry is
  // created, evicted or dropped (never on the per-reading path), and entries freed by dropDevice.
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::vector<uint32_t>, StrHash, std::equal_to<>> by_device_;
  std::vector<uint32_t> free_;
  void forgetEntry(uint32_t i);  // removes entry i from by_device_
};

}  // namespace outpost::aggregator

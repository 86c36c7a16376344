#pragma once

// Readings from the device's own MQTT broker (sensors that already publish there): each sensor
// names a topic filter and, for JSON payloads, the dotted path of its value (and optionally of its
// event time). One message may feed several sensors (several fields of one payload). Messages
// arrive on Paho's thread and reach the pipeline thread through a ReadingHandoff that never blocks
// Paho: when full, readings are dropped and counted. Malformed payloads are counted by reason.

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "outpost/agent/inputs.h"
#include "outpost/agent/reading_handoff.h"
#include "outpost/agent/source.h"
#include "outpost/common/clock.h"
#include "outpost/common/metrics.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::agent {

enum class MqttPayloadError {
  kNone,
  kTooLarge,
  kBadPayload,    // not a number / not a JSON object
  kMissingField,  // the value path is absent
  kBadValue,      // present but not a number
  kBadTimestamp,  // timestamp field absent, unparsable or implausible
  kUnmatchedTopic,
  kCount
};
const char* mqttPayloadErrorName(MqttPayloadError e);

// Turns one payload into the value (and event time) of one sensor.
// `field` empty: the payload is a number (blanks around it allowed). `ts_field` empty: `now_us`.
MqttPayloadError decodeMqttPayload(std::string_view payload, std::string_view field,
                                   std::string_view ts_field, int64_t now_us, double& value,
                                   int64_t& ts_us);

class MqttSource final : public Source {
 public:
  MqttSource(const std::vector<SensorSpec>& sensors, const SourcesSpec& opt, const Clock& clock,
             metrics::Registry* registry);
  ~MqttSource() override;

  const std::vector<codec::SensorInfo>& sensors() const override { return infos_; }
  int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) override;

  bool connected() const { return connected_.load(); }
  // Subscribed to every topic filter (tests wait for this before publishing).
  bool subscribed() const { return subscribed_.load(); }
  uint64_t errors(MqttPayloadError e) const { return errors_[static_cast<size_t>(e)].load(); }
  uint64_t dropped() const { return handoff_.dropped(); }
  // SIGHUP replaces this source by one that does not need its subscriptions: unsubscribe when
  // stopping, so a persistent session does not keep delivering (and the broker keeping) messages
  // nobody reads. Pipeline thread, before destruction.
  void unsubscribeOnStop() { unsubscribe_on_stop_.store(true); }

 private:
  struct Route {
    std::string filter;
    std::string field;
    std::string ts_field;
    uint16_t id;
  };
  struct Client;
  void onMessage(const std::string& topic, std::string_view payload);
  void countError(MqttPayloadError e);
  void run();

  SourcesSpec opt_;
  const Clock& clock_;
  std::vector<Route> routes_;
  std::vector<std::string> filters_;  // distinct topic filters
  std::vector<codec::SensorInfo> infos_;
  ReadingHandoff handoff_;
  std::array<std::atomic<uint64_t>, static_cast<size_t>(MqttPayloadError::kCount)> errors_{};
  std::array<metrics::Counter*, static_cast<size_t>(MqttPayloadError::kCount)> error_counters_{};
  metrics::Counter* messages_ = nullptr;
  std::atomic<bool> connected_{false};
  std::atomic<bool> subscribed_{false};
  std::atomic<bool> unsubscribe_on_stop_{false};
  Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  bool lost_ GUARDED_BY(mu_) = false;
  std::unique_ptr<Client> client_;
  std::thread thread_;
};

}  // namespace outpost::agent

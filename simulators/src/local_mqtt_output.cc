#include "local_mqtt_output.h"

#include <poll.h>

#include "outpost/common/signals.h"
#include "outpost/sim/lite_mqtt.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

constexpr int kMaxPending = 1024;
constexpr size_t kMaxUnsent = 4u << 20;
constexpr int64_t kFinishTimeoutUs = 10'000'000;

std::string expand(std::string t, const std::string& device, const std::string& sensor) {
  for (auto [key, val] : {std::pair<std::string_view, const std::string&>{"{device}", device},
                          {"{sensor}", sensor}}) {
    for (size_t at = t.find(key); at != std::string::npos; at = t.find(key, at + val.size())) {
      t.replace(at, key.size(), val);
    }
  }
  return t;
}

class LocalMqttOutput final : public StepOutput {
 public:
  LocalMqttOutput(const LocalMqttOptions& o, const Fleet& fleet) : opt_(o) {
    // Topics precomputed: device x sensor.
    for (int d = 0; d < fleet.devices(); ++d) {
      std::vector<std::string> row;
      for (const auto& s : fleet.sensors()) {
        row.push_back(expand(o.topic_template, fleet.deviceName(d), s.name));
      }
      topics_.push_back(std::move(row));
    }
  }

  Status connect() {
    LiteMqttOptions lo;
    lo.broker = opt_.broker;
    lo.client_id = opt_.client_id;
    lo.keepalive_s = opt_.keepalive_s;
    return cli_.connect(lo);
  }

  Status write(const Fleet&, int device, const DeviceStep& step) override {
    const auto& topics = topics_[static_cast<size_t>(device)];
    for (const auto& r : step.readings) {
      while (cli_.pending() >= kMaxPending || cli_.unsent() >= kMaxUnsent) {
        if (auto st = waitIo(100); !st) return st;
        if (signals::stopRequested()) return {};
      }
      payload_.clear();
      if (opt_.json) {
        payload_ += "{\"value\":";
        payload_ += formatValue(r.value());
        payload_ += ",\"ts\":";
        payload_ += std::to_string(r.ts_us());
        payload_ += '}';
      } else {
        payload_ += formatValue(r.value());
      }
      if (!cli_.publish(topics[r.sensor()],
                        {reinterpret_cast<const uint8_t*>(payload_.data()), payload_.size()},
                        opt_.qos, false)) {
        return lost();
      }
    }
    return {};
  }

  Status endStep() override {
    if (!cli_.io(monoUs())) return lost();
    return {};
  }

  Status finish() override {
    const int64_t limit = monoUs() + kFinishTimeoutUs;
    while ((cli_.pending() > 0 || cli_.unsent() > 0) && monoUs() < limit) {
      if (auto st = waitIo(50); !st) return st;
    }
    const int left = cli_.pending();
    cli_.disconnect(1'000'000);
    if (left > 0) {
      return fail(ErrorCode::kUnavailable,
                  std::to_string(left) + " readings not acknowledged by the broker (PUBACK)");
    }
    return {};
  }

 private:
  Status waitIo(int ms) {
    pollfd pfd{cli_.fd(), static_cast<short>(POLLIN | (cli_.unsent() ? POLLOUT : 0)), 0};
    ::poll(&pfd, 1, ms);
    if (!cli_.io(monoUs())) return lost();
    return {};
  }
  Status lost() {
    return fail(ErrorCode::kUnavailable,
                "local MQTT broker " + opt_.broker + ": connection lost: " + cli_.lastError());
  }

  LocalMqttOptions opt_;
  LiteMqtt cli_;
  std::vector<std::vector<std::string>> topics_;
  std::string payload_;
};

}  // namespace

Result<std::unique_ptr<StepOutput>> makeLocalMqttOutput(const LocalMqttOptions& o,
                                                        const Fleet& fleet) {
  auto out = std::make_unique<LocalMqttOutput>(o, fleet);
  if (auto st = out->connect(); !st) return std::unexpected(st.error());
  return std::unique_ptr<StepOutput>(std::move(out));
}

}  // namespace outpost::sim

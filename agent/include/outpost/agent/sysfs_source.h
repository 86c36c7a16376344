#pragma once

// Linux sysfs sensors, polled on the pipeline thread, each at its own interval:
//   hwmon:   <root>/class/hwmon/hwmonN/<input>  (chip by its `name` file or directory name);
//            temp*, in*, curr*, humidity* are milli-units (/1000), power*, energy* micro (/1e6),
//            fan*, pwm* as read
//   thermal: <root>/class/thermal/thermal_zoneN/temp  (zone by its `type` file or directory),
//            millidegrees Celsius -> degC
//   iio:     <root>/bus/iio/devices/iio:deviceN/<channel>_raw (device by `name` or directory);
//            value = (raw + offset) * scale as the kernel's IIO ABI defines, offset and scale read
//            with the raw value from <channel>_offset/_scale or the shared <type>_offset/_scale
//            (e.g. in_voltage_scale), 0 and 1 when absent
// Paths are resolved at construction (a missing device or file is a ConfigError naming the key);
// a read that fails later is counted and skipped (the device may come back).

#include <cstdint>
#include <string>
#include <vector>

#include "outpost/agent/inputs.h"
#include "outpost/agent/source.h"
#include "outpost/common/metrics.h"

namespace outpost::agent {

class SysfsSource final : public Source {
 public:
  SysfsSource(const std::vector<SensorSpec>& sensors, const std::string& root, int64_t start_us,
              metrics::Registry* registry);
  ~SysfsSource() override;

  const std::vector<codec::SensorInfo>& sensors() const override { return infos_; }
  int64_t poll(int64_t now_us, std::vector<wire::Reading>& out) override;

  uint64_t readErrors() const { return read_errors_; }
  // The resolved value file of each sensor (tests, the start-up log).
  std::vector<std::string> paths() const;

 private:
  struct Sensor {
    uint16_t id;
    std::string where;
    std::string value_path;
    std::string scale_path;   // iio: empty if none
    std::string offset_path;  // iio
    double multiplier = 1.0;  // hwmon/thermal unit conversion
    int fd = -1;
    int64_t interval_us;
    int64_t next_us;
  };
  bool readNumber(const std::string& path, int& fd, double& out);
  bool readOnce(const std::string& path, double& out);

  std::vector<Sensor> sensors_;
  std::vector<codec::SensorInfo> infos_;
  uint64_t read_errors_ = 0;
  metrics::Counter* read_errors_counter_ = nullptr;
};

}  // namespace outpost::agent

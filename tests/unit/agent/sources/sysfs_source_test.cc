#include "outpost/agent/sysfs_source.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "outpost/common/config.h"
#include "support/temp_dir.h"

using namespace outpost;
using namespace outpost::agent;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kStart = 1714564800LL * 1000000;
constexpr int64_t kSecond = 1000000;

void put(const fs::path& p, const std::string& content) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::trunc);
  out << content;
}

// A fake sysfs: two hwmon chips, two thermal zones, one IIO ADC.
struct FakeSysfs {
  outpost::testing::TempDir dir{"outpost-sysfs-test"};
  fs::path root = dir.path();
  FakeSysfs() {
    put(root / "class/hwmon/hwmon0/name", "acpitz\n");
    put(root / "class/hwmon/hwmon0/temp1_input", "27800\n");
    put(root / "class/hwmon/hwmon1/name", "coretemp\n");
    put(root / "class/hwmon/hwmon1/temp2_input", "45500\n");
    put(root / "class/hwmon/hwmon1/in0_input", "1200\n");
    put(root / "class/hwmon/hwmon1/fan1_input", "2400\n");
    put(root / "class/thermal/thermal_zone0/type", "x86_pkg_temp\n");
    put(root / "class/thermal/thermal_zone0/temp", "51000\n");
    put(root / "class/thermal/thermal_zone1/type", "acpitz\n");
    put(root / "class/thermal/thermal_zone1/temp", "-5000\n");
    put(root / "bus/iio/devices/iio:device0/name", "ads1015\n");
    put(root / "bus/iio/devices/iio:device0/in_voltage0_raw", "1000\n");
    put(root / "bus/iio/devices/iio:device0/in_voltage_scale", "0.5\n");
    put(root / "bus/iio/devices/iio:device0/in_voltage1_raw", "10\n");
    put(root / "bus/iio/devices/iio:device0/in_voltage1_scale", "2\n");
    put(root / "bus/iio/devices/iio:device0/in_voltage1_offset", "-4\n");
    put(root / "bus/iio/devices/iio:device0/in_temp_raw", "300\n");
  }
};

SensorSpec sensor(uint16_t id, const char* name, SourceKind kind, const char* device,
                  const char* channel = "", int64_t interval_us = kSecond) {
  SensorSpec s;
  s.id = id;
  s.name = name;
  s.source = kind;
  s.where = "sensors[" + std::to_string(id) + "]";
  s.sysfs_device = device;
  s.sysfs_channel = channel;
  s.poll_interval_us = interval_us;
  return s;
}

double valueOf(const std::vector<wire::Reading>& rs, uint16_t id) {
  for (const auto& r : rs) {
    if (r.sensor() == id) return r.value();
  }
  FAIL("no reading of sensor " << id);
  return 0;
}

}  // namespace

TEST_CASE("SysfsSource reads hwmon, thermal zones and IIO from a fake tree",
          "[agent][source][sysfs]") {
  FakeSysfs fake;
  std::vector<SensorSpec> specs = {
      sensor(0, "board", SourceKind::kHwmon, "acpitz", "temp1_input"),
      sensor(1, "cpu", SourceKind::kHwmon, "hwmon1", "temp2"),
      sensor(2, "vcore", SourceKind::kHwmon, "coretemp", "in0_input"),
      sensor(3, "fan", SourceKind::kHwmon, "coretemp", "fan1_input"),
      sensor(4, "pkg", SourceKind::kThermal, "x86_pkg_temp"),
      sensor(5, "zone1", SourceKind::kThermal, "thermal_zone1"),
      sensor(6, "adc0", SourceKind::kIio, "ads1015", "in_voltage0"),
      sensor(7, "adc1", SourceKind::kIio, "iio:device0", "in_voltage1"),
      sensor(8, "die", SourceKind::kIio, "ads1015", "in_temp", 3 * kSecond),
  };
  specs[0].unit = "C";  // a configured unit wins over the default
  SysfsSource src(specs, fake.root.string(), kStart, nullptr);

  SECTION("unit conversion and defaults") {
    std::vector<wire::Reading> out;
    const int64_t next = src.poll(kStart, out);
    REQUIRE(out.size() == 9);
    CHECK(out[0].ts_us() == kStart);
    CHECK(valueOf(out, 0) == Approx(27.8));
    CHECK(valueOf(out, 1) == Approx(45.5));
    CHECK(valueOf(out, 2) == Approx(1.2));
    CHECK(valueOf(out, 3) == 2400);
    CHECK(valueOf(out, 4) == Approx(51.0));
    CHECK(valueOf(out, 5) == Approx(-5.0));
    CHECK(valueOf(out, 6) == Approx(500.0));  // (1000 + 0) * 0.5 (shared scale)
    CHECK(valueOf(out, 7) == Approx(12.0));   // (10 - 4) * 2 (per-channel)
    CHECK(valueOf(out, 8) == 300);            // no scale or offset
    CHECK(next == kStart + kSecond);
    const auto& info = src.sensors();
    CHECK(info[0].unit == "C");
    CHECK(info[1].unit == "degC");
    CHECK(info[2].unit == "V");
    CHECK(info[3].unit == "RPM");
    CHECK(info[4].unit == "degC");
  }
  SECTION("each sensor at its own interval; values are re-read") {
    std::vector<wire::Reading> out;
    src.poll(kStart, out);
    put(fake.root / "class/hwmon/hwmon0/temp1_input", "30000\n");
    out.clear();
    src.poll(kStart + kSecond, out);
    CHECK(out.size() == 8);  // "die" polls every 3 s
    CHECK(valueOf(out, 0) == Approx(30.0));
    out.clear();
    src.poll(kStart + 3 * kSecond, out);
    CHECK(out.size() == 9);
  }
  SECTION("a vanished or garbled file is counted and skipped, then recovers") {
    std::vector<wire::Reading> out;
    fs::remove(fake.root / "class/thermal/thermal_zone0/temp");
    put(fake.root / "class/hwmon/hwmon0/temp1_input", "garbage\n");
    src.poll(kStart, out);
    CHECK(out.size() == 7);
    CHECK(src.readErrors() == 2);
    put(fake.root / "class/thermal/thermal_zone0/temp", "52000\n");
    put(fake.root / "class/hwmon/hwmon0/temp1_input", "28000\n");
    out.clear();
    src.poll(kStart + kSecond, out);
    CHECK(out.size() == 8);
    CHECK(valueOf(out, 4) == Approx(52.0));
  }
}

TEST_CASE("SysfsSource names the key when a device is missing", "[agent][source][sysfs]") {
  FakeSysfs fake;
  auto fails = [&](SensorSpec s) {
    try {
      SysfsSource src({s}, fake.root.string(), kStart, nullptr);
    } catch (const config::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string chip = fails(sensor(0, "x", SourceKind::kHwmon, "nct6775", "temp1_input"));
  CHECK_THAT(chip, Catch::Contains("sensors[0].hwmon.chip = \"nct6775\""));
  CHECK_THAT(chip, Catch::Contains("coretemp"));  // lists what exists
  CHECK_THAT(fails(sensor(0, "x", SourceKind::kHwmon, "acpitz", "temp9_input")),
             Catch::Contains("sensors[0].hwmon.input"));
  CHECK_THAT(fails(sensor(0, "x", SourceKind::kThermal, "gpu")),
             Catch::Contains("sensors[0].thermal.zone"));
  CHECK_THAT(fails(sensor(0, "x", SourceKind::kIio, "ads1015", "in_voltage7")),
             Catch::Contains("sensors[0].iio.channel"));
  CHECK_THAT(fails(sensor(0, "x", SourceKind::kIio, "bme280", "in_temp")),
             Catch::Contains("sensors[0].iio.device"));
}

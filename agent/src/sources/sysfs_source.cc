#include "outpost/agent/sysfs_source.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "outpost/agent/line_parser.h"
#include "outpost/common/config.h"

namespace outpost::agent {
namespace {

namespace fs = std::filesystem;

std::string readSmallFile(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

bool pathExists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// The directory under `dir` named `want` or whose `label_file` says `want`.
fs::path findDevice(const fs::path& dir, const std::string& prefix, const std::string& want,
                    const char* label_file, const std::string& key) {
  std::error_code ec;
  std::vector<std::string> seen;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
  std::sort(entries.begin(), entries.end());  // hwmon0 before hwmon1: a stable choice
  for (const auto& p : entries) {
    const std::string name = p.filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string label = readSmallFile(p / label_file);
    if (name == want || label == want) return p;
    seen.push_back(label.empty() ? name : name + " (" + label + ")");
  }
  std::string list;
  for (const auto& s : seen) list += (list.empty() ? "" : ", ") + s;
  throw config::ConfigError(key + " = \"" + want + "\": no such device under " + dir.string() +
                            "; found: " + (list.empty() ? "none" : list));
}

// hwmon sysfs units (Documentation/hwmon/sysfs-interface.rst) → SI-ish units.
void hwmonUnits(const std::string& input, double& multiplier, std::string& unit) {
  auto starts = [&](const char* p) { return input.rfind(p, 0) == 0; };
  if (starts("temp"))
    multiplier = 1e-3, unit = "degC";
  else if (starts("in"))
    multiplier = 1e-3, unit = "V";
  else if (starts("curr"))
    multiplier = 1e-3, unit = "A";
  else if (starts("humidity"))
    multiplier = 1e-3, unit = "%RH";
  else if (starts("power"))
    multiplier = 1e-6, unit = "W";
  else if (starts("energy"))
    multiplier = 1e-6, unit = "J";
  else if (starts("fan"))
    multiplier = 1, unit = "RPM";
  else
    multiplier = 1, unit = "";
}

}  // namespace

SysfsSource::SysfsSource(const std::vector<SensorSpec>& sensors, const std::string& root,
                         int64_t start_us, metrics::Registry* registry) {
  const fs::path base(root);
  for (const auto& spec : sensors) {
    Sensor s;
    s.id = spec.id;
    s.where = spec.where;
    s.interval_us = spec.poll_interval_us;
    s.next_us = start_us;
    std::string unit = spec.unit;
    std::string default_unit;
    switch (spec.source) {
      case SourceKind::kHwmon: {
        const fs::path dev = findDevice(base / "class" / "hwmon", "hwmon", spec.sysfs_device,
                                        "name", spec.where + ".hwmon.chip");
        std::string input = spec.sysfs_channel;
        if (input.find('_') == std::string::npos) input += "_input";
        s.value_path = (dev / input).string();
        hwmonUnits(input, s.multiplier, default_unit);
        if (!pathExists(s.value_path)) {
          throw config::ConfigError(spec.where + ".hwmon.input = \"" + spec.sysfs_channel +
                                    "\": " + s.value_path + " does not exist");
        }
        break;
      }
      case SourceKind::kThermal: {
        const fs::path dev = findDevice(base / "class" / "thermal", "thermal_zone",
                                        spec.sysfs_device, "type", spec.where + ".thermal.zone");
        s.value_path = (dev / "temp").string();
        s.multiplier = 1e-3;
        default_unit = "degC";
        if (!pathExists(s.value_path)) {
          throw config::ConfigError(spec.where + ".thermal.zone = \"" + spec.sysfs_device +
                                    "\": " + s.value_path + " does not exist");
        }
        break;
      }
      case SourceKind::kIio: {
        const fs::path dev = findDevice(base / "bus" / "iio" / "devices", "iio:device",
                                        spec.sysfs_device, "name", spec.where + ".iio.device");
        const std::string& ch = spec.sysfs_channel;
        s.value_path = (dev / (ch + "_raw")).string();
        if (!pathExists(s.value_path)) {
          throw config::ConfigError(spec.where + ".iio.channel = \"" + ch + "\": " + s.value_path +
                                    " does not exist");
        }
        // Shared attributes drop the channel index: in_voltage0 -> in_voltage.
        std::string type = ch;
        while (!type.empty() && std::isdigit(static_cast<unsigned char>(type.back()))) {
          type.pop_back();
        }
        for (auto [suffix, out] :
             {std::pair{"_scale", &s.scale_path}, std::pair{"_offset", &s.offset_path}}) {
          if (pathExists(dev / (ch + suffix)))
            *out = (dev / (ch + suffix)).string();
          else if (pathExists(dev / (type + suffix)))
            *out = (dev / (type + suffix)).string();
        }
        break;
      }
      default:
        continue;
    }
    infos_.push_back({spec.id, spec.name, unit.empty() ? default_unit : unit});
    spdlog::info("{} \"{}\": reading {} every {} ms", spec.where, spec.name, s.value_path,
                 s.interval_us / 1000);
    sensors_.push_back(std::move(s));
  }
  if (registry) {
    read_errors_counter_ = &registry->counter("outpost_agent_source_read_errors_total",
                                              "sysfs reads that failed or did not hold a number",
                                              {{"source", "sysfs"}});
  }
}

SysfsSource::~SysfsSource() {
  for (auto& s : sensors_) {
    if (s.fd >= 0) ::close(s.fd);
  }
}

std::vector<std::string> SysfsSource::paths() const {
  std::vector<std::string> out;
  for (const auto& s : sensors_) out.push_back(s.value_path);
  return out;
}

// Keeps the value file open: a sysfs attribute is re-read with pread at offset 0.
bool SysfsSource::readNumber(const std::string& path, int& fd, double& out) {
  if (fd < 0) {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
  }
  char buf[64];
  const ssize_t n = ::pread(fd, buf, sizeof buf, 0);
  if (n <= 0 || n == static_cast<ssize_t>(sizeof buf)) {
    ::close(fd);  // the device may have gone: reopen next time
    fd = -1;
    return false;
  }
  std::string_view v(buf, static_cast<size_t>(n));
  while (!v.empty() && (v.back() == '\n' || v.back() == ' ' || v.back() == '\r')) {
    v.remove_suffix(1);
  }
  return parseNumber(v, out);
}

bool SysfsSource::readOnce(const std::string& path, double& out) {
  int fd = -1;
  const bool ok = readNumber(path, fd, out);
  if (fd >= 0) ::close(fd);
  return ok;
}

int64_t SysfsSource::poll(int64_t now_us, std::vector<wire::Reading>& out) {
  int64_t next = std::numeric_limits<int64_t>::max();
  for (auto& s : sensors_) {
    if (s.next_us <= now_us) {
      double raw = 0;
      bool ok = readNumber(s.value_path, s.fd, raw);
      double value = raw * s.multiplier;
      if (ok && (!s.scale_path.empty() || !s.offset_path.empty())) {
        double scale = 1, offset = 0;
        ok = (s.scale_path.empty() || readOnce(s.scale_path, scale)) &&
             (s.offset_path.empty() || readOnce(s.offset_path, offset));
        value = (raw + offset) * scale;
      }
      if (ok) {
        out.emplace_back(now_us, value, s.id, wire::Quality::Good);
      } else {
        ++read_errors_;
        if (read_errors_counter_) read_errors_counter_->inc();
        if (read_errors_ <= 5 || read_errors_ % 1000 == 0) {
          spdlog::warn("{}: cannot read a number from {} ({} read errors so far)", s.where,
                       s.value_path, read_errors_);
        }
      }
      s.next_us += s.interval_us;
      if (s.next_us <= now_us) s.next_us = now_us + s.interval_us;  // fell behind: skip, no burst
    }
    next = std::min(next, s.next_us);
  }
  return next;
}

}  // namespace outpost::agent

#include "outpost/agent/config_reload.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>

namespace outpost::agent {
namespace {

// The input settings are applied by reloadInputs() (input_reload.h); the sources.* settings not
// listed here size the running readers' queues and decoders and need a restart.
constexpr std::array<std::string_view, 14> kReloadable = {
    "log_level",
    "outbox.max_bytes",
    "outbox.max_age_s",
    "outbox.full_policy",
    "uplink.drain.order",
    "uplink.drain.rate",
    "sensors",
    "sources.stdin.on_eof",
    "sources.stdin.eof_drain_timeout_s",
    "sources.socket.path",
    "sources.socket.format",
    "sources.socket.max_clients",
    "sources.sysfs.root",
    "sources.modbus.slaves",
};
// Every sources.mqtt.* setting (broker, session, credentials, TLS): the MQTT source reconnects.
constexpr std::string_view kReloadablePrefix = "sources.mqtt.";

bool sameValue(const config::Setting& s, const config::Config& a, const config::Config& b) {
  const std::string_view k = s.key;
  if (s.type != config::Type::kTableArray) {
    if (a.isSet(k) != b.isSet(k)) return false;
    if (!a.isSet(k)) return true;
  }
  switch (s.type) {
    case config::Type::kBool:
      return a.getBool(k) == b.getBool(k);
    case config::Type::kInt:
      return a.getInt(k) == b.getInt(k);
    case config::Type::kDouble:
      return a.getDouble(k) == b.getDouble(k);
    case config::Type::kString:
      return a.getString(k) == b.getString(k);
    case config::Type::kTableArray: {
      const auto& ia = a.items(k);
      const auto& ib = b.items(k);
      if (ia.size() != ib.size()) return false;
      for (size_t i = 0; i < ia.size(); ++i) {
        if (!changedSettings(*s.item_schema, ia[i], ib[i]).empty()) return false;
      }
      return true;
    }
  }
  return false;
}

}  // namespace

OutboxOptions outboxOptionsFrom(const config::Config& cfg) {
  OutboxOptions o;
  o.path = cfg.getString("outbox.path");
  o.max_bytes = static_cast<uint64_t>(cfg.getInt("outbox.max_bytes"));
  o.max_age_s = cfg.getInt("outbox.max_age_s");
  o.full_policy = parseFullPolicy(cfg.getString("outbox.full_policy")).value();
  o.synchronous = cfg.getString("outbox.synchronous");
  return o;
}

DrainSettings drainSettingsFrom(const config::Config& cfg) {
  DrainSettings d;
  d.order = parseDrainOrder(cfg.getString("uplink.drain.order")).value();
  d.rate_readings_per_s = cfg.getDouble("uplink.drain.rate");
  return d;
}

std::vector<std::string> changedSettings(const config::Schema& schema, const config::Config& a,
                                         const config::Config& b) {
  std::vector<std::string> out;
  for (const auto& s : schema.settings()) {
    if (!sameValue(s, a, b)) out.push_back(s.key);
  }
  return out;
}

bool isReloadable(std::string_view key) {
  return key.starts_with(kReloadablePrefix) ||
         std::find(kReloadable.begin(), kReloadable.end(), key) != kReloadable.end();
}

std::vector<std::string> applyReload(const config::Schema& schema, const config::Config& started,
                                     const config::Config& applied, const config::Config& next,
                                     Outbox& outbox, Uplink& uplink) {
  std::vector<std::string> restart;
  for (const auto& key : changedSettings(schema, started, next)) {
    if (!isReloadable(key)) restart.push_back(key);
  }
  bool limits = false, drain = false, any = !restart.empty();
  for (const auto& key : changedSettings(schema, applied, next)) {
    if (!isReloadable(key)) continue;
    any = true;
    if (key == "log_level") {
      spdlog::set_level(spdlog::level::from_str(next.getString("log_level")));
    } else if (key.starts_with("outbox.")) {
      limits = true;
    } else {
      drain = true;
    }
    spdlog::info("reload: {} applied", key);
  }
  if (limits) {
    const auto o = outboxOptionsFrom(next);
    outbox.setLimits({o.max_bytes, o.max_age_s, o.full_policy});
  }
  if (drain) uplink.setDrain(drainSettingsFrom(next));
  for (const auto& key : restart) {
    spdlog::warn("reload: {} changed; it is not reloadable and takes effect after a restart", key);
  }
  if (!any) spdlog::info("reload: configuration unchanged");
  return restart;
}

}  // namespace outpost::agent

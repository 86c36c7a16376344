#include "outpost/agent/config_reload.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "outpost/agent/agent_config.h"
#include "outpost/common/cli.h"

namespace outpost::agent {
namespace {

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
  return readAgentSettings(cfg).outbox;
}

DrainSettings drainSettingsFrom(const config::Config& cfg) { return readAgentSettings(cfg).drain; }

std::vector<std::string> changedSettings(const config::Schema& schema, const config::Config& a,
                                         const config::Config& b) {
  std::vector<std::string> out;
  for (const auto& s : schema.settings()) {
    if (!sameValue(s, a, b)) out.push_back(s.key);
  }
  return out;
}

bool isReloadable(std::string_view key) { return agentSchema().isReloadable(key); }

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
      spdlog::set_level(spdlog::level::from_str(cli::readProcessSettings(next).log_level));
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

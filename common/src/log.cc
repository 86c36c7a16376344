#include "outpost/common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include "outpost/common/config.h"

namespace outpost {

void initLogging(const std::string& level, const std::string& program) {
  const auto lvl = spdlog::level::from_str(level);
  if (lvl == spdlog::level::off && level != "off") {
    throw config::ConfigError("log level '" + level +
                              "' is not one of trace, debug, info, warn, error, off");
  }
  auto logger = spdlog::stderr_color_mt(program);
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n: %v");
  spdlog::set_level(lvl);
  spdlog::flush_on(spdlog::level::info);
}

}  // namespace outpost

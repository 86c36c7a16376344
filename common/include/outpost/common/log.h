#pragma once

// Logging is spdlog's default logger (stderr, so systemd's journal picks it up). Programs call
// initLogging() once from main; everything else just uses spdlog::info() etc.

#include <string>

#include <spdlog/spdlog.h>

namespace outpost {

// `level`: trace, debug, info, warn, error, off. Throws config::ConfigError on an unknown level.
void initLogging(const std::string& level, const std::string& program);

}  // namespace outpost

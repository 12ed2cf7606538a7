// JSON-lines logging over spdlog: every line is one JSON object
// {"ts","level","msg", ...fields}. Thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string_view>
#include <utility>

#include "core/json.h"

namespace persona {

// Configures the process-wide logger (JSON lines, on stdout, or on stderr
// for the commands whose stdout is their output). `level` is one of trace,
// debug, info, warn, error, off; unknown names mean info.
void InitLogging(std::string_view level, bool to_stderr = false);

// Logs `msg` with extra fields, e.g. Log(spdlog::level::info, "listening",
// {{"http", "127.0.0.1:8080"}}).
void Log(spdlog::level::level_enum level, std::string_view msg, json::object fields = {});

inline void LogInfo(std::string_view msg, json::object fields = {}) {
  Log(spdlog::level::info, msg, std::move(fields));
}
inline void LogWarn(std::string_view msg, json::object fields = {}) {
  Log(spdlog::level::warn, msg, std::move(fields));
}
inline void LogError(std::string_view msg, json::object fields = {}) {
  Log(spdlog::level::err, msg, std::move(fields));
}

}  // namespace persona

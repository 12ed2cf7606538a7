#include "core/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

#include "core/clock.h"

namespace persona {

void InitLogging(std::string_view level, bool to_stderr) {
  spdlog::drop("persona");
  auto logger =
      to_stderr ? spdlog::stderr_logger_mt("persona") : spdlog::stdout_logger_mt("persona");
  // The message is already a complete JSON object; spdlog adds only the newline.
  logger->set_pattern("%v");
  logger->set_level(spdlog::level::from_str(std::string(level)));
  if (level != "off" && logger->level() == spdlog::level::off)
    logger->set_level(spdlog::level::info);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

void Log(spdlog::level::level_enum level, std::string_view msg, json::object fields) {
  auto* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  json::object line;
  line["ts"] = FormatRfc3339Millis(NowMillis());
  line["level"] = spdlog::level::to_string_view(level).data();
  line["msg"] = json::string_view(msg.data(), msg.size());
  for (auto& kv : fields) line[kv.key()] = std::move(kv.value());
  logger->log(level, "{}", json::serialize(line));
}

}  // namespace persona

// The built-in extractor's time per message (issue 12: ≤ 50 µs p99), in
// process: every user message of a conversations file (JSONL, "turns"),
// each extracted ROUNDS times against the default schema with an empty
// profile, every call timed on its own. Prints JSON {messages, calls,
// p50_us, p99_us, max_us, index_build_ms}. bench/run_extraction.sh runs it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "ai/builtin/cities.h"
#include "ai/builtin/extract.h"
#include "core/json.h"
#include "model/schema.h"

int main(int argc, char** argv) {
  using namespace persona;
  if (argc < 3) {
    std::cerr << "usage: persona_extract_bench SCHEMAS_DIR CONVERSATIONS.jsonl [ROUNDS]\n";
    return 2;
  }
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 20;
  auto schemas = model::LoadSchemas(argv[1]);
  if (!schemas.ok() || !schemas->count("default")) {
    std::cerr << "cannot load schemas from " << argv[1] << "\n";
    return 2;
  }
  const model::Schema& schema = *schemas->at("default");
  std::vector<std::string> messages;
  std::ifstream in(argv[2]);
  for (std::string line; std::getline(in, line);) {
    auto v = ParseJson(line);
    if (!v.ok() || !v->is_object()) continue;
    if (const auto* turns = v->get_object().if_contains("turns"); turns && turns->is_array())
      for (const auto& t : turns->get_array())
        if (t.is_string()) messages.emplace_back(t.get_string());
  }
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  ai::builtin::FindCity("Seoul");  // builds the gazetteer's index
  const double build_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  json::object profile;
  std::vector<double> us;
  us.reserve(messages.size() * rounds);
  size_t sink = 0;
  for (int r = 0; r < rounds; ++r) {
    for (const auto& m : messages) {
      const auto a = Clock::now();
      auto e = ai::builtin::ExtractDetailed(schema, profile, m, "", "en");
      const auto b = Clock::now();
      sink += e.changes.size();
      us.push_back(std::chrono::duration<double, std::micro>(b - a).count());
    }
  }
  std::sort(us.begin(), us.end());
  auto pct = [&](double q) {
    return us.empty() ? 0 : us[std::min(us.size() - 1, size_t(q * us.size()))];
  };
  std::printf(
      "{\"messages\": %zu, \"calls\": %zu, \"p50_us\": %.2f, \"p99_us\": %.2f, \"max_us\": %.2f, "
      "\"index_build_ms\": %.1f, \"changes\": %zu}\n",
      messages.size(), us.size(), pct(0.5), pct(0.99), us.empty() ? 0 : us.back(), build_ms,
      sink / std::max(rounds, 1));
  return 0;
}

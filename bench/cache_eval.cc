// persona_cache_eval: wrong hits and hit rates of the semantic response
// cache (src/ai/cache/semantic_cache.h) on CLINC150, in process, with the
// gate's real model.
//
// For the split asked for (val to choose the threshold, test to report):
//   - pairs: per intent (and for oos), the first half of its queries are
//     cached for one user, the second half asked. A hit is right when the
//     cached question has the asked question's intent, wrong otherwise (any
//     hit for or to an out-of-scope question is wrong). All 150 intents in
//     one partition: the hardest case for wrong hits.
//   - repeated-intent traffic: 300 users, each asking 10 questions drawn from
//     3 intents of their own (seeded), caching each answer that missed; the
//     share of questions answered from the cache, wrong hits, and hits
//     across users (a cached answer names its user).
//   - contrast pairs (eval/cache/contrast.tsv): a question and its opposite
//     (negated, reversed, another number or place); every hit is wrong.
// Each for every threshold from 0.70 to 0.98. Prints a table; the last line
// is the JSON that bench/run_ai.sh keeps.
//
// Usage: persona_cache_eval --model intent.bin --data data_oos_plus.json
//                           --contrast contrast.tsv --split val|test
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "ai/cache/semantic_cache.h"
#include "core/json.h"

namespace {

using persona::ai::AiReply;
using persona::ai::IntentGate;
using persona::ai::SemanticCache;
using persona::ai::SemanticCacheOptions;

struct Sample {
  std::string text, intent;
};

std::vector<Sample> Split(const persona::json::object& data, const char* name) {
  std::vector<Sample> out;
  for (const auto& row : data.at(name).as_array()) {
    const auto& a = row.as_array();
    out.push_back({std::string(a[0].as_string()), std::string(a[1].as_string())});
  }
  return out;
}

AiReply Answer(const std::string& user, const std::string& intent) {
  AiReply r;
  r.text = user + "\x1f" + intent;  // who and what it answered
  r.source = "llm";
  return r;
}

struct Counts {
  int lookups = 0, hits = 0, wrong = 0, cross_user = 0;
  double HitRate() const { return lookups ? double(hits) / lookups : 0; }
  double WrongRate() const { return lookups ? double(wrong) / lookups : 0; }
};

// Checks a hit: right when it answered the same intent (never oos) for the
// same user.
void Score(const std::optional<SemanticCache::Hit>& hit, const std::string& user,
           const std::string& intent, Counts* c) {
  ++c->lookups;
  if (!hit) return;
  ++c->hits;
  const std::string& t = hit->reply.text;
  const size_t sep = t.find('\x1f');
  const std::string who = t.substr(0, sep), what = t.substr(sep + 1);
  if (who != user) ++c->cross_user;
  if (who != user || what != intent || intent == "oos") ++c->wrong;
}

Counts Pairs(const IntentGate& gate, SemanticCacheOptions o, const std::vector<Sample>& samples) {
  o.max_per_partition = samples.size();  // everything cached stays
  SemanticCache cache(&gate, o);
  std::map<std::string, std::vector<const Sample*>> by_intent;
  for (const auto& s : samples) by_intent[s.intent].push_back(&s);
  std::vector<const Sample*> asked;
  for (const auto& [intent, list] : by_intent) {
    const size_t half = list.size() / 2;
    for (size_t i = 0; i < list.size(); ++i) {
      if (i < half) {
        cache.Put(cache.Prepare("p", "u", list[i]->text), Answer("u", intent));
      } else {
        asked.push_back(list[i]);
      }
    }
  }
  Counts c;
  for (const Sample* s : asked)
    Score(cache.Get(cache.Prepare("p", "u", s->text)), "u", s->intent, &c);
  return c;
}

Counts Traffic(const IntentGate& gate, const SemanticCacheOptions& o,
               const std::vector<Sample>& samples) {
  SemanticCache cache(&gate, o);
  std::map<std::string, std::vector<const Sample*>> by_intent;
  for (const auto& s : samples)
    if (s.intent != "oos") by_intent[s.intent].push_back(&s);
  std::vector<std::string> intents;
  for (const auto& [k, v] : by_intent) intents.push_back(k);
  std::mt19937 rng(7);
  Counts c;
  for (int u = 0; u < 300; ++u) {
    const std::string user = "user" + std::to_string(u);
    std::shuffle(intents.begin(), intents.end(), rng);
    std::vector<const Sample*> pool;
    for (int i = 0; i < 3; ++i)
      pool.insert(pool.end(), by_intent[intents[i]].begin(), by_intent[intents[i]].end());
    std::shuffle(pool.begin(), pool.end(), rng);
    for (int q = 0; q < 10 && q < static_cast<int>(pool.size()); ++q) {
      auto query = cache.Prepare("p:" + user, user, pool[q]->text);
      auto hit = cache.Get(query);
      Score(hit, user, pool[q]->intent, &c);
      if (!hit) cache.Put(query, Answer(user, pool[q]->intent));
    }
  }
  return c;
}

Counts Contrast(const IntentGate& gate, const SemanticCacheOptions& o,
                const std::vector<std::pair<std::string, std::string>>& pairs) {
  Counts c;
  for (const auto& [cached, asked] : pairs) {
    SemanticCache cache(&gate, o);
    cache.Put(cache.Prepare("p", "u", cached), Answer("u", "cached"));
    ++c.lookups;
    if (cache.Get(cache.Prepare("p", "u", asked))) {
      ++c.hits, ++c.wrong;
      if (std::getenv("PERSONA_SHOW_CONTRAST"))
        std::fprintf(stderr, "contrast hit at %.2f: %s / %s\n", o.threshold, cached.c_str(),
                     asked.c_str());
    }
  }
  return c;
}

std::string Arg(int argc, char** argv, const std::string& name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (argv[i] == name) return argv[i + 1];
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string model = Arg(argc, argv, "--model"), data_path = Arg(argc, argv, "--data"),
                    contrast_path = Arg(argc, argv, "--contrast"),
                    split = Arg(argc, argv, "--split");
  if (model.empty() || data_path.empty() || contrast_path.empty() ||
      (split != "val" && split != "test")) {
    std::cerr << "usage: persona_cache_eval --model intent.bin --data data_oos_plus.json "
                 "--contrast contrast.tsv --split val|test\n";
    return 2;
  }
  auto gate = IntentGate::Load(model, 0);
  if (!gate.ok()) {
    std::cerr << gate.status().message() << "\n";
    return 2;
  }
  std::ifstream in(data_path);
  std::stringstream buf;
  buf << in.rdbuf();
  auto parsed = persona::ParseJson(buf.str());
  if (!parsed.ok() || !parsed->is_object()) {
    std::cerr << "cannot read " << data_path << "\n";
    return 2;
  }
  const auto& data = parsed->as_object();
  std::vector<Sample> samples = Split(data, split.c_str());
  for (auto& s : Split(data, split == "val" ? "oos_val" : "oos_test")) samples.push_back(s);
  std::vector<std::pair<std::string, std::string>> contrast;
  std::ifstream cf(contrast_path);
  for (std::string line; std::getline(cf, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    contrast.emplace_back(line.substr(0, tab), line.substr(tab + 1));
  }
  SemanticCacheOptions defaults;
  const std::string rare_arg = Arg(argc, argv, "--rare"),
                    conf_arg = Arg(argc, argv, "--confidence");
  const int64_t rare = rare_arg.empty() ? defaults.rare_count : std::atoll(rare_arg.c_str());
  const double confidence =
      conf_arg.empty() ? defaults.min_intent_confidence : std::atof(conf_arg.c_str());
  std::printf(
      "semantic cache on CLINC150 %s (+ oos), rare words < %lld, intent confidence >= %.2f, %zu "
      "contrast pairs\n",
      split.c_str(), static_cast<long long>(rare), confidence, contrast.size());
  std::printf("%9s  %20s  %30s  %14s\n", "threshold", "pairs: hit / wrong",
              "traffic: hit / wrong / cross", "contrast hits");
  persona::json::array curve;
  for (int t = 70; t <= 98; t += 2) {
    SemanticCacheOptions o;
    o.threshold = t / 100.0;
    o.rare_count = rare;
    o.min_intent_confidence = confidence;
    const Counts p = Pairs(**gate, o, samples), tr = Traffic(**gate, o, samples),
                 ct = Contrast(**gate, o, contrast);
    std::printf("%9.2f  %9.2f%% / %6.2f%%  %9.2f%% / %6.2f%% / %6d  %7d of %3d\n", o.threshold,
                100 * p.HitRate(), 100 * p.WrongRate(), 100 * tr.HitRate(), 100 * tr.WrongRate(),
                tr.cross_user, ct.hits, ct.lookups);
    persona::json::object row;
    row["threshold"] = o.threshold;
    row["pairs_lookups"] = p.lookups;
    row["pairs_hit_rate"] = p.HitRate();
    row["pairs_wrong_rate"] = p.WrongRate();
    row["traffic_lookups"] = tr.lookups;
    row["traffic_hit_rate"] = tr.HitRate();
    row["traffic_wrong_rate"] = tr.WrongRate();
    row["traffic_cross_user_hits"] = tr.cross_user;
    row["contrast_pairs"] = ct.lookups;
    row["contrast_hits"] = ct.hits;
    curve.push_back(std::move(row));
  }
  persona::json::object out;
  out["split"] = split;
  out["rare_count"] = rare;
  out["min_intent_confidence"] = confidence;
  out["curve"] = std::move(curve);
  std::cout << persona::json::serialize(out) << "\n";
  return 0;
}

// Feature flags: flagd's fractional bucketing against flagd's own test
// vectors (core/pkg/evaluator/fractional_test.go at bbb05d4 and
// flagd-testbed's evaluator/gherkin/fractional.feature at 82ba89e), the
// flag-definition format, resolution reasons, and hot reload.
#include "flags/flags.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "flags/json_logic.h"

namespace persona::flags {
namespace {

TEST(Murmur3Test, MatchesTheReferenceHashes) {
  // Hashes flagd-testbed's hash-edge scenarios were chosen for.
  EXPECT_EQ(Murmur3("ejOoVL"), 0u);
  EXPECT_EQ(Murmur3("bY9fO-"), 1u);
  EXPECT_EQ(Murmur3("SI7p-"), 2147483647u);
  EXPECT_EQ(Murmur3("6LvT0"), 2147483648u);
  EXPECT_EQ(Murmur3("ceQdGm"), 4294967295u);
  EXPECT_EQ(Murmur3("headerColorrachel@faas.com"), 1805633606u);
  EXPECT_EQ(Murmur3("fractional-flagjack"), 2682799072u);
  EXPECT_EQ(Murmur3(""), 0u);
}

std::shared_ptr<const FlagSet> Parse(const std::string& text) {
  auto s = FlagSet::Parse(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *s : nullptr;
}

const char* kColors = R"("variants": {"red": "#FF0000", "blue": "#0000FF", "green": "#00FF00",
                                      "yellow": "#FFFF00"}, "defaultVariant": "red")";

std::string ColorFlag(const std::string& key, const std::string& targeting) {
  return std::string(R"({"flags": {")") + key + R"(": {"state": "ENABLED", )" + kColors +
         R"(, "targeting": )" + targeting + "}}}";
}

json::object Ctx(std::initializer_list<std::pair<std::string, json::value>> kv) {
  json::object o;
  for (const auto& [k, v] : kv) o[k] = v;
  return o;
}

TEST(FractionalTest, FlagdCoreVectors) {
  const std::string if_faas =
      R"({"if": [{"in": ["@faas.com", {"var": ["email"]}]}, {"fractional": [)";
  const std::string four = R"(["red", 25], ["blue", 25], ["green", 25], ["yellow", 25]]}, null]})";
  auto header = Parse(
      ColorFlag("headerColor",
                if_faas + R"({"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, )" + four));
  auto seeded = Parse(ColorFlag("customSeededHeaderColor",
                                if_faas + R"({"cat": ["my-seed", {"var": "email"}]}, )" + four));
  const std::pair<const char*, const char*> kHeader[] = {{"rachel@faas.com", "blue"},
                                                         {"monica@faas.com", "yellow"},
                                                         {"joey@faas.com", "red"},
                                                         {"ross@faas.com", "blue"}};
  for (const auto& [email, want] : kHeader) {
    auto r = header->Evaluate("headerColor", "", Ctx({{"email", json::value(email)}}));
    EXPECT_EQ(r.variant, want) << email;
    EXPECT_EQ(r.reason, "TARGETING_MATCH");
  }
  const std::pair<const char*, const char*> kSeeded[] = {{"rachel@faas.com", "green"},
                                                         {"monica@faas.com", "red"},
                                                         {"joey@faas.com", "blue"},
                                                         {"ross@faas.com", "green"}};
  for (const auto& [email, want] : kSeeded)
    EXPECT_EQ(seeded->Evaluate("customSeededHeaderColor", "", Ctx({{"email", json::value(email)}}))
                  .variant,
              want)
        << email;
  struct Case {
    const char* fractional;
    json::object context;
    std::string targeting_key;
    const char* variant;
    const char* reason;
  };
  const Case kCases[] = {
      {R"([{"var": "email"}, ["red", 25], ["blue", 25], ["green", 25], ["yellow", 25]])",
       Ctx({{"email", "ross@faas.com"}}), "", "red", "TARGETING_MATCH"},
      {R"(["email", ["red", 50], ["blue", 25], ["green", 25]])", Ctx({{"email", "test4@faas.com"}}),
       "", "green", "TARGETING_MATCH"},
      {R"([{"var": "email"}, ["red", 25], ["blue", 25]])", Ctx({{"email", "foo@foo.com"}}), "",
       "blue", "TARGETING_MATCH"},
      {R"([{"var": "email"}, ["red"], ["blue"]])", Ctx({{"email", "foo@foo.com"}}), "", "blue",
       "TARGETING_MATCH"},
      {R"([["blue", 50], ["green", 50]])", {}, "foo@foo.com", "green", "TARGETING_MATCH"},
      {R"([{"var": "email"}, ["red", 50], ["blue", 50]])",
       {},
       "foo@foo.com",
       "blue",
       "TARGETING_MATCH"},
      {R"([{"var": "email"}, ["red", 25], ["blue", 25], ["green", 25], ["yellow", 25]])",
       {},
       "",
       "red",
       "DEFAULT"},
      {R"([["blue", 50], ["green", 50]])", {}, "", "red", "DEFAULT"},
      {R"([["blue", 1]])", {}, "any-user", "blue", "TARGETING_MATCH"},
      {R"([{"var": "email"}, ["green", 100]])", Ctx({{"email", "any@user.com"}}), "", "green",
       "TARGETING_MATCH"},
      {R"([["yellow"]])", {}, "any-user", "yellow", "TARGETING_MATCH"},
      {R"(["email", [{"if": [{"in": ["us", {"var": "locale"}]}, "red", "blue"]}, 25], ["green", 75]])",
       Ctx({{"locale", "us"}}), "", "green", "TARGETING_MATCH"},
      {R"(["email", ["red", {"var": "redWeight"}], ["blue", {"var": "blueWeight"}],
                    ["green", {"var": "greenWeight"}]])",
       Ctx({{"redWeight", 0}, {"blueWeight", 1}, {"greenWeight", 0}}), "", "blue",
       "TARGETING_MATCH"},
      {R"(["email", ["red", {"var": "redWeight"}], ["blue", {"var": "blueWeight"}],
                    ["green", {"var": "greenWeight"}]])",
       Ctx({{"redWeight", 1}, {"blueWeight", 0}, {"greenWeight", 0}}), "", "red",
       "TARGETING_MATCH"},
      {R"([["red", 25.5], ["blue", 74.5]])", {}, "any-user", "red", "DEFAULT"},  // not integers
      {R"([["red", 0], ["blue", 0]])", {}, "any-user", "red", "DEFAULT"},
  };
  for (const Case& c : kCases) {
    auto set =
        Parse(ColorFlag("headerColor", std::string(R"({"fractional": )") + c.fractional + "}"));
    auto r = set->Evaluate("headerColor", c.targeting_key, c.context);
    EXPECT_EQ(r.variant, c.variant) << c.fractional;
    EXPECT_EQ(r.reason, c.reason) << c.fractional;
  }
  auto clamped = Parse(R"({"flags": {"clampedWeightFlag": {"state": "ENABLED",
      "variants": {"red": 1, "green": 2, "blue": 3}, "defaultVariant": "blue",
      "targeting": {"fractional": [["red", -1000], ["green", 1]]}}}})");
  EXPECT_EQ(clamped->Evaluate("clampedWeightFlag", "some-targeting-key").variant, "green");
}

TEST(FractionalTest, FlagdTestbedVectors) {
  auto set = Parse(R"({"flags": {
    "fractional-flag": {"state": "ENABLED", "defaultVariant": "wild",
      "variants": {"clubs": "clubs", "diamonds": "diamonds", "hearts": "hearts", "spades": "spades",
                   "wild": "wild"},
      "targeting": {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]},
                   ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}},
    "fractional-flag-shorthand": {"state": "ENABLED", "defaultVariant": "draw",
      "variants": {"heads": "heads", "tails": "tails", "draw": "draw"},
      "targeting": {"fractional": [["heads"], ["tails", 1]]}},
    "fractional-flag-A-shared-seed": {"state": "ENABLED", "defaultVariant": "wild",
      "variants": {"clubs": "clubs", "diamonds": "diamonds", "hearts": "hearts", "spades": "spades",
                   "wild": "wild"},
      "targeting": {"fractional": [{"cat": ["shared-seed", {"var": "user.name"}]},
                   ["clubs", 25], ["diamonds", 25], ["hearts", 25], ["spades", 25]]}},
    "fractional-hash-edge-flag": {"state": "ENABLED", "defaultVariant": "lower",
      "variants": {"lower": "lower", "upper": "upper"},
      "targeting": {"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]}},
    "fractional-nested-var-flag": {"state": "ENABLED", "defaultVariant": "fallback",
      "variants": {"red": "red", "green": "green", "blue": "blue", "fallback": "fallback"},
      "targeting": {"fractional": [{"var": "targetingKey"}, [{"var": "color"}, 50], ["blue", 50]]}},
    "fractional-as-condition-flag": {"state": "ENABLED", "defaultVariant": "fallback",
      "variants": {"big": "hundreds", "small": "ones", "fallback": "zero"},
      "targeting": {"if": [{"fractional": [[false, 0], [true, 100]]}, "big", "small"]}},
    "fractional-negative-weight-flag": {"state": "ENABLED", "defaultVariant": "fallback",
      "variants": {"one": "one", "two": "two", "fallback": "fallback"},
      "targeting": {"fractional": [{"var": "targetingKey"}, ["one", -50], ["two", 100]]}},
    "fractional-null-bucket-key-flag": {"state": "ENABLED", "defaultVariant": "fallback",
      "variants": {"one": "one", "two": "two", "fallback": "fallback"},
      "targeting": {"fractional": [{"var": "missing_key"}, ["one", 50], ["two", 50]]}}
  }})");
  auto user = [](const char* name) {
    json::object u;
    u["name"] = name;
    return Ctx({{"user", json::value(u)}});
  };
  const std::pair<const char*, const char*> kCards[] = {{"jack", "hearts"},
                                                        {"queen", "spades"},
                                                        {"ten", "clubs"},
                                                        {"nine", "diamonds"},
                                                        {"3", "clubs"}};
  for (const auto& [name, want] : kCards)
    EXPECT_EQ(set->Evaluate("fractional-flag", "", user(name)).variant, want) << name;
  EXPECT_EQ(set->Evaluate("fractional-flag-shorthand", "jon@company.com").variant, "heads");
  EXPECT_EQ(set->Evaluate("fractional-flag-shorthand", "jane@company.com").variant, "tails");
  const std::pair<const char*, const char*> kShared[] = {
      {"seven", "hearts"}, {"eight", "diamonds"}, {"nine", "clubs"}, {"two", "spades"}};
  for (const auto& [name, want] : kShared)
    EXPECT_EQ(set->Evaluate("fractional-flag-A-shared-seed", "", user(name)).variant, want) << name;
  const std::pair<const char*, const char*> kEdges[] = {{"ejOoVL", "lower"},
                                                        {"bY9fO-", "lower"},
                                                        {"SI7p-", "lower"},
                                                        {"6LvT0", "upper"},
                                                        {"ceQdGm", "upper"}};
  for (const auto& [key, want] : kEdges)
    EXPECT_EQ(set->Evaluate("fractional-hash-edge-flag", key).variant, want) << key;
  EXPECT_EQ(set->Evaluate("fractional-nested-var-flag", "jon@company.com", Ctx({{"color", "red"}}))
                .variant,
            "red");
  EXPECT_EQ(set->Evaluate("fractional-nested-var-flag", "user1", Ctx({{"color", "red"}})).variant,
            "blue");
  auto missing =
      set->Evaluate("fractional-nested-var-flag", "jon@company.com", Ctx({{"color", "yellow"}}));
  EXPECT_EQ(missing.reason, "ERROR");  // not a variant: the caller's default
  EXPECT_EQ(missing.error_code, "GENERAL");
  EXPECT_EQ(set->Evaluate("fractional-as-condition-flag", "some-targeting-key").value, "hundreds");
  EXPECT_EQ(set->Evaluate("fractional-negative-weight-flag", "any-user").variant, "two");
  auto null_key = set->Evaluate("fractional-null-bucket-key-flag", "");
  EXPECT_EQ(null_key.variant, "fallback");
  EXPECT_EQ(null_key.reason, "DEFAULT");
}

TEST(FlagSetTest, ReasonsAndTheDefinitionFormat) {
  auto set = Parse(R"({"$evaluators": {"is_ballmer": {"==": ["ballmer@macrosoft.com",
                                                             {"var": ["email"]}]}},
    "flags": {
      "static": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
      "off": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"},
      "ref": {"state": "ENABLED", "variants": {"hi": "hi", "bye": "bye"}, "defaultVariant": "bye",
              "targeting": {"if": [{"$ref": "is_ballmer"}, "hi", "bye"]}},
      "nullv": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "two",
                "targeting": {"if": [true, null, "one"]}},
      "bad": {"state": "ENABLED", "variants": {"one": 1}, "defaultVariant": "one",
              "targeting": {"invalid": ["this is not valid targeting"]}},
      "boolv": {"state": "ENABLED", "variants": {"false": 1, "true": 2}, "defaultVariant": "false",
                "targeting": {"if": [true, true, false]}},
      "semver": {"state": "ENABLED", "variants": {"new": true, "old": false}, "defaultVariant": "old",
                 "targeting": {"if": [{"sem_ver": [{"var": "version"}, ">=", "1.2.0"]}, "new", "old"]}},
      "prefix": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "b",
                 "targeting": {"if": [{"starts_with": [{"var": "targetingKey"}, "admin-"]}, "a", "b"]}}
    }})");
  EXPECT_EQ(set->Evaluate("static", "u").reason, "STATIC");
  EXPECT_EQ(set->Evaluate("static", "u").value, true);
  EXPECT_EQ(set->Evaluate("off", "u").reason, "DISABLED");
  EXPECT_TRUE(set->Evaluate("off", "u").value.is_null());
  EXPECT_EQ(set->Evaluate("missing", "u").error_code, "FLAG_NOT_FOUND");
  EXPECT_EQ(set->Evaluate("ref", "u", Ctx({{"email", "ballmer@macrosoft.com"}})).value, "hi");
  EXPECT_EQ(set->Evaluate("ref", "u", Ctx({{"email", "x@y.z"}})).value, "bye");
  EXPECT_EQ(set->Evaluate("nullv", "u").reason, "DEFAULT");
  EXPECT_EQ(set->Evaluate("nullv", "u").value, 2);
  EXPECT_EQ(set->Evaluate("bad", "u").error_code, "PARSE_ERROR");
  EXPECT_EQ(set->Evaluate("boolv", "u").value, 2);
  EXPECT_EQ(set->Evaluate("semver", "u", Ctx({{"version", "1.10.0"}})).variant, "new");
  EXPECT_EQ(set->Evaluate("semver", "u", Ctx({{"version", "v1.1.9"}})).variant, "old");
  EXPECT_EQ(set->Evaluate("prefix", "admin-7").variant, "a");
  EXPECT_TRUE(set->Bool("static", "u", false));
  EXPECT_TRUE(set->Bool("off", "u", true));  // disabled: the caller's default
  EXPECT_FALSE(set->Bool("missing", "u", false));
}

TEST(FlagSetTest, BadFilesAreRefusedWithTheFlagNamed) {
  for (
      const auto& [text, want] : std::vector<std::pair<std::string, std::string>>{
          {"not json", "JSON"},
          {R"({"flags": []})", "'flags'"},
          {R"({"flags": {"f": {"variants": {"a": 1}, "defaultVariant": "a"}}})",
           "flag 'f': 'state'"},
          {R"({"flags": {"f": {"state": "ENABLED", "variants": {}}}})", "flag 'f': 'variants'"},
          {R"({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "b"}}})",
           "flag 'f': 'defaultVariant'"},
          {R"({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}}}})",
           "another type"},
          {R"({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1},
                "targeting": {"$ref": "nope"}}}})",
           "$evaluators"},
          {std::string(R"({"flags": {}, "pad": ")") + std::string(2 << 20, 'x') + "\"}", "1 MiB"},
      }) {
    auto s = FlagSet::Parse(text);
    ASSERT_FALSE(s.ok()) << text.substr(0, 80);
    EXPECT_NE(s.status().message().find(want), std::string::npos) << s.status().message();
  }
  // A rule nested too deep is an error, not a crash.
  std::string deep;
  for (int i = 0; i < 200; ++i) deep += R"({"!": [)";
  deep += "true";
  for (int i = 0; i < 200; ++i) deep += "]}";
  auto set = FlagSet::Parse(R"({"flags": {"d": {"state": "ENABLED", "variants": {"true": 1},
                                "defaultVariant": "true", "targeting": )" +
                            deep + "}}}");
  if (set.ok()) {
    EXPECT_EQ((*set)->Evaluate("d", "u").reason, "ERROR");
  }
}

TEST(FlagSetTest, EvaluatorsThatExpandExponentiallyAreRefused) {
  // e0 uses e1 ten times, e1 uses e2 ten times, …: 10^12 nodes from a small file.
  std::string evaluators;
  for (int i = 0; i < 12; ++i) {
    std::string uses;
    for (int k = 0; k < 10; ++k)
      uses += std::string(k ? "," : "") + R"({"$ref": "e)" + std::to_string(i + 1) + "\"}";
    evaluators += R"(")" + ("e" + std::to_string(i)) + R"(": {"or": [)" + uses + "]},";
  }
  evaluators += R"("e12": true)";
  auto s =
      FlagSet::Parse(R"({"$evaluators": {)" + evaluators + R"(}, "flags": {"f": {"state": "ENABLED",
      "variants": {"a": 1}, "defaultVariant": "a", "targeting": {"$ref": "e0"}}}})");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("100,000 nodes"), std::string::npos) << s.status();
}

TEST(FlagFileTest, ReloadsAGoodFileAndKeepsTheLastOnABadOne) {
  char dir[] = "/tmp/persona-flags-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/flags.json";
  auto write = [&](const std::string& variant) {
    const std::string tmp = path + ".tmp";
    std::ofstream(tmp) << R"({"flags": {"f": {"state": "ENABLED", "variants": {"a": "A", "b": "B"},
                              "defaultVariant": ")"
                       << variant << R"("}}})";
    ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
  };
  write("a");
  auto file = FlagFile::Open(path, 20);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Current()->Evaluate("f", "u").value, "A");
  write("b");
  (*file)->Check();
  EXPECT_EQ((*file)->Current()->Evaluate("f", "u").value, "B");
  std::ofstream(path) << "{ broken";
  (*file)->Check();
  EXPECT_EQ((*file)->Current()->Evaluate("f", "u").value, "B");  // the last good one
  write("a");
  for (int i = 0; i < 200 && (*file)->Current()->Evaluate("f", "u").value != "A"; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // the watcher's poll
  EXPECT_EQ((*file)->Current()->Evaluate("f", "u").value, "A");
  EXPECT_FALSE(FlagFile::Open(std::string(dir) + "/missing.json").ok());
  std::remove(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace persona::flags

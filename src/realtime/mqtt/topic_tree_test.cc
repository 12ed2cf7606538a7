#include "realtime/mqtt/topic_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "realtime/mqtt/utf8.h"

namespace persona::realtime::mqtt {
namespace {

using Matches = std::vector<std::pair<uint64_t, uint8_t>>;

Matches Sorted(Matches m) {
  std::sort(m.begin(), m.end());
  return m;
}

Matches MatchOf(const TopicTree& tree, std::string_view topic) {
  Matches out;
  tree.Match(topic, &out);
  return Sorted(out);
}

TEST(Utf8Test, AcceptsWellFormedAndRejectsMqttForbidden) {
  EXPECT_TRUE(ValidMqttUtf8(""));
  EXPECT_TRUE(ValidMqttUtf8("plain ascii"));
  EXPECT_TRUE(ValidMqttUtf8("caf\xC3\xA9"));   // U+00E9
  EXPECT_TRUE(ValidMqttUtf8("\xE2\x82\xAC"));  // U+20AC
  EXPECT_TRUE(
      ValidMqttUtf8("\xEF\xBB\xBF"
                    "bom"));                            // U+FEFF is allowed
  EXPECT_TRUE(ValidMqttUtf8("\xF0\x9F\x98\x80"));       // U+1F600
  EXPECT_TRUE(ValidMqttUtf8("\xF4\x8F\xBF\xBF"));       // U+10FFFF
  EXPECT_TRUE(ValidMqttUtf8("\xED\x9F\xBF"));           // U+D7FF
  EXPECT_FALSE(ValidMqttUtf8(std::string("a\0b", 3)));  // U+0000 [MQTT-1.5.3-2]
  EXPECT_FALSE(ValidMqttUtf8("\xED\xA0\x80"));          // U+D800 [MQTT-1.5.3-1]
  EXPECT_FALSE(ValidMqttUtf8("\xED\xBF\xBF"));          // U+DFFF
  EXPECT_FALSE(ValidMqttUtf8("\xC0\x80"));              // overlong NUL
  EXPECT_FALSE(ValidMqttUtf8("\xC1\xBF"));              // overlong
  EXPECT_FALSE(ValidMqttUtf8("\xE0\x80\xAF"));          // overlong
  EXPECT_FALSE(ValidMqttUtf8("\xF0\x80\x80\xAF"));      // overlong
  EXPECT_FALSE(ValidMqttUtf8("\xF4\x90\x80\x80"));      // > U+10FFFF
  EXPECT_FALSE(ValidMqttUtf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(ValidMqttUtf8("\x80"));  // lone continuation
  EXPECT_FALSE(ValidMqttUtf8("\xC3"));  // truncated
  EXPECT_FALSE(ValidMqttUtf8("\xE2\x82"));
  EXPECT_FALSE(ValidMqttUtf8("\xE2\x28\xA1"));  // bad continuation
  EXPECT_FALSE(ValidMqttUtf8("\xFF"));
}

TEST(TopicValidationTest, Names) {
  EXPECT_TRUE(ValidTopicName("sport/tennis/player1"));
  EXPECT_TRUE(ValidTopicName("/"));
  EXPECT_TRUE(ValidTopicName("/finance"));
  EXPECT_TRUE(ValidTopicName("$SYS/broker"));
  EXPECT_TRUE(ValidTopicName("a b"));
  EXPECT_FALSE(ValidTopicName(""));  // [MQTT-4.7.3-1]
  EXPECT_FALSE(ValidTopicName("sport/+"));
  EXPECT_FALSE(ValidTopicName("sport/#"));
  EXPECT_FALSE(ValidTopicName("a#b"));
  EXPECT_FALSE(ValidTopicName(std::string("a\0b", 3)));
  EXPECT_FALSE(ValidTopicName("\xED\xA0\x80"));
  EXPECT_TRUE(ValidTopicName(std::string(65535, 'a')));
  EXPECT_FALSE(ValidTopicName(std::string(65536, 'a')));
}

TEST(TopicValidationTest, FiltersFromSpec) {
  // §4.7.1.2 and §4.7.1.3 examples.
  EXPECT_TRUE(ValidTopicFilter("sport/tennis/player1/#"));
  EXPECT_TRUE(ValidTopicFilter("sport/tennis/#"));
  EXPECT_FALSE(ValidTopicFilter("sport/tennis#"));
  EXPECT_FALSE(ValidTopicFilter("sport/tennis/#/ranking"));
  EXPECT_TRUE(ValidTopicFilter("#"));
  EXPECT_TRUE(ValidTopicFilter("+"));
  EXPECT_TRUE(ValidTopicFilter("+/tennis/#"));
  EXPECT_FALSE(ValidTopicFilter("sport+"));
  EXPECT_TRUE(ValidTopicFilter("sport/+/player1"));
  EXPECT_TRUE(ValidTopicFilter("/+"));
  EXPECT_TRUE(ValidTopicFilter("+/+"));
  EXPECT_TRUE(ValidTopicFilter("/"));
  EXPECT_TRUE(ValidTopicFilter("//#"));
  EXPECT_TRUE(ValidTopicFilter("$SYS/#"));
  EXPECT_FALSE(ValidTopicFilter(""));
  EXPECT_FALSE(ValidTopicFilter("##"));
  EXPECT_FALSE(ValidTopicFilter("#/"));
  EXPECT_FALSE(ValidTopicFilter("++"));
  EXPECT_FALSE(ValidTopicFilter("a/+b"));
  EXPECT_FALSE(ValidTopicFilter("a/b+/c"));
  EXPECT_FALSE(ValidTopicFilter(std::string("a/\0", 3)));
  EXPECT_FALSE(ValidTopicFilter(std::string(65536, 'a')));
}

struct MatchCase {
  const char* filter;
  const char* topic;
  bool matches;
};

// The spec's examples (§4.7) plus edge cases around empty levels and "x/#" matching "x".
const MatchCase kMatchCases[] = {
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/tennis/player1/#", "sport/tennis/player2", false},
    {"sport/tennis/player1/#", "sport/tennis", false},
    {"sport/#", "sport", true},
    {"sport/#", "sport/", true},
    {"sport/#", "sports", false},
    {"#", "sport", true},
    {"#", "/", true},
    {"#", "a/b/c", true},
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player2", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+", "sport", true},
    {"+", "/finance", false},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"/finance", "/finance", true},
    {"finance", "/finance", false},
    {"+/tennis/#", "sport/tennis", true},
    {"+/tennis/#", "sport/tennis/x/y", true},
    {"sport/+/player1", "sport/tennis/player1", true},
    {"sport/+/player1", "sport/tennis/player2", false},
    {"+/+/+", "a/b", false},
    {"a/b", "a/b/c", false},
    {"a/b/c", "a/b", false},
    {"+/#", "a", true},
    {"/", "/", true},
    {"+", "", true},
    // $-topics [MQTT-4.7.2-1].
    {"#", "$SYS/monitor/Clients", false},
    {"+/monitor/Clients", "$SYS/monitor/Clients", false},
    {"$SYS/#", "$SYS/monitor/Clients", true},
    {"$SYS/monitor/+", "$SYS/monitor/Clients", true},
    {"$SYS/#", "$SYS", true},
    {"+", "$SYS", false},
    {"a/+", "a/$b", true},
    {"a/#", "a/$b", true},
};

TEST(TopicMatchesTest, SpecTable) {
  for (const MatchCase& c : kMatchCases) {
    EXPECT_EQ(TopicMatches(c.filter, c.topic), c.matches)
        << "filter=" << c.filter << " topic=" << c.topic;
  }
}

TEST(TopicTreeTest, SpecTableAgreesWithTopicMatches) {
  for (const MatchCase& c : kMatchCases) {
    TopicTree tree;
    ASSERT_TRUE(tree.Add(c.filter, 7, 1)) << c.filter;
    const Matches m = MatchOf(tree, c.topic);
    EXPECT_EQ(!m.empty(), c.matches) << "filter=" << c.filter << " topic=" << c.topic;
  }
}

TEST(TopicTreeTest, AddRejectsInvalid) {
  TopicTree tree;
  EXPECT_FALSE(tree.Add("a/#/b", 1, 0));
  EXPECT_FALSE(tree.Add("", 1, 0));
  EXPECT_FALSE(tree.Add("a", 1, 3));
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_TRUE(tree.empty());
}

TEST(TopicTreeTest, AddReplacesQos) {
  TopicTree tree;
  EXPECT_TRUE(tree.Add("a/b", 1, 0));
  EXPECT_TRUE(tree.Add("a/b", 1, 2));
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(MatchOf(tree, "a/b"), (Matches{{1, 2}}));
  EXPECT_TRUE(tree.Add("a/b", 1, 1));
  EXPECT_EQ(MatchOf(tree, "a/b"), (Matches{{1, 1}}));
}

TEST(TopicTreeTest, MaxQosDedupe) {
  TopicTree tree;
  ASSERT_TRUE(tree.Add("session/abc/events", 1, 0));
  ASSERT_TRUE(tree.Add("session/+/events", 1, 2));
  ASSERT_TRUE(tree.Add("session/#", 1, 1));
  ASSERT_TRUE(tree.Add("#", 2, 0));
  ASSERT_TRUE(tree.Add("session/abc/events", 2, 1));
  ASSERT_TRUE(tree.Add("session/abc/events", 3, 0));
  ASSERT_TRUE(tree.Add("other", 4, 2));
  EXPECT_EQ(tree.size(), 7u);
  EXPECT_EQ(MatchOf(tree, "session/abc/events"), (Matches{{1, 2}, {2, 1}, {3, 0}}));
  EXPECT_EQ(MatchOf(tree, "session/xyz/events"), (Matches{{1, 2}, {2, 0}}));
  EXPECT_EQ(MatchOf(tree, "session"), (Matches{{1, 1}, {2, 0}}));
  EXPECT_EQ(MatchOf(tree, "other"), (Matches{{2, 0}, {4, 2}}));
  EXPECT_EQ(MatchOf(tree, "$SYS/x"), Matches{});
}

TEST(TopicTreeTest, MatchClearsOutput) {
  TopicTree tree;
  ASSERT_TRUE(tree.Add("a", 1, 0));
  Matches out = {{99, 1}};
  tree.Match("a", &out);
  EXPECT_EQ(out, (Matches{{1, 0}}));
  tree.Match("b", &out);
  EXPECT_TRUE(out.empty());
}

TEST(TopicTreeTest, Remove) {
  TopicTree tree;
  ASSERT_TRUE(tree.Add("a/b", 1, 1));
  ASSERT_TRUE(tree.Add("a/+", 1, 0));
  ASSERT_TRUE(tree.Add("a/#", 1, 0));
  ASSERT_TRUE(tree.Add("a/b", 2, 0));
  ASSERT_TRUE(tree.Add("#", 3, 0));
  EXPECT_EQ(tree.size(), 5u);

  EXPECT_FALSE(tree.Remove("a/c", 1));  // Never subscribed.
  EXPECT_FALSE(tree.Remove("a/b", 9));  // Unknown subscriber.
  EXPECT_TRUE(tree.Remove("a/b", 1));
  EXPECT_FALSE(tree.Remove("a/b", 1));  // Already gone.
  EXPECT_EQ(tree.size(), 4u);
  EXPECT_EQ(MatchOf(tree, "a/b"), (Matches{{1, 0}, {2, 0}, {3, 0}}));

  EXPECT_FALSE(tree.Remove("a/+/", 1));   // Not the filter it holds.
  EXPECT_FALSE(tree.Remove("a/#/b", 1));  // Not a valid filter.
  EXPECT_TRUE(tree.Remove("a/+", 1));
  EXPECT_TRUE(tree.Remove("a/#", 1));
  EXPECT_EQ(tree.size(), 2u);
  EXPECT_EQ(MatchOf(tree, "a/b"), (Matches{{2, 0}, {3, 0}}));
  EXPECT_EQ(MatchOf(tree, "a"), (Matches{{3, 0}}));

  EXPECT_TRUE(tree.Remove("a/b", 2));
  EXPECT_TRUE(tree.Remove("#", 3));
  EXPECT_TRUE(tree.empty());
  EXPECT_EQ(MatchOf(tree, "a/b"), Matches{});

  // The tree is reusable after being emptied (pruned nodes are recreated).
  ASSERT_TRUE(tree.Add("a/b", 5, 2));
  EXPECT_EQ(MatchOf(tree, "a/b"), (Matches{{5, 2}}));
}

TEST(TopicTreeTest, ManySubscribersOnExactTopic) {
  TopicTree tree;
  for (uint64_t id = 0; id < 5000; ++id) {
    ASSERT_TRUE(tree.Add("session/s" + std::to_string(id % 50) + "/events", id, id % 2));
  }
  Matches out;
  tree.Match("session/s7/events", &out);
  EXPECT_EQ(out.size(), 100u);
  for (const auto& [id, qos] : out) {
    EXPECT_EQ(id % 50, 7u);
    EXPECT_EQ(qos, id % 2);
  }
  for (uint64_t id = 0; id < 5000; ++id)
    EXPECT_TRUE(tree.Remove("session/s" + std::to_string(id % 50) + "/events", id));
  EXPECT_TRUE(tree.empty());
}

TEST(TopicTreeTest, DeepFilterDoesNotOverflowStack) {
  std::string deep;
  for (int i = 0; i < 30000; ++i) deep += "a/";
  deep += "#";
  TopicTree tree;
  ASSERT_TRUE(tree.Add(deep, 1, 1));
  ASSERT_TRUE(tree.Add(deep.substr(0, deep.size() - 2), 2, 0));  // Same path without "/#".
  Matches out;
  tree.Match(deep.substr(0, deep.size() - 2), &out);
  EXPECT_EQ(Sorted(out), (Matches{{1, 1}, {2, 0}}));
  // Destruction of the remaining deep path is iterative (checked by not crashing).
  EXPECT_TRUE(tree.Remove(deep, 1));
}

TEST(TopicTreeTest, MoveLeavesSourceUsable) {
  TopicTree a;
  ASSERT_TRUE(a.Add("x/y", 1, 1));
  TopicTree b(std::move(a));
  EXPECT_EQ(MatchOf(b, "x/y"), (Matches{{1, 1}}));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): documented state.
  ASSERT_TRUE(a.Add("x/y", 2, 0));
  a = std::move(b);
  EXPECT_EQ(MatchOf(a, "x/y"), (Matches{{1, 1}}));
}

// Randomised cross-check of the trie against TopicMatches over a small alphabet, with
// interleaved adds and removes, so pruning and dedupe are exercised together.
TEST(TopicTreeTest, RandomAgreesWithBruteForce) {
  std::mt19937 rng(12345);
  const std::vector<std::string> words = {"a", "b", "", "$s"};
  auto random_levels = [&](bool filter) {
    std::string s;
    const int n = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < n; ++i) {
      if (i > 0) s += '/';
      const unsigned r = rng() % 10;
      if (filter && r == 0 && i == n - 1) {
        s += '#';
      } else if (filter && r <= 2) {
        s += '+';
      } else {
        std::string w = words[rng() % words.size()];
        if (i > 0 && w == "$s") w = "c";
        s += w;
      }
    }
    return s.empty() ? std::string("a") : s;
  };
  TopicTree tree;
  std::map<std::pair<std::string, uint64_t>, uint8_t> model;
  for (int step = 0; step < 3000; ++step) {
    const uint64_t id = rng() % 8;
    const std::string filter = random_levels(true);
    const unsigned op = rng() % 10;
    if (op < 6) {
      const uint8_t qos = rng() % 3;
      ASSERT_TRUE(tree.Add(filter, id, qos)) << filter;
      model[{filter, id}] = qos;
    } else if (op < 9) {
      EXPECT_EQ(tree.Remove(filter, id), model.erase({filter, id}) > 0);
    } else {
      // Everything `id` holds, as its owner removes it (one filter at a time).
      for (auto it = model.begin(); it != model.end();) {
        if (it->first.second == id) {
          EXPECT_TRUE(tree.Remove(it->first.first, id)) << it->first.first;
          it = model.erase(it);
        } else {
          ++it;
        }
      }
    }
    ASSERT_EQ(tree.size(), model.size());
    const std::string topic = random_levels(false);
    std::map<uint64_t, uint8_t> want;
    for (const auto& [key, qos] : model) {
      if (TopicMatches(key.first, topic)) {
        auto [it, inserted] = want.emplace(key.second, qos);
        if (!inserted) it->second = std::max(it->second, qos);
      }
    }
    const Matches expected(want.begin(), want.end());
    ASSERT_EQ(MatchOf(tree, topic), expected) << "topic=" << topic << " step=" << step;
  }
}

}  // namespace
}  // namespace persona::realtime::mqtt

// The semantic response cache with the real gate model (built by
// scripts/train_gate.py): paraphrases hit, questions of another meaning do
// not, and the partition, the bounds and erasure hold.
#include "ai/cache/semantic_cache.h"

#include <gtest/gtest.h>

#include "ai/cache/response_cache.h"
#include "model/schema.h"

namespace persona::ai {
namespace {

const IntentGate& Gate() {
  static auto gate = std::move(*IntentGate::Load(PERSONA_GATE_MODEL, 0));
  return *gate;
}

int64_t clock_ms = 0;
int64_t FakeNow() { return clock_ms; }

AiReply Answer(const std::string& text) {
  AiReply r;
  r.text = text;
  r.source = "llm";
  return r;
}

class SemanticCacheTest : public ::testing::Test {
 protected:
  SemanticCacheOptions Options() {
    SemanticCacheOptions o;
    o.threshold = 0.8;
    o.now_ms = FakeNow;
    return o;
  }
  SemanticCache::Query Q(SemanticCache& c, const std::string& text, const std::string& user = "u") {
    return c.Prepare("p:" + user, user, text);
  }
  std::string Ask(SemanticCache& c, const std::string& text, const std::string& user = "u") {
    auto hit = c.Get(Q(c, text, user));
    return hit ? hit->reply.text : "";
  }
};

TEST_F(SemanticCacheTest, AParaphraseHitsAndAnotherMeaningDoesNot) {
  SemanticCache c(&Gate(), Options());
  c.Put(Q(c, "what is my credit score"), Answer("score"));
  c.Put(Q(c, "how do i say hello in french"), Answer("bonjour"));
  auto hit = c.Get(Q(c, "what's my credit score"));
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->reply.text, "score");
  EXPECT_GE(hit->similarity, 0.8);
  EXPECT_LT(hit->similarity, 1.0);
  EXPECT_EQ(Ask(c, "how do i say hello in spanish"), "");  // a rare word differs
  EXPECT_EQ(Ask(c, "what's the weather like"), "");        // another intent
}

TEST_F(SemanticCacheTest, MeaningMarkersTellOppositesApart) {
  SemanticCache c(&Gate(), Options());
  const std::pair<const char*, const char*> kOpposites[] = {
      {"turn on the lights", "turn off the lights"},
      {"convert 5 dollars to euros", "convert 5 euros to dollars"},
      {"set an alarm for 7 am", "set an alarm for 8 am"},
      {"what's the weather in paris", "what's the weather in london"},
      {"i want to cancel my reservation", "i don't want to cancel my reservation"},
      {"increase the volume", "decrease the volume"},
      {"transfer money from checking to savings", "transfer money from savings to checking"},
  };
  for (const auto& [cached, asked] : kOpposites) {
    EXPECT_FALSE(SameMeaning(c.Mark(cached), c.Mark(asked))) << cached << " / " << asked;
    c.Put(Q(c, cached), Answer(cached));
    EXPECT_EQ(Ask(c, asked), "") << asked;
    EXPECT_EQ(Ask(c, cached), cached);  // itself still hits
  }
  // Out-of-scope questions never hit each other, however close.
  MeaningMarkers a = c.Mark("blah"), b = a;
  a.intent = b.intent = "oos";
  EXPECT_FALSE(SameMeaning(a, b));
}

TEST_F(SemanticCacheTest, PartitionedPerUserBoundedExpiringAndErased) {
  SemanticCacheOptions o = Options();
  o.max_entries = 50;
  o.max_per_partition = 10;
  o.ttl_s = 60;
  clock_ms = 0;
  SemanticCache c(&Gate(), o);
  c.Put(Q(c, "what is my credit score", "alice"), Answer("alice's"));
  EXPECT_EQ(Ask(c, "what's my credit score", "bob"), "");
  EXPECT_EQ(Ask(c, "what's my credit score", "alice"), "alice's");
  // A partition keeps its newest 10; the cache its newest 50.
  for (int i = 0; i < 30; ++i)
    c.Put(Q(c, "question number " + std::to_string(i), "carol"), Answer("x"));
  EXPECT_EQ(c.size(), 11u);
  for (int u = 0; u < 10; ++u)
    for (int i = 0; i < 8; ++i)
      c.Put(Q(c, "question number " + std::to_string(i), "u" + std::to_string(u)), Answer("y"));
  EXPECT_EQ(c.size(), 50u);
  EXPECT_EQ(Ask(c, "what's my credit score", "alice"), "");  // the oldest went first
  // Expiry.
  c.Put(Q(c, "what is my credit score", "dave"), Answer("dave's"));
  EXPECT_EQ(Ask(c, "what's my credit score", "dave"), "dave's");
  clock_ms += 61000;
  EXPECT_EQ(Ask(c, "what's my credit score", "dave"), "");
  // Erasure.
  c.Put(Q(c, "what is my credit score", "erin"), Answer("erin's"));
  c.EraseUser("erin");
  EXPECT_EQ(Ask(c, "what's my credit score", "erin"), "");
}

TEST_F(SemanticCacheTest, ManyReplacementsKeepTheIndexSearchable) {
  SemanticCacheOptions o = Options();
  o.max_per_partition = 4;
  SemanticCache c(&Gate(), o);
  for (int round = 0; round < 50; ++round) {
    c.Put(Q(c, "what is my credit score"), Answer("score " + std::to_string(round)));
    c.Put(Q(c, "tell me a joke"), Answer("joke"));
  }
  EXPECT_EQ(c.size(), 4u);
  EXPECT_EQ(Ask(c, "what's my credit score").substr(0, 6), "score ");
}

TEST_F(SemanticCacheTest, BadInputNeverHitsAnotherMessage) {
  SemanticCache c(&Gate(), Options());
  c.Put(Q(c, "what is my credit score"), Answer("score"));
  for (const std::string& bad :
       {std::string(""), std::string("🙂🙂🙂"), std::string(16384, 'a'),
        std::string("\xff\xfe credit"), std::string("신용 점수 score")}) {
    auto q = Q(c, bad);
    c.Put(q, Answer("bad"));
    auto hit = c.Get(Q(c, "what's my credit score"));
    ASSERT_TRUE(hit) << bad.substr(0, 20);
    EXPECT_EQ(hit->reply.text, "score");
  }
}

}  // namespace
}  // namespace persona::ai

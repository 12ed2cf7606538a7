#include "ai/cache/response_cache.h"

#include <gtest/gtest.h>

#include "model/schema.h"

namespace persona::ai {
namespace {

int64_t now_ms = 0;
int64_t Now() { return now_ms; }

AiRequest Req(const std::string& user, const std::string& text, json::object profile = {}) {
  static auto schema = *model::Schema::FromYaml(model::BuiltinDefaultSchemaYaml());
  AiRequest r;
  r.schema = schema;
  r.user_id = user;
  r.text = text;
  r.profile = std::move(profile);
  return r;
}

AiReply Answer(const std::string& text) {
  AiReply r;
  r.text = text;
  r.source = "llm";
  return r;
}

TEST(ResponseCacheTest, SameUserSameProfileSameWordsOnly) {
  ResponseCache cache({.ttl_s = 60, .max_entries = 3, .now_ms = &Now});
  now_ms = 1000;
  const auto key = ResponseCache::Key(Req("alice", "What can you do?"));
  cache.Put(key, "alice", Answer("I can chat."));
  // Case, spacing and trailing punctuation do not matter.
  EXPECT_EQ(ResponseCache::Key(Req("alice", "  what CAN you   do")), key);
  ASSERT_TRUE(cache.Get(key, "alice").has_value());
  // Another user, another profile, other words: other keys.
  EXPECT_NE(ResponseCache::Key(Req("bob", "What can you do?")), key);
  EXPECT_NE(ResponseCache::Key(Req("alice", "What can you do?", {{"name", "Alice"}})), key);
  EXPECT_NE(ResponseCache::Key(Req("alice", "What can't you do?")), key);
  // Even a key forged to collide is refused for another user.
  EXPECT_FALSE(cache.Get(key, "bob").has_value());
  EXPECT_FALSE(cache.Get(key, "alice").has_value());  // and the entry is gone
  EXPECT_EQ(ResponseCache::Key(Req("", "hi")), "");   // no user: not cached
}

TEST(ResponseCacheTest, ExpiresIsBoundedAndIsErasedWithTheUser) {
  ResponseCache cache({.ttl_s = 60, .max_entries = 3, .now_ms = &Now});
  now_ms = 0;
  for (int i = 0; i < 5; ++i) cache.Put("k" + std::to_string(i), "u", Answer("a"));
  EXPECT_EQ(cache.size(), 3u);  // the two least recently used went
  EXPECT_FALSE(cache.Get("k0", "u").has_value());
  EXPECT_TRUE(cache.Get("k4", "u").has_value());
  now_ms = 60001;
  EXPECT_FALSE(cache.Get("k4", "u").has_value());  // expired
  now_ms = 0;
  cache.Put("a1", "alice", Answer("x"));
  cache.Put("b1", "bob", Answer("y"));
  cache.EraseUser("alice");
  EXPECT_FALSE(cache.Get("a1", "alice").has_value());
  EXPECT_TRUE(cache.Get("b1", "bob").has_value());
}

}  // namespace
}  // namespace persona::ai

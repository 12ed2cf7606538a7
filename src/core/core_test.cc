#include <gtest/gtest.h>

#include <set>

#include "core/clock.h"
#include "core/ids.h"
#include "core/json.h"

namespace persona {
namespace {

TEST(Ids, AreUrlSafeUniqueAnd22Chars) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewId();
    ASSERT_EQ(id.size(), 22u);
    ASSERT_TRUE(IsValidId(id)) << id;
    ASSERT_NE(id[0], '-') << id;
    ASSERT_TRUE(seen.insert(id).second);
  }
}

TEST(Ids, ValidationRejectsSeparatorsAndControlChars) {
  EXPECT_FALSE(IsValidId(""));
  EXPECT_FALSE(IsValidId("a:b"));
  EXPECT_FALSE(IsValidId("a/b"));
  EXPECT_FALSE(IsValidId(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidId(std::string(129, 'a')));
  EXPECT_TRUE(IsValidId("abc-DEF_123.x~"));
}

int64_t fixed_ms = 1000;
int64_t FixedNow() { return fixed_ms; }

TEST(HybridClock, IsMonotonicWhenWallClockStallsOrGoesBack) {
  HybridClock clock(&FixedNow);
  fixed_ms = 1000;
  Hlc a = clock.Now();
  Hlc b = clock.Now();
  EXPECT_GT(b, a);
  EXPECT_EQ(HlcMillis(b), 1000);
  fixed_ms = 900;  // wall clock stepped back
  Hlc c = clock.Now();
  EXPECT_GT(c, b);
  clock.Observe(MakeHlc(5000, 7));
  Hlc d = clock.Now();
  EXPECT_GT(d, MakeHlc(5000, 7));
  Hlc parsed = 0;
  ASSERT_TRUE(ParseHlc(HlcToString(d), &parsed));
  EXPECT_EQ(parsed, d);
  EXPECT_FALSE(ParseHlc("12x", &parsed));
}

TEST(HybridClock, CarriesTheNodeNumberSoTwoNodesNeverIssueTheSameStamp) {
  fixed_ms = 2000;
  HybridClock a(&FixedNow), b(&FixedNow);
  a.SetNode(3);
  b.SetNode(41);
  std::set<Hlc> seen;
  for (int i = 0; i < 3000; ++i) {  // more than one millisecond's 1024 counts
    const Hlc x = a.Now(), y = b.Now();
    EXPECT_EQ(HlcNode(x), 3u);
    EXPECT_EQ(HlcNode(y), 41u);
    EXPECT_NE(x, y);  // same wall time and count: the node number decides
    EXPECT_TRUE(seen.insert(x).second);
    EXPECT_TRUE(seen.insert(y).second);
  }
  // The same millisecond and count on both: b's higher number wins a tie.
  HybridClock c(&FixedNow), d(&FixedNow);
  c.SetNode(1);
  d.SetNode(2);
  fixed_ms = 3000;
  const Hlc from_c = c.Now(), from_d = d.Now();
  EXPECT_EQ(from_c >> kHlcNodeBits, from_d >> kHlcNodeBits);
  EXPECT_LT(from_c, from_d);
  // What a node observes from another is before everything it issues next,
  // whatever the other's node number.
  c.Observe(from_d);
  EXPECT_GT(c.Now(), from_d);
  // Stamps written before node numbers existed (any low 16 bits) still order.
  d.Observe(MakeHlc(9000, 0xffff));
  EXPECT_GT(d.Now(), MakeHlc(9000, 0xffff));
  EXPECT_EQ(HlcMillis(d.Now()), 9001);
}
TEST(Clock, FormatsRfc3339) {
  EXPECT_EQ(FormatRfc3339Millis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339Millis(1732697054123), "2024-11-27T08:44:14.123Z");
}

TEST(Json, ParseRejectsGarbageAndInvalidUtf8AndDeepNesting) {
  EXPECT_TRUE(ParseJson(R"({"a":[1,2,"x"]})").ok());
  EXPECT_FALSE(ParseJson("{").ok());
  EXPECT_FALSE(ParseJson("{} x").ok());
  EXPECT_FALSE(ParseJson("\"\xff\"").ok());
  EXPECT_FALSE(ParseJson(std::string(100, '[') + std::string(100, ']')).ok());
}

TEST(Json, Utf8Validation) {
  EXPECT_TRUE(IsValidUtf8("héllo 서울"));
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));      // truncated
}

}  // namespace
}  // namespace persona

namespace persona {
namespace {

// Found by fuzzing: 1e400 parsed as infinity and was written back as
// `Infinity`, which no JSON parser (ours included) reads.
TEST(Json, NumbersBeyondADoubleAreRefused) {
  EXPECT_FALSE(ParseJson("1e400").ok());
  EXPECT_FALSE(ParseJson(R"({"metadata":{"x":[1,-1e999]}})").ok());
  EXPECT_TRUE(ParseJson(R"({"x":1.7e308,"y":-5e-324})").ok());
}

}  // namespace
}  // namespace persona

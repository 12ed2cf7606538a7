#include "metrics/active_users.h"

#include <gtest/gtest.h>

namespace persona::metrics {
namespace {

int64_t now_ms = 0;
int64_t Now() { return now_ms; }

TEST(ActiveUsersTest, CountsUsersActiveInTheWindowAndIsBounded) {
  now_ms = 1000000;
  ActiveUsers a({.window_ms = 60000, .max_users = 100, .now_ms = Now});
  a.Touch("alice");
  a.Touch("bob");
  a.Touch("alice");
  a.Touch("");  // no user: not counted
  EXPECT_EQ(a.Count(), 2u);
  now_ms += 30000;
  a.Touch("carol");
  EXPECT_EQ(a.Count(), 3u);
  now_ms += 31000;  // alice and bob were last seen 61 s ago
  EXPECT_EQ(a.Count(), 1u);
  a.Touch("alice");
  EXPECT_EQ(a.Count(), 2u);
  // The bound: past 100 users the oldest go first.
  for (int i = 0; i < 150; ++i) {
    now_ms += 1;
    a.Touch("u" + std::to_string(i));
  }
  EXPECT_LE(a.Count(), 101u);
  EXPECT_GE(a.Count(), 50u);
  a.Refresh();
}

}  // namespace
}  // namespace persona::metrics

#include "config/config.h"

#include <gtest/gtest.h>

namespace persona::config {
namespace {

TEST(Config, DefaultsMatchTheSpec) {
  auto c = Load("", {}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->http.listen, "127.0.0.1:8080");
  EXPECT_EQ(c->mqtt.listen, "127.0.0.1:1883");
  EXPECT_EQ(c->http.max_body_bytes, 1u << 20);
  EXPECT_EQ(c->write_mode, "sync");
  EXPECT_EQ(c->data_dir, "./persona-data");
  ASSERT_EQ(c->ai.providers.size(), 1u);
  EXPECT_EQ(c->ai.providers[0].kind, "builtin");
}

TEST(Config, FlagsOverrideEnvironment) {
  auto c = Load("", {{"PERSONA_HTTP__LISTEN", "127.0.0.1:1"}, {"PERSONA_DATA_DIR", "/x"}},
                {{"http.listen", "127.0.0.1:2"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->http.listen, "127.0.0.1:2");
  EXPECT_EQ(c->data_dir, "/x");
}

TEST(Config, ErrorsNameTheKey) {
  auto bad = Load("", {}, {{"http.max_body_bytes", "lots"}});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("http.max_body_bytes"), std::string::npos);
  auto unknown = Load("", {}, {{"http.lisen", "x"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("http.lisen"), std::string::npos);
  auto mode = Load("", {}, {{"write_mode", "maybe"}});
  ASSERT_FALSE(mode.ok());
  EXPECT_NE(mode.status().message().find("write_mode"), std::string::npos);
}

TEST(Config, UnknownEnvironmentVariablesAreIgnoredNotFatal) {
  auto c = Load("", {{"PERSONA_BIN", "/usr/bin/persona"}, {"PERSONA_THREADS", "3"}}, {});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->threads, 3);
  EXPECT_EQ(c->ignored_env, std::vector<std::string>{"PERSONA_BIN"});
}

}  // namespace
}  // namespace persona::config

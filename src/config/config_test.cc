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

TEST(Config, AuthLimitsAndTlsKeys) {
  auto c = Load("", {{"PERSONA_AUTH__JWT__ALGORITHMS", "HS256, EdDSA"}},
                {{"auth.enabled", "true"},
                 {"limits.http_per_user.rate", "2.5"},
                 {"limits.admission.target_ms", "50"},
                 {"mqtt.open_topics", "true"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->auth.enabled);
  EXPECT_EQ(c->auth.jwt.algorithms, (std::vector<std::string>{"HS256", "EdDSA"}));
  EXPECT_EQ(c->auth.jwt.audience, "persona");
  EXPECT_DOUBLE_EQ(c->limits.http_per_user.rate, 2.5);
  EXPECT_EQ(c->limits.admission.target_ms, 50);
  EXPECT_EQ(c->mqtt.open_topics, "true");
  auto list = Load("", {}, {{"auth.jwt.algorithms", "[RS256, ES256]"}});
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->auth.jwt.algorithms, (std::vector<std::string>{"RS256", "ES256"}));

  auto names = [](std::map<std::string, std::string> o) {
    auto r = Load("", {}, o);
    return r.ok() ? std::string("ok") : std::string(r.status().message());
  };
  EXPECT_NE(names({{"limits.http_per_user.burst", "0.5"}}).find("limits.http_per_user.burst"),
            std::string::npos);
  EXPECT_NE(names({{"limits.admission.min_limit", "10"}, {"limits.admission.max_limit", "5"}})
                .find("limits.admission.min_limit"),
            std::string::npos);
  EXPECT_NE(names({{"http.tls.cert_file", "a.pem"}}).find("http.tls"), std::string::npos);
  EXPECT_NE(names({{"mqtt.tls.cert_file", "a.pem"},
                   {"mqtt.tls.key_file", "a.key"},
                   {"mqtt.tls.require_client_cert", "true"}})
                .find("mqtt.tls.require_client_cert"),
            std::string::npos);
  EXPECT_NE(names({{"auth.jwt.hs256_secret", "x"}, {"auth.jwt.hs256_secret_env", "Y"}})
                .find("hs256_secret_env"),
            std::string::npos);
  EXPECT_NE(names({{"mqtt.open_topics", "sometimes"}}).find("mqtt.open_topics"), std::string::npos);
  EXPECT_NE(names({{"auth.jwt.leeway_s", "99999"}}).find("auth.jwt.leeway_s"), std::string::npos);
}

TEST(Config, CostRouterKeys) {
  auto c = Load("", {},
                {{"ai.providers",
                  R"([{name: big, kind: openai, base_url: "http://x/v1", model: m},
                      {name: small, kind: openai, base_url: "http://x/v1", model: m, tier: cheap},
                      {name: offline, kind: builtin}])"},
                 {"ai.router.downgrade_at", "0.5"}});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->ai.providers[0].tier, "primary");
  EXPECT_EQ(c->ai.providers[1].tier, "cheap");
  EXPECT_DOUBLE_EQ(c->ai.router.downgrade_at, 0.5);
  EXPECT_DOUBLE_EQ(Load("", {}, {})->ai.router.downgrade_at, 0.8);
  auto error = [](std::map<std::string, std::string> o) {
    auto r = Load("", {}, o);
    return r.ok() ? std::string("ok") : std::string(r.status().message());
  };
  EXPECT_NE(error({{"ai.providers", R"([{kind: openai, base_url: "http://x", model: m,
                                         tier: gold}])"}})
                .find("tier: must be primary | cheap"),
            std::string::npos);
  EXPECT_NE(error({{"ai.providers", "[{kind: builtin, tier: cheap}]"}}).find("tier: not for"),
            std::string::npos);
  for (const char* bad : {"0", "1.5", "-1", "half"})
    EXPECT_NE(error({{"ai.router.downgrade_at", bad}}).find("ai.router.downgrade_at"),
              std::string::npos)
        << bad;
}

}  // namespace
}  // namespace persona::config

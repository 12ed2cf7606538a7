#include <gtest/gtest.h>

#include <optional>

#include "ai/builtin/builtin_provider.h"
#include "model/schema.h"

namespace persona::ai {
namespace {

class BuiltinProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = model::Schema::FromYaml(model::BuiltinDefaultSchemaYaml());
    ASSERT_TRUE(s.ok()) << s.status();
    schema_ = *s;
  }

  AiReply Ask(const std::string& text, const std::string& asked = "",
              const json::object& profile = {}, const std::string& hint = "") {
    AiRequest req;
    req.schema = schema_;
    req.profile = profile;
    req.text = text;
    req.asked_field = asked;
    req.language_hint = hint;
    std::optional<StatusOr<AiReply>> got;
    provider_.Respond(std::move(req), [&](StatusOr<AiReply> r) { got.emplace(std::move(r)); });
    EXPECT_TRUE(got.has_value()) << "Respond must call done before returning";
    EXPECT_TRUE(got->ok()) << got->status();
    return got->ok() ? **got : AiReply{};
  }

  static bool Has(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
  }

  static json::object Full() {
    json::object p;
    p["name"] = "Alice";
    p["age"] = 34;
    p["email"] = "alice@example.com";
    p["phone"] = "01012345678";
    p["city"] = "Seoul";
    p["occupation"] = "nurse";
    p["interests"] = json::array{"hiking"};
    p["goals"] = "run a marathon";
    p["contact_preference"] = "email";
    return p;
  }

  std::shared_ptr<const model::Schema> schema_;
  BuiltinProvider provider_;
};

TEST_F(BuiltinProviderTest, Identity) {
  EXPECT_EQ(provider_.name(), "offline");
  EXPECT_EQ(BuiltinProvider("rules").name(), "rules");
  AiReply r = Ask("Hi, I'm Alice");
  EXPECT_EQ(r.provider, "offline");
  EXPECT_EQ(r.model, "builtin-rules-1");
  EXPECT_EQ(r.cost_usd, 0);
  EXPECT_EQ(r.tokens_in, 3);
  EXPECT_GT(r.tokens_out, 0);
}

TEST_F(BuiltinProviderTest, NullSchemaIsAnError) {
  std::optional<StatusOr<AiReply>> got;
  provider_.Respond(AiRequest{}, [&](StatusOr<AiReply> r) { got.emplace(std::move(r)); });
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BuiltinProviderTest, FirstQuestion) {
  EXPECT_EQ(BuiltinProvider::FirstQuestion(*schema_, "en"),
            "Hi! I'm here to get to know you. What's your name?");
  EXPECT_EQ(BuiltinProvider::FirstQuestion(*schema_, "ko"),
            "안녕하세요! 알아가고 싶어요. 이름이 어떻게 되세요?");
  // Unknown language: English.
  EXPECT_EQ(BuiltinProvider::FirstQuestion(*schema_, "fr"),
            "Hi! I'm here to get to know you. What's your name?");
  model::FieldSpec bare;
  bare.name = "favourite_colour";
  EXPECT_EQ(BuiltinProvider::Question(bare, "ko"), "Could you tell me your favourite colour?");
}

TEST_F(BuiltinProviderTest, NameThenAsksAge) {
  AiReply r = Ask("Alice", "name");
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].field, "name");
  EXPECT_EQ(r.changes[0].value, json::value("Alice"));
  EXPECT_EQ(r.text, "Nice to meet you, Alice! How old are you?");
  EXPECT_EQ(r.asks, "age");
  EXPECT_EQ(r.language, "en");
}

TEST_F(BuiltinProviderTest, AgeAcknowledged) {
  json::object p;
  p["name"] = "Alice";
  AiReply r = Ask("34", "age", p);
  EXPECT_EQ(r.text, "Got it — you're 34. What's your email address?");
  EXPECT_EQ(r.asks, "email");
}

TEST_F(BuiltinProviderTest, InvalidAgeExplainedAndReasked) {
  json::object p;
  p["name"] = "Alice";
  AiReply r = Ask("I'm 200", "age", p);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(r.text, "Hmm, 200 doesn't look like a valid age. How old are you?");
  EXPECT_EQ(r.asks, "age");
}

TEST_F(BuiltinProviderTest, EmailNoted) {
  json::object p;
  p["name"] = "Alice";
  p["age"] = 34;
  AiReply r = Ask("sure, it's alice@example.com", "email", p);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].field, "email");
  EXPECT_TRUE(Has(r.text, "Thanks, I've noted your email."));
  EXPECT_EQ(r.asks, "phone");
}

TEST_F(BuiltinProviderTest, SeveralFactsAskFirstMissing) {
  AiReply r = Ask("I'm Bob, 40 years old, and I live in Busan", "name");
  EXPECT_EQ(r.changes.size(), 3u);
  EXPECT_TRUE(Has(r.text, "Nice to meet you, Bob!")) << r.text;
  EXPECT_TRUE(Has(r.text, "you're 40")) << r.text;
  EXPECT_TRUE(Has(r.text, "Busan")) << r.text;
  EXPECT_EQ(r.asks, "email");
}

TEST_F(BuiltinProviderTest, CorrectionUpdates) {
  json::object p;
  p["name"] = "Alice";
  p["age"] = 34;
  AiReply r = Ask("actually I'm 35", "email", p);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].value, json::value(35));
  EXPECT_TRUE(Has(r.text, "Thanks for the correction — you're 35.")) << r.text;
  EXPECT_EQ(r.asks, "email");
}

TEST_F(BuiltinProviderTest, NothingUnderstoodReasks) {
  json::object p;
  p["name"] = "Alice";
  AiReply r = Ask("hmm", "age", p);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(r.text, "Sorry, I didn't quite catch that. How old are you?");
  EXPECT_EQ(r.asks, "age");
}

TEST_F(BuiltinProviderTest, Greeting) {
  AiReply r = Ask("hello");
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(r.asks, "name");
  EXPECT_EQ(r.text, "Hi! I'm here to get to know you. What's your name?");
  json::object p;
  p["name"] = "Alice";
  EXPECT_EQ(Ask("hey", "", p).text, "Hello! How old are you?");
}

TEST_F(BuiltinProviderTest, DeclineSkipsToNextField) {
  json::object p;
  p["name"] = "Alice";
  p["age"] = 34;
  AiReply r = Ask("I'd rather not say", "email", p);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(r.asks, "phone");
  EXPECT_TRUE(Has(r.text, "No problem")) << r.text;
}

TEST_F(BuiltinProviderTest, ClosingWhenComplete) {
  json::object p = Full();
  p.erase("contact_preference");
  AiReply r = Ask("text me", "contact_preference", p);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].value, json::value("sms"));
  EXPECT_EQ(r.asks, "");
  EXPECT_TRUE(Has(r.text, "I'll contact you by text message.")) << r.text;
  EXPECT_TRUE(
      Has(r.text, "Thanks, Alice — I have everything I need. Anything you'd like to update?"))
      << r.text;
}

TEST_F(BuiltinProviderTest, ForgetField) {
  AiReply r = Ask("please forget my phone number", "", Full());
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].field, "phone");
  EXPECT_TRUE(r.changes[0].value.is_null());
  EXPECT_TRUE(Has(r.text, "Okay, I've forgotten your phone number.")) << r.text;
  EXPECT_EQ(r.asks, "");  // not asked again straight away
}

TEST_F(BuiltinProviderTest, InterestsMention) {
  json::object p = Full();
  p.erase("goals");
  AiReply r = Ask("I also like jazz and cooking", "", p);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(ToJson(r.changes[0].value), R"(["hiking","jazz","cooking"])");
  EXPECT_TRUE(Has(r.text, "Nice — jazz and cooking sound fun!")) << r.text;
  EXPECT_EQ(r.asks, "goals");
}

TEST_F(BuiltinProviderTest, KoreanConversation) {
  AiReply r = Ask("제 이름은 김민수예요", "name");
  EXPECT_EQ(r.language, "ko");
  EXPECT_EQ(r.text, "김민수님, 만나서 반가워요! 나이가 어떻게 되세요?");
  EXPECT_EQ(r.asks, "age");

  json::object p;
  p["name"] = "김민수";
  r = Ask("서른네 살이에요", "age", p);
  EXPECT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.text, "34살이시군요. 이메일 주소를 알려주시겠어요?");

  p["age"] = 34;
  p["email"] = "m@x.kr";
  p["phone"] = "01012345678";
  r = Ask("서울", "city", p);
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].value, json::value("Seoul"));  // stored in English
  EXPECT_EQ(r.text, "서울에 사시는군요. 어떤 일을 하세요?");
  EXPECT_EQ(r.asks, "occupation");
}

TEST_F(BuiltinProviderTest, KoreanHintKeptForBareTokens) {
  json::object p;
  p["name"] = "김민수";
  p["age"] = 34;
  AiReply r = Ask("minsu@example.com", "email", p, "ko");
  EXPECT_EQ(r.language, "ko");
  EXPECT_EQ(r.text, "이메일 주소를 기록했어요. 연락 가능한 전화번호를 알려주시겠어요?");
  r = Ask("010-1234-5678", "phone", p, "ko");
  EXPECT_EQ(r.language, "ko");
  // Without Hangul or a hint: English.
  EXPECT_EQ(Ask("010-1234-5678", "phone", p).language, "en");
}

TEST_F(BuiltinProviderTest, KoreanInvalidAndClosing) {
  json::object p;
  p["name"] = "김민수";
  AiReply r = Ask("200살이에요", "age", p);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(r.asks, "age");
  EXPECT_EQ(r.text, "음, 200은(는) 올바른 나이 값이 아닌 것 같아요. 나이가 어떻게 되세요?");

  json::object full = Full();
  full["name"] = "김민수";
  r = Ask("안녕하세요", "", full);
  EXPECT_EQ(r.asks, "");
  EXPECT_TRUE(Has(r.text, "김민수님, 감사합니다!")) << r.text;
}

TEST_F(BuiltinProviderTest, Deterministic) {
  const AiReply a = Ask("I'm Alice and I love jazz", "name");
  const AiReply b = Ask("I'm Alice and I love jazz", "name");
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.asks, b.asks);
  ASSERT_EQ(a.changes.size(), b.changes.size());
}

}  // namespace
}  // namespace persona::ai

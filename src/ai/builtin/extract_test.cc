#include "ai/builtin/extract.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>

#include "ai/builtin/cities.h"
#include "model/schema.h"

namespace persona::ai::builtin {
namespace {

class ExtractTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = model::Schema::FromYaml(model::BuiltinDefaultSchemaYaml());
    ASSERT_TRUE(s.ok()) << s.status();
    schema_ = new std::shared_ptr<const model::Schema>(*s);
  }

  // field → proposed value, as compact JSON ("null" for a clear).
  std::map<std::string, std::string> Run(std::string_view text, std::string_view asked = "",
                                         const json::object& profile = {}) {
    std::map<std::string, std::string> out;
    for (const auto& c : Extract(**schema_, profile, text, asked, DetectLanguage(text, "")))
      out[c.field] = ToJson(c.value);
    return out;
  }
  std::string Get(std::string_view text, const std::string& field, std::string_view asked = "",
                  const json::object& profile = {}) {
    auto m = Run(text, asked, profile);
    auto it = m.find(field);
    return it == m.end() ? "<none>" : it->second;
  }

  static std::shared_ptr<const model::Schema>* schema_;
};

std::shared_ptr<const model::Schema>* ExtractTest::schema_ = nullptr;

int ThisYear() {
  const auto today = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
  return static_cast<int>(std::chrono::year_month_day(today).year());
}

// ---------------------------------------------------------------- names

TEST_F(ExtractTest, NamesInEnglish) {
  EXPECT_EQ(Get("I'm Alice Kim", "name"), "\"Alice Kim\"");
  EXPECT_EQ(Get("Hi, my name is Alice.", "name"), "\"Alice\"");
  EXPECT_EQ(Get("my name is alice", "name"), "\"Alice\"");
  EXPECT_EQ(Get("Call me Al", "name"), "\"Al\"");
  EXPECT_EQ(Get("Hello, this is Bob", "name"), "\"Bob\"");
  EXPECT_EQ(Get("My name's Carol and I'm 30", "name"), "\"Carol\"");
  EXPECT_EQ(Get("I am Jean-Luc", "name"), "\"Jean-Luc\"");
}

TEST_F(ExtractTest, NotNames) {
  for (const char* text : {"I'm tired", "I'm a teacher", "I'm 34", "I'm from Seoul",
                           "I'm fine, thanks", "I'm Korean", "I'm not sure", "I am happy today",
                           "I'm into hiking", "call me back later", "I'm in Seoul"}) {
    EXPECT_EQ(Get(text, "name"), "<none>") << text;
  }
}

TEST_F(ExtractTest, NamesInKorean) {
  EXPECT_EQ(Get("제 이름은 김민수예요", "name"), "\"김민수\"");
  EXPECT_EQ(Get("저는 김민수입니다", "name"), "\"김민수\"");
  EXPECT_EQ(Get("민수라고 불러 주세요", "name"), "\"민수\"");
  // Occupations and ages are not names.
  EXPECT_EQ(Get("저는 개발자예요", "name"), "<none>");
  EXPECT_EQ(Get("저는 34살이에요", "name"), "<none>");
}

TEST_F(ExtractTest, BareNameWhenAsked) {
  EXPECT_EQ(Get("Alice", "name", "name"), "\"Alice\"");
  EXPECT_EQ(Get("alice kim", "name", "name"), "\"Alice Kim\"");
  EXPECT_EQ(Get("김민수", "name", "name"), "\"김민수\"");
  EXPECT_EQ(Get("It's Dana", "name", "name"), "\"Dana\"");
  EXPECT_EQ(Get("why do you want to know?", "name", "name"), "<none>");
  EXPECT_EQ(Get("hello", "name", "name"), "<none>");
  // Not asked: a bare word is not a name.
  EXPECT_EQ(Get("Alice", "name"), "<none>");
}

// ---------------------------------------------------------------- ages

TEST_F(ExtractTest, AgesInEnglish) {
  EXPECT_EQ(Get("I'm 34", "age"), "34");
  EXPECT_EQ(Get("I am 34 years old", "age"), "34");
  EXPECT_EQ(Get("34 years old, actually", "age"), "34");
  EXPECT_EQ(Get("I'm thirty-four", "age"), "34");
  EXPECT_EQ(Get("I'm thirty four years old", "age"), "34");
  EXPECT_EQ(Get("I'm one hundred and five", "age"), "105");
  EXPECT_EQ(Get("my age is 41", "age"), "41");
  EXPECT_EQ(Get("I was born in 1990", "age"), std::to_string(ThisYear() - 1990));
  EXPECT_EQ(Get("I just turned 40", "age"), "40");
}

TEST_F(ExtractTest, AgesNotConfused) {
  EXPECT_EQ(Get("I've worked there for 5 years", "age"), "<none>");
  EXPECT_EQ(Get("I'm 180 cm tall", "age"), "<none>");
  EXPECT_EQ(Get("My phone is 010-1234-5678", "age"), "<none>");
}

TEST_F(ExtractTest, AgesInKorean) {
  EXPECT_EQ(Get("34살이에요", "age"), "34");
  EXPECT_EQ(Get("저는 34 살입니다", "age"), "34");
  EXPECT_EQ(Get("나이는 34", "age"), "34");
  EXPECT_EQ(Get("서른네 살이에요", "age"), "34");
  EXPECT_EQ(Get("스무살", "age"), "20");
  EXPECT_EQ(Get("90년생이에요", "age"), std::to_string(ThisYear() - 1990));
}

TEST_F(ExtractTest, BareAgeWhenAsked) {
  EXPECT_EQ(Get("34", "age", "age"), "34");
  EXPECT_EQ(Get("about 34", "age", "age"), "34");
  EXPECT_EQ(Get("thirty-four", "age", "age"), "34");
  EXPECT_EQ(Get("서른넷", "age", "age"), "34");
  EXPECT_EQ(Get("34", "age"), "<none>");  // not asked: a bare number means nothing
}

TEST_F(ExtractTest, InvalidAgeIsRejected) {
  auto ex = ExtractDetailed(**schema_, {}, "I'm 200 years old", "", "en");
  EXPECT_TRUE(ex.changes.empty());
  ASSERT_EQ(ex.rejected.size(), 1u);
  EXPECT_EQ(ex.rejected[0].field, "age");
  EXPECT_EQ(ex.rejected[0].raw, "200");
  auto bare = ExtractDetailed(**schema_, {}, "200", "age", "en");
  EXPECT_TRUE(bare.changes.empty());
  ASSERT_EQ(bare.rejected.size(), 1u);
}

TEST_F(ExtractTest, NumberWords) {
  EXPECT_EQ(ParseEnglishNumber("thirty-four"), 34);
  EXPECT_EQ(ParseEnglishNumber("one hundred and thirty"), 130);
  EXPECT_EQ(ParseEnglishNumber("a hundred"), 100);
  EXPECT_EQ(ParseEnglishNumber("nineteen"), 19);
  EXPECT_EQ(ParseEnglishNumber("twenty twenty"), std::nullopt);
  EXPECT_EQ(ParseEnglishNumber("hello"), std::nullopt);
  EXPECT_EQ(ParseKoreanNativeNumber("서른네"), 34);
  EXPECT_EQ(ParseKoreanNativeNumber("스물"), 20);
  EXPECT_EQ(ParseKoreanNativeNumber("아흔아홉"), 99);
  EXPECT_EQ(ParseKoreanNativeNumber("사과"), std::nullopt);
}

// ---------------------------------------------------------------- email, phone

TEST_F(ExtractTest, EmailAnywhere) {
  EXPECT_EQ(Get("you can reach me at Alice.Kim@Example.com thanks", "email"),
            "\"alice.kim@example.com\"");
  EXPECT_EQ(Get("제 이메일은 minsu@test.co.kr 입니다", "email"), "\"minsu@test.co.kr\"");
  // Only the email: "my email is" does not set contact_preference.
  auto m = Run("my email is bob@example.org");
  EXPECT_EQ(m.count("contact_preference"), 0u);
  EXPECT_EQ(m["email"], "\"bob@example.org\"");
}

TEST_F(ExtractTest, InvalidEmailWhenAsked) {
  auto ex = ExtractDetailed(**schema_, {}, "alice@example", "email", "en");
  EXPECT_TRUE(ex.changes.empty());
  ASSERT_EQ(ex.rejected.size(), 1u);
  EXPECT_EQ(ex.rejected[0].field, "email");
}

TEST_F(ExtractTest, PhoneAnywhere) {
  EXPECT_EQ(Get("my number is 010-1234-5678", "phone"), "\"01012345678\"");
  EXPECT_EQ(Get("전화번호는 010 1234 5678 이에요", "phone"), "\"01012345678\"");
  EXPECT_EQ(Get("call +1 (415) 555-0100 please", "phone"), "\"+14155550100\"");
  EXPECT_EQ(Get("I was born on 1990-01-02", "phone"), "<none>");
  EXPECT_EQ(Get("I'm 34", "phone"), "<none>");
}

// ---------------------------------------------------------------- city

TEST_F(ExtractTest, CitiesInEnglish) {
  EXPECT_EQ(Get("I live in Seoul", "city"), "\"Seoul\"");
  EXPECT_EQ(Get("I'm from busan", "city"), "\"Busan\"");
  EXPECT_EQ(Get("I'm based in San Francisco.", "city"), "\"San Francisco\"");
  EXPECT_EQ(Get("we just moved to New York last year", "city"), "\"New York\"");
  EXPECT_EQ(Get("I live in Rio de Janeiro", "city"), "\"Rio de Janeiro\"");
  EXPECT_EQ(Get("I live in Gangnam, Seoul", "city"), "\"Seoul\"");
  EXPECT_EQ(Get("I live in NYC", "city"), "\"New York\"");
  // An unknown capitalised place is still accepted.
  EXPECT_EQ(Get("I live in Springfield", "city"), "\"Springfield\"");
  EXPECT_EQ(Get("I live in the countryside", "city"), "<none>");
  EXPECT_EQ(Get("I'm in love", "city"), "<none>");
  // Where the user lives now wins over where they are from.
  EXPECT_EQ(Get("I'm from Busan but I live in Seoul", "city"), "\"Seoul\"");
}

TEST_F(ExtractTest, CitiesInKorean) {
  EXPECT_EQ(Get("서울에 살아요", "city"), "\"Seoul\"");
  EXPECT_EQ(Get("저는 부산광역시에서 살고 있어요", "city"), "\"Busan\"");
  EXPECT_EQ(Get("대구 출신이에요", "city"), "\"Daegu\"");
  EXPECT_EQ(Get("제주로 이사했어요", "city"), "\"Jeju\"");
  EXPECT_EQ(Get("서울", "city", "city"), "\"Seoul\"");
  EXPECT_EQ(Get("수원이요", "city", "city"), "\"Suwon\"");
}

TEST_F(ExtractTest, CityLookup) {
  ASSERT_NE(FindCity("rio de janeiro"), nullptr);
  EXPECT_EQ(FindCity("서울특별시")->en, "Seoul");
  EXPECT_EQ(FindCity("Incheon")->ko, "인천");
  // Reading (Berkshire) is a GeoNames city, not a curated one: it is found
  // where a place is expected, never as the hobby.
  EXPECT_EQ(FindCuratedCity("reading"), nullptr);
  ASSERT_NE(FindCity("reading"), nullptr);
  EXPECT_FALSE(FindCity("reading")->curated);
  auto m = FindCityIn("I'd love to visit Buenos Aires someday");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->city->en, "Buenos Aires");
}

TEST_F(ExtractTest, GeoNamesCitiesWhereAPlaceIsExpected) {
  // Not in the curated list; from Debian's GeoNames data.
  EXPECT_EQ(Get("I live in Curitiba", "city"), "\"Curitiba\"");
  EXPECT_EQ(Get("i live in munster", "city"), "\"Münster\"");  // accents folded
  EXPECT_EQ(Get("I moved to Changwon last year", "city"), "\"Changwon\"");
  EXPECT_EQ(Get("I live in Normal, Illinois", "city"), "\"Normal\"");
  EXPECT_EQ(FindCity("쿠리치바")->en, "Curitiba");  // GeoNames' Korean name
  // Everyday words and given names that are also GeoNames cities stay what
  // they are elsewhere.
  EXPECT_EQ(Get("I love reading and hiking", "city"), "<none>");
  EXPECT_EQ(Get("I'm Victoria", "name"), "\"Victoria\"");
  EXPECT_EQ(Get("I'm Austin, nice to meet you", "name"), "\"Austin\"");
  EXPECT_EQ(Get("What a surprise!", "city"), "<none>");
}

// The forms issue 12 names: compact self-introductions, titles, a job
// followed by a place, a bare number among listed facts.
TEST_F(ExtractTest, CompactSelfIntroductions) {
  auto r = Run("Hi! I'm Alice Kim, 34 years old, and I work as a nurse in Seoul.");
  EXPECT_EQ(r["name"], "\"Alice Kim\"");
  EXPECT_EQ(r["age"], "34");
  EXPECT_EQ(r["occupation"], "\"nurse\"");
  EXPECT_EQ(r["city"], "\"Seoul\"");
  r = Run("Dr. Okafor here, 47, pediatrician from Lagos");
  EXPECT_EQ(r["name"], "\"Okafor\"");
  EXPECT_EQ(r["age"], "47");
  EXPECT_EQ(r["city"], "\"Lagos\"");
  r = Run("Tomás Rivera, 29, a barista in Valencia.");
  EXPECT_EQ(r["name"], "\"Tomás Rivera\"");
  EXPECT_EQ(r["age"], "29");
  EXPECT_EQ(r["city"], "\"Valencia\"");
  EXPECT_EQ(Get("I'm Prof. Hana Sato", "name"), "\"Hana Sato\"");
  EXPECT_EQ(Get("Hello, Mr. Park here", "name"), "\"Park\"");
  // Numbers that are not ages, places that are not home.
  EXPECT_EQ(Get("I have 2 cats, 1 dog", "age"), "<none>");
  EXPECT_EQ(Get("My flight is at 10, then a meeting", "age"), "<none>");
  EXPECT_EQ(Get("I visited Lisbon last spring", "city"), "<none>");
  EXPECT_EQ(Get("My sister is a teacher in Daegu", "city"), "<none>");
  EXPECT_EQ(Get("I was born in Busan", "city"), "<none>");
  EXPECT_EQ(Get("I'm interested in reading", "city"), "<none>");
}

TEST_F(ExtractTest, BareCityWhenAsked) {
  EXPECT_EQ(Get("Tokyo", "city", "city"), "\"Tokyo\"");
  EXPECT_EQ(Get("springfield", "city", "city"), "\"Springfield\"");
}

// ---------------------------------------------------------------- occupation

TEST_F(ExtractTest, Occupations) {
  EXPECT_EQ(Get("I work as a nurse", "occupation"), "\"nurse\"");
  EXPECT_EQ(Get("I'm a software engineer", "occupation"), "\"software engineer\"");
  EXPECT_EQ(Get("my job is teacher", "occupation"), "\"teacher\"");
  EXPECT_EQ(Get("I'm an engineer at Google", "occupation"), "\"engineer\"");
  EXPECT_EQ(Get("I'm retired", "occupation"), "\"retired\"");
  EXPECT_EQ(Get("I'm a big fan of jazz", "occupation"), "<none>");
  EXPECT_EQ(Get("I'm a morning person", "occupation"), "<none>");
  EXPECT_EQ(Get("저는 개발자예요", "occupation"), "\"개발자\"");
  EXPECT_EQ(Get("직업은 교사입니다", "occupation"), "\"교사\"");
  EXPECT_EQ(Get("간호사로 일하고 있어요", "occupation"), "\"간호사\"");
  EXPECT_EQ(Get("a data scientist", "occupation", "occupation"), "\"data scientist\"");
}

// ---------------------------------------------------------------- interests

TEST_F(ExtractTest, Interests) {
  EXPECT_EQ(Get("I like hiking, jazz and cooking", "interests"),
            "[\"hiking\",\"jazz\",\"cooking\"]");
  EXPECT_EQ(Get("I enjoy reading.", "interests"), "[\"reading\"]");
  EXPECT_EQ(Get("I'm into climbing", "interests"), "[\"climbing\"]");
  EXPECT_EQ(Get("I really love to cook", "interests"), "[\"cook\"]");
  EXPECT_EQ(Get("I don't like jazz", "interests"), "<none>");
  EXPECT_EQ(Get("등산과 요리를 좋아해요", "interests"), "[\"등산\",\"요리\"]");
  EXPECT_EQ(Get("취미는 독서예요", "interests"), "[\"독서\"]");
  EXPECT_EQ(Get("hiking and jazz", "interests", "interests"), "[\"hiking\",\"jazz\"]");
}

TEST_F(ExtractTest, InterestsMergeUnlessOnly) {
  json::object profile;
  profile["interests"] = json::array{"hiking", "jazz"};
  EXPECT_EQ(Get("I also like cooking and Jazz", "interests", "", profile),
            "[\"hiking\",\"jazz\",\"cooking\"]");
  EXPECT_EQ(Get("I only like chess", "interests", "", profile), "[\"chess\"]");
  // Nothing new: restated, not proposed.
  auto ex = ExtractDetailed(**schema_, profile, "I like hiking", "", "en");
  EXPECT_TRUE(ex.changes.empty());
  EXPECT_EQ(ex.restated, std::vector<std::string>{"interests"});
}

// ---------------------------------------------------------------- goals

TEST_F(ExtractTest, Goals) {
  EXPECT_EQ(Get("My goal is to run a marathon.", "goals"), "\"run a marathon\"");
  EXPECT_EQ(Get("I want to learn Spanish", "goals"), "\"learn Spanish\"");
  EXPECT_EQ(Get("I hope to buy a house", "goals"), "\"buy a house\"");
  EXPECT_EQ(Get("I plan to travel more", "goals"), "\"travel more\"");
  EXPECT_EQ(Get("I want to change my email", "goals"), "<none>");
  EXPECT_EQ(Get("목표는 마라톤 완주예요", "goals"), "\"마라톤 완주\"");
  EXPECT_EQ(Get("스페인어를 배우고 싶어요", "goals"), "\"스페인어를 배우고 싶어요\"");
  EXPECT_EQ(Get("get fit", "goals", "goals"), "\"get fit\"");
}

TEST_F(ExtractTest, TrickierPhrasings) {
  EXPECT_EQ(Get("영화, 독서", "interests", "interests"), "[\"영화\",\"독서\"]");
  EXPECT_EQ(Get("I guess movies, games", "interests", "interests"), "[\"movies\",\"games\"]");
  EXPECT_EQ(Get("My hobbies are reading, swimming, and playing chess.", "interests"),
            "[\"reading\",\"swimming\",\"playing chess\"]");
  EXPECT_EQ(Get("I love my dog", "interests"), "<none>");
  EXPECT_EQ(Get("nothing really", "interests", "interests"), "<none>");
  EXPECT_EQ(Get("I teach high school math", "occupation"), "\"high school math teacher\"");
  EXPECT_EQ(Get("unemployed at the moment", "occupation", "occupation"), "\"unemployed\"");
  EXPECT_EQ(Get("I work at Google as a product manager", "occupation"), "\"product manager\"");
  EXPECT_EQ(Get("I do marketing for a living", "occupation"), "\"marketing\"");
  EXPECT_EQ(Get("I'm 5'9\"", "age"), "<none>");
  EXPECT_EQ(Get("I live in St. Louis.", "city"), "\"St. Louis\"");
  EXPECT_EQ(Get("I'd like to be contacted by phone", "contact_preference"), "\"phone\"");
  EXPECT_EQ(Get("I'd like to be contacted by phone", "goals"), "<none>");
}

// ---------------------------------------------------------------- enum, clear

TEST_F(ExtractTest, ContactPreference) {
  EXPECT_EQ(Get("please email me", "contact_preference"), "\"email\"");
  EXPECT_EQ(Get("just text me", "contact_preference"), "\"sms\"");
  EXPECT_EQ(Get("I prefer phone calls", "contact_preference"), "\"phone\"");
  EXPECT_EQ(Get("please don't contact me", "contact_preference"), "\"none\"");
  EXPECT_EQ(Get("email", "contact_preference", "contact_preference"), "\"email\"");
  EXPECT_EQ(Get("문자로 연락주세요", "contact_preference"), "\"sms\"");
  EXPECT_EQ(Get("Call me Al", "contact_preference"), "<none>");
  EXPECT_EQ(Get("I like email", "contact_preference"), "<none>");  // no contact cue
}

TEST_F(ExtractTest, ClearRequests) {
  json::object profile;
  profile["phone"] = "01012345678";
  profile["email"] = "a@b.co";
  EXPECT_EQ(Get("please forget my phone number", "phone", "", profile), "null");
  EXPECT_EQ(Get("delete my email", "email", "", profile), "null");
  EXPECT_EQ(Get("전화번호 지워 주세요", "phone", "", profile), "null");
  // Nothing to clear: nothing proposed.
  EXPECT_EQ(Get("forget my city", "city", "", profile), "<none>");
}

// ---------------------------------------------------------------- several facts, corrections

TEST_F(ExtractTest, SeveralFactsInOneMessage) {
  auto m =
      Run("Hi, I'm Alice Kim, I'm 34 and I live in Seoul. I work as a nurse and "
          "I like hiking and jazz. Email me at alice@example.com.");
  EXPECT_EQ(m["name"], "\"Alice Kim\"");
  EXPECT_EQ(m["age"], "34");
  EXPECT_EQ(m["city"], "\"Seoul\"");
  EXPECT_EQ(m["occupation"], "\"nurse\"");
  EXPECT_EQ(m["interests"], "[\"hiking\",\"jazz\"]");
  EXPECT_EQ(m["email"], "\"alice@example.com\"");
  EXPECT_EQ(m["contact_preference"], "\"email\"");
  auto ko = Run("제 이름은 김민수예요. 34살이고 서울에 살아요. 등산을 좋아해요.");
  EXPECT_EQ(ko["name"], "\"김민수\"");
  EXPECT_EQ(ko["age"], "34");
  EXPECT_EQ(ko["city"], "\"Seoul\"");
  EXPECT_EQ(ko["interests"], "[\"등산\"]");
}

TEST_F(ExtractTest, Corrections) {
  json::object profile;
  profile["name"] = "Alice";
  profile["age"] = 34;
  profile["city"] = "Seoul";
  EXPECT_EQ(Get("actually I'm 35", "age", "", profile), "35");
  EXPECT_EQ(Get("actually I'm 35, and I live in Busan", "age", "", profile), "35");
  EXPECT_EQ(Get("I'm 5,000 miles away", "age", "", profile), "<none>");
  EXPECT_EQ(Get("no, I live in Busan now", "city", "", profile), "\"Busan\"");
  EXPECT_EQ(Get("sorry, my name is Bob", "name", "", profile), "\"Bob\"");
  // The same value again is not a change.
  auto ex = ExtractDetailed(**schema_, profile, "I'm 34", "", "en");
  EXPECT_TRUE(ex.changes.empty());
  EXPECT_EQ(ex.restated, std::vector<std::string>{"age"});
}

TEST_F(ExtractTest, BareAnswerWithOtherFacts) {
  auto m = Run("Alice, and I'm 34", "name");
  EXPECT_EQ(m["name"], "\"Alice\"");
  EXPECT_EQ(m["age"], "34");
}

TEST_F(ExtractTest, Declines) {
  auto ex = ExtractDetailed(**schema_, {}, "I'd rather not say", "age", "en");
  EXPECT_TRUE(ex.changes.empty());
  EXPECT_TRUE(ex.declined);
  EXPECT_TRUE(ExtractDetailed(**schema_, {}, "건너뛸게요", "phone", "ko").declined);
}

TEST_F(ExtractTest, Language) {
  EXPECT_EQ(DetectLanguage("안녕하세요", ""), "ko");
  EXPECT_EQ(DetectLanguage("Hello there", "ko"), "en");
  EXPECT_EQ(DetectLanguage("34", "ko"), "ko");
  EXPECT_EQ(DetectLanguage("34", ""), "en");
  EXPECT_EQ(DetectLanguage("alice@example.com", "ko"), "ko");
}

TEST_F(ExtractTest, LongMessageWithManyCues) {
  // Every rule matches many times in a message at the input cap; each match
  // still reads its own clause (the extractor remembers clause ends between
  // matches, and skips rules whose cue words are absent).
  std::string text;
  for (int i = 0; i < 30; ++i) text += "I live in Seoul and I'm a nurse, I like jazz. ";
  ASSERT_GT(text.size(), kMaxTextBytes);
  auto m = Run(text);
  EXPECT_EQ(m["city"], "\"Seoul\"");
  EXPECT_EQ(m["occupation"], "\"nurse\"");
  EXPECT_EQ(m["interests"], R"(["jazz"])");
  EXPECT_EQ(m.count("age"), 0u);
  EXPECT_EQ(m.count("name"), 0u);
}

TEST_F(ExtractTest, GenericSchemaRules) {
  auto s = model::Schema::FromYaml(R"(
name: pets
fields:
  - name: pet_name
    type: string
  - name: weight_kg
    type: number
  - name: vaccinated
    type: boolean
  - name: birthday
    type: date
  - name: size
    type: enum
    values: [small, medium, large]
    synonyms: {big: large, tiny: small}
)");
  ASSERT_TRUE(s.ok()) << s.status();
  auto get = [&](std::string_view text, std::string_view asked) {
    std::map<std::string, std::string> out;
    for (const auto& c : Extract(**s, {}, text, asked, "en")) out[c.field] = ToJson(c.value);
    return out;
  };
  EXPECT_EQ(get("Rex", "pet_name")["pet_name"], "\"Rex\"");
  EXPECT_DOUBLE_EQ(std::stod(get("the weight kg is 12.5", "")["weight_kg"]), 12.5);
  EXPECT_EQ(get("yes", "vaccinated")["vaccinated"], "true");
  EXPECT_EQ(get("nope", "vaccinated")["vaccinated"], "false");
  EXPECT_EQ(get("born 2020-03-04", "birthday")["birthday"], "\"2020-03-04\"");
  EXPECT_EQ(get("he's pretty big", "size")["size"], "\"large\"");
}

TEST_F(ExtractTest, CompactIntroductionsListTheirFacts) {
  EXPECT_EQ(Get("Ravi here, 41, plumber from Leeds", "occupation"), "\"plumber\"");
  EXPECT_EQ(Get("I'm Ines, 52, a pharmacist in Porto.", "occupation"), "\"pharmacist\"");
  EXPECT_EQ(Get("Hugo, 38yo electrician in Lyon", "occupation"), "\"electrician\"");
  EXPECT_EQ(Get("Mara. 27. Hamburg. Nurse.", "city"), "\"Hamburg\"");
  EXPECT_EQ(Get("Mara. 27. Hamburg. Nurse.", "occupation"), "\"nurse\"");
  EXPECT_EQ(Get("I'm a 45-year-old cardiologist from Toronto", "age"), "45");
  EXPECT_EQ(Get("I live in Lima and work as a translator.", "occupation"), "\"translator\"");
  EXPECT_EQ(Get("I've been a midwife for 9 years.", "occupation"), "\"midwife\"");
  EXPECT_EQ(Get("name: Ada Park / age: 33 / job: welder", "occupation"), "\"welder\"");
  // Not a job: someone else's, a nationality, a feeling.
  EXPECT_EQ(Get("Marco, 30, my sister is a doctor", "occupation"), "<none>");
  EXPECT_EQ(Get("Luca, 30, Italian, Rome", "occupation"), "<none>");
  EXPECT_EQ(Get("Sam, 25, tired, hungry", "occupation"), "<none>");
}

TEST_F(ExtractTest, BirthdaysToComeAndCorrections) {
  EXPECT_EQ(Get("turning 40 next week!", "age"), "39");
  EXPECT_EQ(Get("I'll be 25 in May", "age"), "24");
  EXPECT_EQ(Get("I'm 36 — wait, no, 37.", "age"), "37");
  EXPECT_EQ(Get("I'll be 5 minutes late", "age"), "<none>");
  EXPECT_EQ(Get("My son just turned 12", "age"), "<none>");
  EXPECT_EQ(Get("she's 8 years old", "age"), "<none>");
  EXPECT_EQ(Get("my age is 41", "age"), "41");
}

TEST_F(ExtractTest, ATripIsNotHome) {
  EXPECT_EQ(Get("I'm in Lisbon for a conference this week", "city"), "<none>");
  EXPECT_EQ(Get("Kai here, staying at a hostel in Berlin, just backpacking", "city"), "<none>");
  EXPECT_EQ(Get("I've lived here in Boston for ten years", "city"), "\"Boston\"");
  EXPECT_EQ(Get("My daughter studies in Madrid, she's at university in Madrid", "city"), "<none>");
}

TEST_F(ExtractTest, KoreanIntroductions) {
  EXPECT_EQ(Get("윤서준입니다. 29살이에요.", "name"), "\"윤서준\"");
  EXPECT_EQ(Get("안녕하세요, 한지민이에요", "name"), "\"한지민\"");
  EXPECT_EQ(Get("안녕하세요! 소라예요", "name"), "\"소라\"");
  EXPECT_EQ(Get("간호사 문채원입니다.", "name"), "\"문채원\"");
  EXPECT_EQ(Get("간호사 문채원입니다.", "occupation"), "\"간호사\"");
  EXPECT_EQ(Get("오정우라고 합니다", "name"), "\"오정우\"");
  EXPECT_EQ(Get("광주 사는 대학생이에요", "city"), "\"Gwangju\"");
  EXPECT_EQ(Get("대구 살아요", "city"), "\"Daegu\"");
  EXPECT_EQ(Get("인천에서 요리사로 일해요", "city"), "\"Incheon\"");
  EXPECT_EQ(Get("서울 마포에 살아요", "city"), "\"Seoul\"");
  EXPECT_EQ(Get("나이는 마흔둘이에요", "age"), "42");
  EXPECT_EQ(Get("이름: 김하늘 / 나이: 31 / 직업: 교사", "age"), "31");
  EXPECT_EQ(Get("이름: 김하늘 / 나이: 31 / 직업: 교사", "occupation"), "\"교사\"");
  // Not names, not the user's job.
  EXPECT_EQ(Get("정말이에요", "name"), "<none>");
  EXPECT_EQ(Get("나이는 서른넷이에요", "name"), "<none>");
  EXPECT_EQ(Get("이름은 비밀이에요", "name"), "<none>");
  EXPECT_EQ(Get("오빠가 변호사예요", "occupation"), "<none>");
}

}  // namespace
}  // namespace persona::ai::builtin

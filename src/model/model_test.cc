#include <gtest/gtest.h>

#include "model/profile.h"
#include "model/schema.h"

namespace persona::model {
namespace {

std::shared_ptr<const Schema> Default() {
  auto s = Schema::FromYaml(BuiltinDefaultSchemaYaml());
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

TEST(Schema, DefaultHasTheSpecFieldsInOrder) {
  auto s = Default();
  std::vector<std::string> names;
  for (const auto& f : s->fields()) names.push_back(f.name);
  EXPECT_EQ(names, (std::vector<std::string>{"name", "age", "email", "phone", "city", "occupation",
                                             "interests", "goals", "contact_preference"}));
  EXPECT_EQ(s->Find("interests")->type, FieldType::kStringList);
  EXPECT_EQ(s->Find("contact_preference")->enum_values.size(), 4u);
}

TEST(Schema, ValidatesAndNormalises) {
  auto s = Default();
  EXPECT_EQ(*s->Validate("age", json::value(34)), json::value(34));
  EXPECT_FALSE(s->Validate("age", json::value(131)).ok());
  EXPECT_FALSE(s->Validate("age", json::value("34")).ok());
  EXPECT_FALSE(s->Validate("age", json::value(3.5)).ok());
  EXPECT_EQ(*s->Validate("email", json::value(" Alice@Example.COM ")),
            json::value("alice@example.com"));
  EXPECT_FALSE(s->Validate("email", json::value("not-an-email")).ok());
  EXPECT_EQ(*s->Validate("phone", json::value("+82 10-1234-5678")), json::value("+821012345678"));
  EXPECT_FALSE(s->Validate("phone", json::value("call me")).ok());
  EXPECT_EQ(*s->Validate("contact_preference", json::value("Text")), json::value("sms"));
  EXPECT_FALSE(s->Validate("contact_preference", json::value("pigeon")).ok());
  auto list = s->Validate("interests", json::parse(R"(["hiking"," Jazz ","hiking"])"));
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(*list, json::parse(R"(["hiking","Jazz"])"));
  EXPECT_TRUE(absl::IsNotFound(s->Validate("shoe_size", json::value(9)).status()));
  EXPECT_FALSE(s->Validate("name", json::value(std::string(500, 'a'))).ok());
  EXPECT_FALSE(s->Validate("name", json::value("   ")).ok());
}

TEST(Schema, BadYamlNamesTheKey) {
  auto s = Schema::FromYaml("name: x\nfields:\n  - name: a\n    type: blob\n");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("fields[0].type"), std::string_view::npos) << s.status();
  auto e = Schema::FromYaml("name: x\nfields:\n  - name: c\n    type: enum\n");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("fields[0].values"), std::string_view::npos);
  EXPECT_FALSE(Schema::FromYaml("name: x\n").ok());
  EXPECT_FALSE(Schema::FromYaml("[1, 2").ok());
}

Event FieldSet(uint64_t seq, const std::string& field, json::value v, Hlc hlc) {
  Event e;
  e.seq = seq;
  e.id = "e" + std::to_string(seq);
  e.type = std::string(kFieldSet);
  e.at_ms = HlcMillis(hlc);
  e.hlc = hlc;
  e.origin = "user";
  e.data["field"] = field;
  e.data["value"] = std::move(v);
  e.data["source"] = "user";
  return e;
}

TEST(Profile, ReplayAndSnapshotGiveTheSameBytes) {
  auto s = Default();
  std::vector<Event> events = {
      FieldSet(1, "name", json::value("Alice"), MakeHlc(1000, 0)),
      FieldSet(2, "age", json::value(34), MakeHlc(1001, 0)),
      FieldSet(3, "name", json::value("Al"), MakeHlc(1002, 0)),
  };
  Event clear;
  clear.seq = 4;
  clear.id = "e4";
  clear.type = std::string(kFieldCleared);
  clear.hlc = MakeHlc(1003, 0);
  clear.data["field"] = "age";
  events.push_back(clear);
  events.push_back(FieldSet(5, "city", json::value("Seoul"), MakeHlc(1004, 0)));

  Profile full;
  for (const auto& e : events) full.Apply(e);
  Profile half;
  for (size_t i = 0; i < 2; ++i) half.Apply(events[i]);
  auto restored = Profile::FromSnapshot(half.ToSnapshot());
  ASSERT_TRUE(restored.ok());
  for (size_t i = 2; i < events.size(); ++i) restored->Apply(events[i]);
  EXPECT_EQ(json::serialize(full.ValuesJson(s.get())),
            json::serialize(restored->ValuesJson(s.get())));
  EXPECT_EQ(json::serialize(full.MetaJson()), json::serialize(restored->MetaJson()));
  EXPECT_EQ(json::serialize(full.ValuesJson(s.get())), R"({"name":"Al","city":"Seoul"})");
}

TEST(Profile, LastWriterWinsByHlc) {
  Profile p;
  p.Apply(FieldSet(1, "city", json::value("Busan"), MakeHlc(2000, 0)));
  // A concurrent edit stamped earlier (another device) loses, whatever its seq.
  p.Apply(FieldSet(2, "city", json::value("Seoul"), MakeHlc(1999, 5)));
  EXPECT_EQ(*p.Get("city"), json::value("Busan"));
  p.Apply(FieldSet(3, "city", json::value("Jeju"), MakeHlc(2000, 1)));
  EXPECT_EQ(*p.Get("city"), json::value("Jeju"));
}

TEST(Event, RoundTripsThroughJson) {
  Event e = FieldSet(7, "age", json::value(40), MakeHlc(1732697054123, 3));
  auto back = EventFromJsonString(EventToJsonString(e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(EventToJsonString(*back), EventToJsonString(e));
  EXPECT_FALSE(EventFromJsonString(R"({"seq":0,"id":"x","type":"t","at":"x","hlc":"1"})").ok());
}

}  // namespace
}  // namespace persona::model

namespace persona::model {
namespace {

// Found by fuzzing: times that FormatRfc3339Millis cannot write back
// unchanged (before 1970, normalised past 9999, out-of-range fields).
TEST(Event, RefusesTimesThatDoNotRoundTrip) {
  auto ev = [](const std::string& at) {
    return EventFromJsonString(R"({"seq":1,"id":"e","type":"t","at":")" + at +
                               R"(","hlc":"1","origin":"user","data":{}})");
  };
  EXPECT_TRUE(ev("2026-11-27T08:40:54.123Z").ok());
  EXPECT_TRUE(ev("2026-11-27T08:40:54Z").ok());
  for (const char* bad :
       {"1013-11-27T08:40:54.123Z", "9999-99-01T00:00:00.000Z", "2026-02-30T00:00:00.000Z",
        "2026-11-27T24:00:00.000Z", "2026-11-27T08:40:54.-87Z", "2026-11-27T08:40:54.123", "x"}) {
    EXPECT_FALSE(ev(bad).ok()) << bad;
  }
  auto ok = ev("2024-02-29T23:59:59.999Z");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(FormatRfc3339Millis(ok->at_ms), "2024-02-29T23:59:59.999Z");
}

}  // namespace
}  // namespace persona::model

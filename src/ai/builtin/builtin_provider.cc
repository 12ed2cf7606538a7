#include "ai/builtin/builtin_provider.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "ai/builtin/cities.h"
#include "ai/builtin/extract.h"
#include "ai/builtin/text.h"

namespace persona::ai {
namespace {

using builtin::CountWords;
using builtin::Lower;

std::string Label(const model::FieldSpec& f, bool ko) {
  static const std::map<std::string, std::pair<std::string, std::string>> kLabels = {
      {"name", {"name", "이름"}},
      {"age", {"age", "나이"}},
      {"email", {"email", "이메일 주소"}},
      {"phone", {"phone number", "전화번호"}},
      {"city", {"city", "사는 도시"}},
      {"occupation", {"occupation", "직업"}},
      {"interests", {"interests", "관심사"}},
      {"goals", {"goals", "목표"}},
      {"contact_preference", {"contact preference", "연락 방법"}},
  };
  if (auto it = kLabels.find(f.name); it != kLabels.end())
    return ko ? it->second.second : it->second.first;
  std::string s = f.name;
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

// A value as the user would say it: strings as is, lists joined.
std::string Show(const json::value& v, bool ko) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_array()) {
    std::string out;
    const auto& a = v.get_array();
    for (size_t i = 0; i < a.size(); ++i) {
      if (i > 0) out += (ko || i + 1 < a.size()) ? ", " : " and ";
      out += Show(a[i], ko);
    }
    return out;
  }
  if (v.is_bool()) return v.get_bool() ? (ko ? "예" : "yes") : (ko ? "아니요" : "no");
  return ToJson(v);
}

// The Korean name of a city stored in English ("Seoul" → "서울").
std::string CityForReply(const std::string& en, bool ko) {
  if (!ko) return en;
  const builtin::City* c = builtin::FindCity(en);
  return c && !c->ko.empty() ? std::string(c->ko) : en;
}

std::string ContactWord(const std::string& v, bool ko) {
  static const std::map<std::string, std::pair<std::string, std::string>> kWords = {
      {"email", {"email", "이메일"}},
      {"phone", {"phone", "전화"}},
      {"sms", {"text message", "문자"}},
  };
  if (auto it = kWords.find(v); it != kWords.end())
    return ko ? it->second.second : it->second.first;
  return v;
}

std::string Article(const std::string& phrase) {
  if (phrase.empty()) return "a";
  const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(phrase[0])));
  return std::string("aeiou").find(c) != std::string::npos ? "an" : "a";
}

// What the reply says about one new or changed value. `before` is the old
// value (null if the field was empty).
std::string Ack(const model::FieldSpec& f, const json::value& v, const json::value& before,
                bool ko) {
  const bool updated = !before.is_null();
  const std::string shown = Show(v, ko);
  const std::string& n = f.name;
  if (ko) {
    if (n == "name") return updated ? shown + "님으로 수정했어요." : shown + "님, 만나서 반가워요!";
    if (n == "age") return updated ? "나이를 " + shown + "살로 수정했어요." : shown + "살이시군요.";
    if (n == "email") return updated ? "이메일 주소를 수정했어요." : "이메일 주소를 기록했어요.";
    if (n == "phone") return updated ? "전화번호를 수정했어요." : "전화번호를 기록했어요.";
    if (n == "city") {
      const std::string city = CityForReply(shown, true);
      return updated ? "사는 곳을 " + city + "(으)로 수정했어요." : city + "에 사시는군요.";
    }
    if (n == "occupation")
      return updated ? "직업을 수정했어요: " + shown + "." : shown + " 일을 하시는군요.";
    if (n == "goals") return updated ? "목표를 수정했어요." : "멋진 목표네요!";
    if (n == "contact_preference") {
      if (v.is_string() && v.get_string() == "none") return "알겠어요, 연락드리지 않을게요.";
      return "연락 방법을 기록했어요: " + ContactWord(shown, true) + ".";
    }
    return Label(f, true) + (updated ? " 정보를 수정했어요." : " 정보를 기록했어요.");
  }
  if (n == "name")
    return updated ? "Sorry about that, " + shown + " — I've updated your name."
                   : "Nice to meet you, " + shown + "!";
  if (n == "age")
    return updated ? "Thanks for the correction — you're " + shown + "."
                   : "Got it — you're " + shown + ".";
  if (n == "email")
    return updated ? "Thanks, I've updated your email." : "Thanks, I've noted your email.";
  if (n == "phone")
    return updated ? "Thanks, I've updated your phone number."
                   : "Thanks, I've noted your phone number.";
  if (n == "city")
    return updated ? "Got it — you live in " + shown + " now."
                   : "Got it — you live in " + shown + ".";
  if (n == "occupation") {
    std::string what;
    if (shown == "retired" || shown == "unemployed" || shown == "self-employed" ||
        shown == "between jobs" || shown == "student")
      what = "you're " + (shown == "student" ? "a student" : shown) + ".";
    else if (shown.ends_with("ing"))
      what = "you work in " + shown + ".";
    else if (!shown.empty() && shown[0] >= 'a' && shown[0] <= 'z')
      what = "you work as " + Article(shown) + " " + shown + ".";
    else
      what = "your work: " + shown + ".";
    return (updated ? "Thanks for the update — " : "Got it — ") + what;
  }
  if (n == "goals") return updated ? "Got it — I've updated your goals." : "That's a great goal!";
  if (n == "contact_preference") {
    if (v.is_string() && v.get_string() == "none") return "Got it — I won't contact you.";
    return "Got it — I'll contact you by " + ContactWord(shown, false) + ".";
  }
  return (updated ? "Thanks, I've updated your " : "Thanks, I've noted your ") + Label(f, false) +
         ".";
}

// Interests: mention only the items that are new.
std::string InterestsAck(const model::FieldSpec& f, const json::value& v, const json::value& before,
                         bool ko) {
  json::array fresh;
  if (v.is_array()) {
    for (const auto& item : v.get_array()) {
      bool had = false;
      if (before.is_array())
        for (const auto& b : before.get_array())
          if (b.is_string() && item.is_string() &&
              Lower(std::string(b.get_string())) == Lower(std::string(item.get_string())))
            had = true;
      if (!had) fresh.push_back(item);
    }
  }
  if (fresh.empty()) {
    return ko ? "관심사를 수정했어요: " + Show(v, true) + "."
              : "Got it — your interests are now " + Show(v, false) + ".";
  }
  const std::string shown = Show(json::value(fresh), ko);
  if (ko) return shown + " 좋아하시는군요!";
  return "Nice — " + shown + (fresh.size() > 1 ? " sound" : " sounds") + " fun!";
}

bool IsGreeting(const std::string& lower) {
  const std::string t = builtin::TrimPunct(lower);
  for (std::string_view g : {"hi", "hello", "hey", "good morning", "good afternoon", "good evening",
                             "yo", "howdy", "안녕", "반가워", "반갑습니다"})
    if (t == g || t.starts_with(std::string(g) + " ") || t.starts_with(std::string(g) + ","))
      return true;
  return t.starts_with("안녕");
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    out += (out.empty() ? "" : " ") + p;
  }
  return out;
}

}  // namespace

BuiltinProvider::BuiltinProvider(std::string name) : name_(std::move(name)) {
  // The gazetteer's index (GeoNames' 24,000 cities) is built here, at start,
  // rather than in the first user's step.
  builtin::FindCity("Seoul");
}

std::shared_ptr<Call> BuiltinProvider::Respond(AiRequest req, Callback done) {
  done(Reply(req));
  return nullptr;
}

std::string BuiltinProvider::Question(const model::FieldSpec& field, const std::string& lang) {
  for (const std::string& l : {lang, std::string("en")}) {
    auto it = field.questions.find(l);
    if (it != field.questions.end() && !it->second.empty() && !it->second[0].empty())
      return it->second[0];
  }
  return "Could you tell me your " + Label(field, false) + "?";
}

std::string BuiltinProvider::FirstQuestion(const model::Schema& schema, const std::string& lang) {
  if (schema.fields().empty()) return lang == "ko" ? "안녕하세요!" : "Hello!";
  return Question(schema.fields().front(), lang);
}

StatusOr<AiReply> BuiltinProvider::Reply(const AiRequest& req) const {
  if (!req.schema) return absl::InvalidArgumentError("builtin provider: request without a schema");
  const model::Schema& schema = *req.schema;
  AiReply reply;
  reply.language = builtin::DetectLanguage(req.text, req.language_hint);
  const bool ko = reply.language == "ko";
  reply.provider = name_;
  reply.model = kModel;

  builtin::Extraction ex =
      builtin::ExtractDetailed(schema, req.profile, req.text, req.asked_field, reply.language);
  json::object after = req.profile;
  std::set<std::string> skip;  // fields not to ask for again in this reply
  std::vector<std::string> parts;
  for (const auto& ch : ex.changes) {
    const model::FieldSpec* f = schema.Find(ch.field);
    if (f == nullptr) continue;
    const json::value* had = Find(req.profile, ch.field);
    const json::value before = had ? *had : json::value(nullptr);
    if (ch.value.is_null()) {
      after.erase(ch.field);
      skip.insert(ch.field);
      parts.push_back(ko ? Label(*f, true) + " 정보를 삭제했어요."
                         : "Okay, I've forgotten your " + Label(*f, false) + ".");
      continue;
    }
    after[ch.field] = ch.value;
    parts.push_back(f->type == model::FieldType::kStringList
                        ? InterestsAck(*f, ch.value, before, ko)
                        : Ack(*f, ch.value, before, ko));
  }
  if (!ex.restated.empty() && ex.changes.empty())
    parts.push_back(ko ? "네, 이미 알고 있어요." : "Yes, I already have that.");

  // What to ask next: a rejected value first, else the first missing field.
  const model::FieldSpec* next = nullptr;
  for (const auto& r : ex.rejected) {
    const model::FieldSpec* f = schema.Find(r.field);
    if (f == nullptr) continue;
    const std::string label = Label(*f, ko);
    parts.push_back(ko ? "음, " + r.raw + "은(는) 올바른 " + label + " 값이 아닌 것 같아요."
                       : "Hmm, " + r.raw + " doesn't look like a valid " + label + ".");
    if (next == nullptr) next = f;
  }
  if (ex.declined) {
    parts.push_back(ko ? "괜찮아요, 넘어갈게요." : "No problem, we can skip that.");
    skip.insert(req.asked_field);
  }
  const bool learned =
      !ex.changes.empty() || !ex.restated.empty() || !ex.rejected.empty() || ex.declined;
  if (next == nullptr) {
    for (const auto& f : schema.fields()) {
      const json::value* v = Find(after, f.name);
      if ((v == nullptr || v->is_null()) && !skip.count(f.name)) {
        next = &f;
        break;
      }
    }
  }
  if (!learned) {
    const std::string lower = Lower(req.text);
    if (IsGreeting(lower)) {
      const std::string q = next ? Question(*next, reply.language) : "";
      if (!q.starts_with("Hi") && !q.starts_with("Hello") && !q.starts_with("안녕"))
        parts.push_back(ko ? "안녕하세요!" : "Hello!");
    } else if (next != nullptr && !req.asked_field.empty() && next->name == req.asked_field) {
      parts.push_back(ko ? "죄송해요, 잘 이해하지 못했어요." : "Sorry, I didn't quite catch that.");
    } else if (next == nullptr) {
      parts.push_back(ko ? "말씀 감사해요." : "Thanks for sharing.");
    }
  }
  if (next != nullptr) {
    parts.push_back(Question(*next, reply.language));
    reply.asks = next->name;
  } else {
    std::string name;
    if (const json::value* n = Find(after, "name"); n && n->is_string()) name = n->get_string();
    if (ko) {
      parts.push_back((name.empty() ? "감사합니다!" : name + "님, 감사합니다!") +
                      " 필요한 정보를 모두 받았어요. 수정하고 싶은 내용이 있으면 말씀해 주세요.");
    } else {
      parts.push_back((name.empty() ? "Thanks" : "Thanks, " + name) +
                      " — I have everything I need. Anything you'd like to update?");
    }
  }
  reply.text = Join(parts);
  reply.changes = std::move(ex.changes);
  reply.tokens_in = CountWords(req.text);
  reply.tokens_out = CountWords(reply.text);
  reply.cost_usd = 0;
  return reply;
}

}  // namespace persona::ai

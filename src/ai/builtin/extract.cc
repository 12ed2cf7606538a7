#include "ai/builtin/extract.h"

#include <algorithm>
#include <boost/regex.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <utility>

#include "ai/builtin/cities.h"
#include "ai/builtin/text.h"

namespace persona::ai::builtin {
namespace {

using model::FieldSpec;
using model::FieldType;

// What a field is about, for the name-specific rules of the default schema.
enum class Kind { kGeneric, kName, kAge, kCity, kOccupation, kInterests, kGoals };

bool Contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

// True if `hay` contains one of `needles`. Regex searches dominate the cost of
// a message, so each rule first checks for a literal that every match of its
// regex must contain and skips the regex when none is there.
bool ContainsAny(std::string_view hay, std::initializer_list<std::string_view> needles) {
  for (std::string_view n : needles)
    if (Contains(hay, n)) return true;
  return false;
}

int CountDigits(std::string_view s) {
  return static_cast<int>(
      std::count_if(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; }));
}

bool IsUpperStart(std::string_view w) { return !w.empty() && w[0] >= 'A' && w[0] <= 'Z'; }

Kind Classify(const FieldSpec& f) {
  const std::string n = Lower(f.name);
  const bool stringy = f.type == FieldType::kString || f.type == FieldType::kText;
  if (f.type == FieldType::kString &&
      (n == "name" || n == "nickname" || n.ends_with("_name") || n == "fullname"))
    return Kind::kName;
  if ((f.type == FieldType::kInteger || f.type == FieldType::kNumber) &&
      (n == "age" || n.ends_with("_age") || n.starts_with("age_")))
    return Kind::kAge;
  if (stringy && (Contains(n, "city") || n == "location" || n == "hometown")) return Kind::kCity;
  if (stringy && (Contains(n, "occupation") || Contains(n, "job") || Contains(n, "profession")))
    return Kind::kOccupation;
  if (f.type == FieldType::kStringList &&
      (Contains(n, "interest") || Contains(n, "hobb") || Contains(n, "like")))
    return Kind::kInterests;
  if (stringy && (Contains(n, "goal") || Contains(n, "aim"))) return Kind::kGoals;
  return Kind::kGeneric;
}

// A value found in the text, before validation.
struct Candidate {
  json::value value;
  std::string raw;  // as written, for "200 doesn't look like a valid age"
};

struct Ctx {
  const model::Schema& schema;
  const json::object& profile;
  std::string_view text;  // original
  std::string lower;      // same byte positions as `text`
  std::string_view asked;
  std::string_view lang;
  // Computed once per message for the rules' pre-checks.
  bool hangul = HasHangul(text);
  int digits = CountDigits(text);

  // Clause() is called for every match of a rule, left to right, and looks
  // for the next clause end and stop words. Remembering the last answer keeps
  // a long message with many matches linear instead of quadratic.
  struct FindCache {
    size_t from = std::string::npos;  // the position the answer was found from
    size_t at = std::string::npos;    // the answer; npos: none at or after `from`
  };
  mutable FindCache clause_end[2];                                // [comma]
  mutable std::optional<std::vector<std::string_view>> segments;  // Segments(text), once
  mutable std::vector<std::pair<std::string_view, FindCache>> stops;

  // find_from(pos), or the remembered answer when it is still the answer:
  // the first hit at or after `from` is also the first at or after any `pos`
  // in [from, at].
  size_t Find(FindCache& cache, size_t pos, const std::function<size_t(size_t)>& find_from) const;
  FindCache& StopCache(std::string_view stop) const {
    for (auto& [s, cache] : stops)
      if (s == stop) return cache;
    return stops.emplace_back(stop, FindCache{}).second;
  }
};

// Calls fn(match) for every match of `re` in `s`.
void ForEach(const boost::regex& re, const std::string& s,
             const std::function<void(const boost::smatch&)>& fn) {
  for (auto it = boost::sregex_iterator(s.begin(), s.end(), re); it != boost::sregex_iterator();
       ++it)
    fn(*it);
}

boost::regex Re(const char* pattern) { return boost::regex(pattern, boost::regex::ECMAScript); }

// The compiled `pattern`, for the few patterns built from a field name:
// compiled once per process (compiling costs far more than a search).
const boost::regex& CachedRe(const std::string& pattern) {
  static std::mutex mu;
  static std::map<std::string, boost::regex, std::less<>> cache;  // node-based: stable refs
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(pattern);
  if (it == cache.end()) it = cache.emplace(pattern, Re(pattern.c_str())).first;
  return it->second;
}

// True if `s` holds no regex metacharacter, so that a regex that starts with
// `s` can only match where `s` occurs literally.
bool IsRegexLiteral(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    const auto u = static_cast<unsigned char>(ch);
    return (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == ' ' || u == '-' || u >= 0x80;
  });
}

// False only when the regex `Words(field) + ...` cannot match `lower`.
bool MayMention(const std::string& lower, const std::string& field_words) {
  return !IsRegexLiteral(field_words) || Contains(lower, field_words);
}

bool IsSentenceEnd(char c) { return c == '.' || c == '!' || c == '?' || c == ';' || c == '\n'; }

// True if the clause that Clause() reads ends at byte `i` of `text`: sentence
// punctuation or (when `comma`) a comma. Depends on the bytes around `i` only.
bool EndsClauseAt(std::string_view text, size_t i, bool comma) {
  const char ch = text[i];
  // A full stop inside a word ("St. Louis", "e.g.") is not a sentence end
  // when a lower-case letter or digit follows without a space.
  if (ch == '.' && i + 1 < text.size() && text[i + 1] != ' ') return false;
  // "St. Louis", "Mt. Vernon": an abbreviation, not a sentence end.
  if (ch == '.' && i >= 2 && IsUpperStart(text.substr(i - 2)) && (i == 2 || text[i - 3] == ' ') &&
      i + 2 < text.size() && IsUpperStart(text.substr(i + 2)))
    return false;
  return IsSentenceEnd(ch) || (comma && ch == ',');
}

size_t Ctx::Find(FindCache& cache, size_t pos,
                 const std::function<size_t(size_t)>& find_from) const {
  if (cache.from == std::string::npos || pos < cache.from ||
      (cache.at != std::string::npos && pos > cache.at)) {
    cache.from = pos;
    cache.at = find_from(pos);
  }
  return cache.at;
}

// The text from `pos` up to the end of its clause: sentence punctuation, and
// (when `comma`) a comma, or one of the lower-case `stops` (" and i ") seen
// in `lower`.
std::string Clause(const Ctx& c, size_t pos, bool comma,
                   std::initializer_list<std::string_view> stops) {
  size_t end = c.Find(c.clause_end[comma], pos, [&](size_t from) {
    for (size_t i = from; i < c.text.size(); ++i)
      if (EndsClauseAt(c.text, i, comma)) return i;
    return std::string::npos;
  });
  if (end == std::string::npos) end = c.text.size();
  for (std::string_view stop : stops) {
    const size_t at =
        c.Find(c.StopCache(stop), pos, [&](size_t from) { return c.lower.find(stop, from); });
    if (at != std::string::npos && at < end) end = at;
  }
  return Trim(c.text.substr(pos, end - pos));
}

// Leading words of `s` made of letters (and ' - .), up to `max_words`.
std::vector<std::string> LeadingWords(std::string_view s, size_t max_words) {
  std::vector<std::string> out;
  size_t i = 0;
  while (out.size() < max_words) {
    while (i < s.size() && s[i] == ' ') ++i;
    size_t j = i;
    while (j < s.size() && (IsWordByte(static_cast<unsigned char>(s[j])) || s[j] == '-')) ++j;
    if (j == i) break;
    out.emplace_back(s.substr(i, j - i));
    if (j >= s.size() || s[j] != ' ') break;  // punctuation ends the run
    i = j;
  }
  return out;
}

bool HasDigit(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

bool InList(std::string_view word, std::initializer_list<std::string_view> list) {
  return std::find(list.begin(), list.end(), word) != list.end();
}

// Strips a Korean copula or polite ending: 김민수예요 → 김민수, 서울이요 → 서울.
std::string StripKoreanEnding(std::string s) {
  static constexpr std::string_view kEndings[] = {
      "이라고 합니다", "라고 합니다", "이라고 해요", "라고 해요", "이라고 해", "라고 해",
      "입니다",        "이에요",      "이예요",      "예요",      "에요",      "이요",
      "이야",          "이고",        "님",          "요",        "야"};
  s = TrimPunct(s);
  for (std::string_view e : kEndings) {
    if (s.size() > e.size() + 2 && std::string_view(s).ends_with(e)) {
      s.resize(s.size() - e.size());
      break;
    }
  }
  return Trim(s);
}

// Strips one Korean particle from the end of a word; reports whether it was a
// conjunction (과, 와, 하고, 이랑, 랑) that separates list items.
std::string StripParticle(std::string w, bool* conj) {
  static constexpr std::pair<std::string_view, bool> kParticles[] = {
      {"이랑", true}, {"하고", true}, {"랑", true},  {"과", true},  {"와", true},
      {"을", false},  {"를", false},  {"도", false}, {"은", false}, {"는", false}};
  *conj = false;
  for (const auto& [p, is_conj] : kParticles) {
    if (w.size() > p.size() + 2 && std::string_view(w).ends_with(p)) {
      w.resize(w.size() - p.size());
      *conj = is_conj;
      break;
    }
  }
  return w;
}

bool IsRefusal(const std::string& lower) {
  static const boost::regex kEn =
      Re(R"(\b(skip|pass|rather not|prefer not|don't want to (say|tell|share|answer)|not telling|)"
         R"(no comment|none of your business|next question|i don't know|dunno|not sure|)"
         R"(private|no thanks|nothing|not much|none)\b)");
  static const boost::regex kKo =
      Re("(건너|넘어가|말하고 싶지 않|말하기 싫|비밀|모르겠|패스|다음 질문)");
  const bool en =
      ContainsAny(lower, {"skip", "pass", "rather not", "prefer not", "don't want to ",
                          "not telling", "no comment", "none", "next question", "i don't know",
                          "dunno", "not sure", "private", "no thanks", "nothing", "not much"});
  const bool ko = ContainsAny(lower, {"건너", "넘어가", "말하고 싶지 않", "말하기 싫", "비밀",
                                      "모르겠", "패스", "다음 질문"});
  return (en && boost::regex_search(lower, kEn)) || (ko && boost::regex_search(lower, kKo));
}

// The items of a compact introduction: the text split at , . ; / ! ? and
// dashes ("Sam here, 29, barista from Austin", "Lena. 30. Munich.
// Architect.", "name: Peter / age: 47"). Trimmed; empty items dropped.
std::vector<std::string_view> Segments(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  auto cut = [&](size_t end, size_t skip) {
    std::string_view seg = text.substr(start, end - start);
    while (!seg.empty() && (seg.front() == ' ' || seg.front() == '\t')) seg.remove_prefix(1);
    while (!seg.empty() && (seg.back() == ' ' || seg.back() == '\t')) seg.remove_suffix(1);
    if (!seg.empty()) out.push_back(seg);
    start = end + skip;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char ch = text[i];
    if (ch == ',' || ch == ';' || ch == '/' || ch == '!' || ch == '?' || ch == '\n' || ch == '|' ||
        (ch == '.' && (i + 1 == text.size() || text[i + 1] == ' '))) {
      cut(i, 1);
    } else if (text.substr(i, 3) == " - ") {
      cut(i, 3);
    } else if (text.substr(i, 3) == "\xe2\x80\x94") {  // an em dash
      cut(i, 3);
    }
  }
  cut(text.size(), 0);
  return out;
}

const std::vector<std::string_view>& SegmentsOf(const Ctx& c) {
  if (!c.segments) c.segments = Segments(c.text);
  return *c.segments;
}

// The Hangul syllables of `w` (UTF-8), or 0 if it holds anything else.
size_t HangulSyllables(std::string_view w) {
  if (w.empty() || w.size() % 3 != 0) return 0;
  for (size_t i = 0; i < w.size(); i += 3)
    if (!IsHangulAt(w, i)) return 0;
  return w.size() / 3;
}

// Korean surnames: the common single-syllable ones and the two-syllable
// ones (남궁, 황보, 제갈, 선우, 독고).
size_t KoreanSurnameBytes(std::string_view w) {
  for (std::string_view two : {"남궁", "황보", "제갈", "선우", "독고"})
    if (w.starts_with(two)) return two.size();
  static const std::set<std::string_view> kOne = {
      "김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권",
      "황", "안", "송", "류", "유", "전", "홍", "고", "문", "양", "손", "배", "백", "허", "남",
      "심", "노", "하", "곽", "성", "차", "주", "우", "구", "민", "진", "나", "지", "엄", "채",
      "원", "천", "방", "공", "현", "함", "변", "염", "여", "추", "도", "소", "석", "선", "설",
      "마", "길", "연", "위", "표", "명", "기", "반", "왕", "금", "옥", "육", "인", "맹", "제",
      "모", "탁", "국", "어", "은", "편", "용", "예", "경", "봉", "사", "태", "좌", "시"};
  if (w.size() >= 3 && kOne.count(w.substr(0, 3))) return 3;
  return 0;
}

// ---------------------------------------------------------------- names

const std::initializer_list<std::string_view> kNotNames = {
    "i",          "a",          "an",
    "the",        "not",        "so",
    "just",       "really",     "very",
    "from",       "in",         "at",
    "here",       "fine",       "good",
    "great",      "ok",         "okay",
    "sorry",      "back",       "also",
    "still",      "currently",  "now",
    "actually",   "tired",      "happy",
    "sad",        "married",    "single",
    "retired",    "working",    "living",
    "interested", "into",       "based",
    "looking",    "going",      "trying",
    "planning",   "learning",   "male",
    "female",     "korean",     "american",
    "british",    "english",    "canadian",
    "chinese",    "japanese",   "french",
    "german",     "indian",     "monday",
    "tuesday",    "wednesday",  "thursday",
    "friday",     "saturday",   "sunday",
    "well",       "busy",       "sure",
    "glad",       "new",        "done",
    "free",       "available",  "hungry",
    "bored",      "excited",    "doing",
    "feeling",    "hoping",     "thinking",
    "sick",       "over",       "under",
    "about",      "almost",     "nearly",
    "only",       "on",         "off",
    "no",         "yes",        "hi",
    "hello",      "hey",        "thanks",
    "thank",      "you",        "what",
    "why",        "how",        "who",
    "where",      "when",       "it",
    "this",       "that",       "my",
    "your",       "and",        "but",
    "or",         "years",      "year",
    "old",        "unemployed", "self-employed",
    "student",    "vegan",      "vegetarian",
    "nobody",     "someone",    "anyone",
    "fan",        "big",        "bit",
    "nice",       "pleased",    "work",
    "live",       "like",       "love",
    "enjoy",      "want",       "moving",
    "moved",      "call",       "text",
    "email",      "phone",      "please",
    "later",      "anytime",    "maybe",
    "instead",    "tomorrow",   "today",
    "cool",       "awesome",    "alright",
    "right",      "wrong",      "confused",
    "lost"};

// Words that end a name ("Alice and I'm 34", "Bob from Seoul").
const std::initializer_list<std::string_view> kNameStops = {
    "and",  "but",     "from", "i",    "i'm",    "im",     "here",  "nice", "in",
    "at",   "by",      "who",  "btw",  "please", "thanks", "thank", "live", "living",
    "work", "working", "the",  "a",    "an",     "and",    "aged",  "age",  "years",
    "my",   "so",      "or",   "also", "not",    "is",     "was",   "am"};

// Reads a name at `pos` of the original text. `strong` triggers ("my name
// is") accept lower-case words, weak ones ("I'm") need a capital letter.
// "Dr. ", "Mr ", "Prof. " … at `pos`: its length, else 0. A title is not
// part of the name the user goes by.
size_t TitleAt(std::string_view lower, size_t pos) {
  for (std::string_view t : {"dr", "mr", "mrs", "ms", "mx", "prof", "professor", "miss"}) {
    if (lower.substr(pos, t.size()) != t) continue;
    size_t end = pos + t.size();
    if (end < lower.size() && lower[end] == '.') ++end;
    if (end < lower.size() && lower[end] == ' ') return end + 1 - pos;
  }
  return 0;
}

std::optional<std::string> NameAt(const Ctx& c, size_t pos, bool strong) {
  while (size_t title = TitleAt(c.lower, pos)) pos += title;
  const std::vector<std::string> words = LeadingWords(c.text.substr(pos), 4);
  std::vector<std::string> name;
  for (const std::string& w : words) {
    const std::string lw = Lower(w);
    if (HasDigit(w) || InList(lw, kNameStops)) break;
    if (!strong && !IsUpperStart(w) && !HasHangul(w)) break;
    if (name.empty() && InList(lw, kNotNames)) return std::nullopt;
    if (!strong && !name.empty() && !IsUpperStart(w)) break;
    name.push_back(w);
    if (name.size() == 3) break;
  }
  if (name.empty()) return std::nullopt;
  std::string out;
  for (const auto& w : name) out += (out.empty() ? "" : " ") + w;
  return TitleCaseIfLower(out);
}

// Korean occupations that "저는 X예요" may name (so X is not taken as a name).
bool IsKoreanOccupation(std::string_view w) {
  static const std::set<std::string_view> kJobs = {
      "개발자",        "프로그래머", "디자이너", "엔지니어", "기자",   "교수",     "의사",
      "교사",          "선생님",     "선생",     "학생",     "주부",   "회사원",   "공무원",
      "간호사",        "요리사",     "셰프",     "변호사",   "약사",   "회계사",   "작가",
      "배우",          "가수",       "군인",     "경찰",     "경찰관", "소방관",   "농부",
      "사장",          "자영업자",   "프리랜서", "마케터",   "기획자", "연구원",   "연구자",
      "은행원",        "판매원",     "운전기사", "기사",     "사업가", "예술가",   "음악가",
      "화가",          "사진작가",   "번역가",   "통역사",   "대학생", "대학원생", "고등학생",
      "중학생",        "초등학생",   "직장인",   "백수",     "은퇴자", "무직",     "관리자",
      "상담원",        "사무원",     "승무원",   "조종사",   "미용사", "건축가",   "과학자",
      "데이터 과학자", "의사선생님"};
  if (kJobs.count(w)) return true;
  // Common job suffixes: -사 (간호사), -생 (학생), -가 (작가), -관 (경찰관).
  for (std::string_view suffix : {"사", "생", "가", "관"})
    if (w.size() >= 6 && w.ends_with(suffix)) return true;
  // 용접공, 정비공 (three syllables: not 성공). Not -원: names end with it (채원).
  if (w.size() >= 9 && w.ends_with("공")) return true;
  return false;
}

std::vector<Candidate> NameCandidates(const Ctx& c) {
  std::vector<Candidate> out;
  auto add = [&](const std::optional<std::string>& n) {
    if (n && !n->empty()) out.push_back({json::value(*n), *n});
  };
  static const boost::regex kStrong = Re(
      R"((?:\bmy name(?:'s| is)|(?:^|[.!?] +|\bthe )name(?:'s| is|:)|\bi go by|\bi'm called|\bi am called|)"
      R"(\bpeople call me|\byou can call me|\bjust call me) +)");
  if (ContainsAny(c.lower, {"name", "go by", "called", "call me"})) {
    ForEach(kStrong, c.lower,
            [&](const boost::smatch& m) { add(NameAt(c, m.position() + m.length(), true)); });
  }
  static const boost::regex kCallMe = Re(R"(\bcall me +)");
  if (Contains(c.lower, "call me")) {
    ForEach(kCallMe, c.lower, [&](const boost::smatch& m) {
      add(NameAt(c, m.position() + m.length(), c.asked == "name"));
    });
  }
  static const boost::regex kWeak = Re(R"((?:\bi'm|\bi am|\bim|\bthis is|^it's|^it is) +)");
  if (ContainsAny(c.lower, {"i'm", "i am", "im", "this is", "it's", "it is"})) {
    ForEach(kWeak, c.lower,
            [&](const boost::smatch& m) { add(NameAt(c, m.position() + m.length(), false)); });
  }
  // A compact introduction that starts with the name: "Dr. Kim here, 52",
  // "Sarah Collins, 34, nurse" (after an optional greeting).
  static const boost::regex kLeadName =
      Re(R"(^(?:(?:hi|hey|hello|yo|hiya|greetings)(?: there| all| everyone)?[,!.]* +)?)"
         R"((?:(?:dr|mr|mrs|ms|mx|prof|professor)\.? +)?[a-z\x80-\xff][a-z'\x80-\xff-]*)"
         R"((?: [a-z\x80-\xff][a-z'\x80-\xff-]*){0,2}(?: here\b|, *\d{2}\b))");
  static const boost::regex kGreeting =
      Re(R"(^(?:hi|hey|hello|yo|hiya|greetings)(?: there| all| everyone)?[,!.]* +)");
  if (boost::smatch m; boost::regex_search(c.lower, m, kLeadName)) {
    size_t start = 0;
    if (boost::smatch g; boost::regex_search(c.lower, g, kGreeting))
      start = static_cast<size_t>(g.length(0));
    if (auto n = NameAt(c, start, false); n && !InList(Lower(*n), kNotNames)) add(n);
  }
  if (!c.hangul) return out;  // the Korean rules below all need Hangul
  // Korean: 제 이름은 김민수예요 / 저는 김민수입니다 / 민수라고 불러 주세요.
  static const boost::regex kKoName = Re(R"((?:이름은|이름이|이름 *:) *([^ ,.!?/]+))");
  if (Contains(c.lower, "이름")) {
    ForEach(kKoName, c.lower, [&](const boost::smatch& m) {
      const std::string n = StripKoreanEnding(m.str(1));
      // "이름은 비밀이에요", "이름은 말하기 싫어요": a refusal, not a name.
      for (std::string_view no : {"비밀", "말하기", "말 안", "알려", "싫", "모르", "없", "안 "})
        if (n.starts_with(no)) return;
      if (!n.empty() && !HasDigit(n)) add(TitleCaseIfLower(n));
    });
  }
  static const boost::regex kKoIam = Re(
      R"((?:^|[ ,])(?:저는|전|나는|난) *([^ ,.!?]+?)(?:입니다|이에요|예요|이예요|이야|야|이고요|이고|고요|라고 합니다|이라고 합니다|라고 해요|이라고 해요)(?:[ ,.!?]|$))");
  if (ContainsAny(c.lower, {"저는", "전", "나는", "난"})) {
    ForEach(kKoIam, c.lower, [&](const boost::smatch& m) {
      const std::string n = m.str(1);
      if (HasDigit(n) || IsKoreanOccupation(n) || FindCuratedCity(n) != nullptr) return;
      if (n.ends_with("살") || n.ends_with("세")) return;
      if (HasHangul(n) && (n.size() < 6 || n.size() > 15)) return;  // 2..5 syllables
      add(TitleCaseIfLower(n));
    });
  }
  // A full name introduced with a copula, where an introduction starts: at
  // the start of a sentence, after a greeting, or after the user's job or
  // age ("강민재입니다", "안녕하세요, 최유리예요", "간호사 김소희입니다", "32살
  // 회사원 이동욱입니다"). Three syllables with a surname first (three or four
  // with a two-syllable one), so everyday words ("정말이에요") are not names.
  {
    static const std::initializer_list<std::string_view> kEndings = {
        "이라고 합니다", "라고 합니다", "이라고 해요", "라고 해요", "입니다", "이에요",
        "이예요",        "예요",        "이고요",      "이고",      "고요",   "인데요"};
    static const std::set<std::string_view> kNotNameWords = {
        "정말",   "진짜", "오늘", "내일",   "이거", "저거",   "그거", "여기", "거기", "저기",
        "처음",   "이번", "지금", "조금",   "최고", "최악",   "안녕", "한국", "서울", "이상",
        "주말",   "사실", "고민", "문제",   "정도", "이름",   "나이", "직업", "취미", "전화",
        "이메일", "연락", "비밀", "반가워", "감사", "고마워", "다음", "지난", "요즘"};
    std::string prev;  // the word before
    const std::vector<std::string> words =
        ContainsAny(c.lower, {"입니다", "에요", "예요", "이고", "고요", "인데요", "라고"})
            ? SplitWords(c.text)
            : std::vector<std::string>{};
    for (size_t i = 0; i < words.size(); ++i) {
      std::string w = TrimPunct(words[i]);
      const bool greeted = prev == "안녕하세요" || prev == "안녕하세요!" || prev == "안녕하세요," ||
                           prev == "안녕하세요.";
      // After a relative clause ("제주에 사는 고은비예요"), not a topic ("나이는").
      const bool relative = prev.ends_with("사는") || prev.ends_with("하는") ||
                            prev.ends_with("있는") || prev.ends_with("다니는") ||
                            prev.ends_with("키우는");
      const bool starts = i == 0 || IsSentenceEnd(words[i - 1].back()) ||
                          words[i - 1].back() == ',' || greeted || relative || prev == "저는" ||
                          prev == "전" || prev == "난" || prev == "나는" ||
                          IsKoreanOccupation(StripKoreanEnding(prev)) || prev.ends_with("살") ||
                          prev.ends_with("세");
      prev = TrimPunct(words[i]);
      if (!starts || !HasHangul(w)) continue;
      // "박준호라고 합니다": the ending is two words.
      if (i + 1 < words.size() && (w.ends_with("라고") || w.ends_with("이라고")) &&
          (words[i + 1].starts_with("합니다") || words[i + 1].starts_with("해요") ||
           words[i + 1].starts_with("불러"))) {
        const std::string stem = w.substr(0, w.size() - (w.ends_with("이라고") ? 9 : 6));
        const size_t n = HangulSyllables(stem);
        if (n >= 2 && n <= 4 && !kNotNameWords.count(stem) && !IsKoreanOccupation(stem)) add(stem);
        continue;
      }
      for (std::string_view e : kEndings) {
        if (!w.ends_with(e) || w.size() <= e.size()) continue;
        const std::string stem = w.substr(0, w.size() - e.size());
        const size_t sur = KoreanSurnameBytes(stem);
        const size_t n = HangulSyllables(stem);
        // Right after a greeting a two-syllable given name is enough ("안녕하세요!
        // 민지예요").
        const bool given = greeted && n == 2;
        if (!given && (sur == 0 || n < 3 || n > 4 || (sur == 3 && n == 4))) break;
        if (kNotNameWords.count(stem) || IsKoreanOccupation(stem) ||
            FindCuratedCity(stem) != nullptr || ParseKoreanNativeNumber(stem))
          break;
        add(stem);
        break;
      }
    }
  }
  static const boost::regex kKoCall = Re(R"(([^ ,.!?]+?)(?:이)?라고 불러)");
  if (Contains(c.lower, "라고 불러"))
    ForEach(kKoCall, c.lower, [&](const boost::smatch& m) { add(TitleCaseIfLower(m.str(1))); });
  return out;
}

// A bare answer to "What's your name?": "Alice", "alice kim", "김민수예요".
std::optional<std::string> BareName(std::string_view clause) {
  std::string s = TrimPunct(clause);
  if (s.empty() || HasDigit(s) || Contains(s, "@") || Contains(s, "?")) return std::nullopt;
  if (HasHangul(s)) {
    s = StripKoreanEnding(s);
    static const boost::regex kNo = Re("(뭐|왜|싫|몰라|안녕|아니)");
    if (boost::regex_search(s, kNo) || CountWords(s) > 2) return std::nullopt;
    return s;
  }
  const std::vector<std::string> words = SplitWords(s);
  if (words.empty() || words.size() > 3) return std::nullopt;
  for (const auto& w : words)
    if (InList(Lower(TrimPunct(w)), kNotNames) || InList(Lower(TrimPunct(w)), kNameStops))
      return std::nullopt;
  return TitleCaseIfLower(s);
}

// ---------------------------------------------------------------- numbers

std::optional<int> ParseWordNumber(const std::vector<std::string>& words) {
  static const std::map<std::string_view, int> kUnits = {
      {"zero", 0},     {"one", 1},      {"two", 2},        {"three", 3},     {"four", 4},
      {"five", 5},     {"six", 6},      {"seven", 7},      {"eight", 8},     {"nine", 9},
      {"ten", 10},     {"eleven", 11},  {"twelve", 12},    {"thirteen", 13}, {"fourteen", 14},
      {"fifteen", 15}, {"sixteen", 16}, {"seventeen", 17}, {"eighteen", 18}, {"nineteen", 19}};
  static const std::map<std::string_view, int> kTens = {
      {"twenty", 20}, {"thirty", 30},  {"forty", 40},  {"fifty", 50},
      {"sixty", 60},  {"seventy", 70}, {"eighty", 80}, {"ninety", 90}};
  if (words.empty()) return std::nullopt;
  int total = 0, current = 0;
  bool any = false, after_tens = false, after_unit = false;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (w == "and" && any && i + 1 < words.size()) continue;
    if (w == "a" && i == 0 && words.size() > 1 && words[1] == "hundred") continue;
    if (auto it = kUnits.find(w); it != kUnits.end()) {
      if (after_unit || (after_tens && it->second >= 10)) return std::nullopt;
      current += it->second;
      after_unit = true;
      any = true;
    } else if (auto t = kTens.find(w); t != kTens.end()) {
      if (after_tens || after_unit) return std::nullopt;
      current += t->second;
      after_tens = true;
      any = true;
    } else if (w == "hundred") {
      if (current >= 10 || total > 0) return std::nullopt;
      total = (current == 0 ? 1 : current) * 100;
      current = 0;
      after_tens = after_unit = false;
      any = true;
    } else {
      return std::nullopt;
    }
  }
  if (!any) return std::nullopt;
  return total + current;
}

// Splits "thirty-four" and "thirty four" alike into words.
std::vector<std::string> NumberWords(std::string_view s) {
  std::string t = Lower(s);
  std::replace(t.begin(), t.end(), '-', ' ');
  return SplitWords(t);
}

// The longest run of number words in `lower` at or after `pos`, skipping
// nothing: returns {value, raw} when the run starts exactly at `pos`.
std::optional<std::pair<int, std::string>> NumberWordsAt(std::string_view lower, size_t pos) {
  std::vector<std::string> words = LeadingWords(lower.substr(pos), 6);
  // Every run tried below starts with the same first part, and a number
  // starts with a number word or "a" ("a hundred"): skip the rest cheaply,
  // since callers try every word of a message.
  for (const std::string& w : words) {
    const std::vector<std::string> parts = NumberWords(w);
    if (parts.empty()) continue;
    if (parts[0] != "a" && !ParseWordNumber({parts[0]})) return std::nullopt;
    break;
  }
  for (size_t n = words.size(); n > 0; --n) {
    std::vector<std::string> parts;
    std::string raw;
    for (size_t i = 0; i < n; ++i) {
      raw += (i ? " " : "") + words[i];
      for (const auto& p : NumberWords(words[i])) parts.push_back(p);
    }
    if (auto v = ParseWordNumber(parts)) return std::make_pair(*v, raw);
  }
  return std::nullopt;
}

int CurrentYear() {
  const auto today = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
  return static_cast<int>(std::chrono::year_month_day(today).year());
}

Candidate IntCandidate(int64_t n, std::string raw) { return {json::value(n), std::move(raw)}; }

std::vector<Candidate> AgeCandidates(const Ctx& c) {
  std::vector<Candidate> out;
  const std::string& l = c.lower;
  // Someone else's age ("my daughter just turned 18", "she's 5 years old"):
  // a possessive or a third person among the three words before.
  auto someone_else = [&](size_t at) {
    size_t begin = at;
    for (int words = 0; begin > 0 && words < 4; --begin) {
      if (IsSentenceEnd(l[begin - 1]) || l[begin - 1] == ',') break;
      if (l[begin - 1] == ' ') ++words;
    }
    for (const auto& w : SplitWords(l.substr(begin, at - begin)))
      if (InList(TrimPunct(w), {"my", "she", "he", "she's", "he's", "they", "her", "his", "our",
                                "their", "your", "son", "daughter", "kid", "kids"}))
        return true;
    return false;
  };
  auto add_digits = [&](const std::string& d) {
    if (d.size() <= 6) out.push_back(IntCandidate(std::stoll(d), d));
  };
  static const boost::regex kDigits = Re(
      R"((\d{1,6}) *(?:years?|yrs?|y/o|yo)(?: old| of age)?\b|\bage(?:d|s)?(?: is| of|:| =)? *(\d{1,6})\b|)"
      R"(\bi(?:'m| am|m) (?:now |only |just |actually |already )?(\d{1,6})(?!\d|[.,:]\d|[%'"]| ?(?:kg|cm|lbs?|km|m\b|pounds|feet|ft|min|hours?|am\b|pm\b|o'clock|percent|st\b|nd\b|rd\b|th\b))|)"
      R"(\bturn(?:ed|s)? (\d{1,6})\b)");
  // Every rule up to the native-number one needs a digit.
  if (c.digits > 0) {
    ForEach(kDigits, l, [&](const boost::smatch& m) {
      for (int g = 1; g <= 4; ++g) {
        if (m[g].matched) {
          // "5 years" alone is a duration; only "5 years old" or an asked age is an age.
          if (g == 1 && !Contains(m.str(0), "old") && !Contains(m.str(0), "age") &&
              !Contains(m.str(0), "y/o") && !Contains(m.str(0), "yo") && c.asked != "age")
            return;
          // "my age is 41" is the user's; "my son is 5 years old" is not.
          const bool my_age =
              g == 2 && m.position() >= 3 && l.compare(m.position() - 3, 3, "my ") == 0;
          if (!my_age && someone_else(m.position())) return;
          add_digits(m.str(g));
        }
      }
    });
    static const boost::regex kBorn = Re(
        R"(\bborn (?:in |on )?(?:[a-z]+ )?(?:\d{1,2}(?:st|nd|rd|th)?,? )?(\d{4})\b|(\d{4}) *년(?:생| *에 *태어))");
    if (ContainsAny(l, {"born", "년"})) {
      ForEach(kBorn, l, [&](const boost::smatch& m) {
        const int year = std::stoi(m[1].matched ? m.str(1) : m.str(2));
        out.push_back(IntCandidate(CurrentYear() - year, m.str(0)));
      });
    }
    static const boost::regex kShortBorn = Re(R"((?:^|[^\d])(\d{2}) *년생)");
    if (Contains(l, "년생")) {
      ForEach(kShortBorn, l, [&](const boost::smatch& m) {
        const int yy = std::stoi(m.str(1));
        const int now = CurrentYear();
        const int year = (2000 + yy <= now ? 2000 : 1900) + yy;
        out.push_back(IntCandidate(now - year, m.str(1) + "년생"));
      });
    }
    // Korean: 34살, 34 살, 34세, 나이는 34.
    static const boost::regex kKo = Re(R"((\d{1,6}) *(?:살|세)|나이(?:는|가)? *:? *(\d{1,6}))");
    if (ContainsAny(l, {"살", "세", "나이"})) {
      ForEach(kKo, l,
              [&](const boost::smatch& m) { add_digits(m[1].matched ? m.str(1) : m.str(2)); });
    }
  }
  if (c.digits > 0) {
    // A birthday to come: "turning 35 next month", "I'll be 30 in June" → 34, 29.
    static const boost::regex kSoon = Re(
        R"(\b(?:i'm |i am |im )?turning (\d{1,3})\b|\bi(?:'ll| will) be (\d{1,3})(?! ?(?:am|pm|min|minutes|hours|o'clock|%))\b)");
    if (ContainsAny(l, {"turning", "'ll be", "will be"})) {
      ForEach(kSoon, l, [&](const boost::smatch& m) {
        const std::string d = m[1].matched ? m.str(1) : m.str(2);
        if (someone_else(m.position())) return;
        out.push_back(IntCandidate(std::stoll(d) - 1, m.str(0)));
      });
    }
    // "a 33-year-old engineer", "33-year-old here".
    static const boost::regex kAdj = Re(R"((?:^|\ba |\ban |[ ,])(\d{1,3})[- ]years?[- ]old\b)");
    if (Contains(l, "old")) {
      ForEach(kAdj, l, [&](const boost::smatch& m) {
        if (!someone_else(m.position(1))) add_digits(m.str(1));
      });
    }
  }
  // A number that is a whole item of a list of facts: "Sarah, 34, nurse",
  // "Kim Minho. 52. Cardiologist." (two digits, nothing else in its item).
  if (c.digits >= 2 && ContainsAny(l, {",", ". ", ";"})) {
    static const boost::regex kListed =
        Re(R"((?:^|[,;]|\. ) *(\d{2})(?: *(?:yo|y\.o\.|y/o))? *(?=[,;]|\.(?: |$)|$| and ))");
    ForEach(kListed, l, [&](const boost::smatch& m) {
      // It must be one of several items: another separator elsewhere.
      const size_t seps = std::count(l.begin(), l.end(), ',') +
                          std::count(l.begin(), l.end(), ';') + (Contains(l, ". ") ? 1 : 0);
      if (seps >= 1 && l.size() > static_cast<size_t>(m.length(0)) + 2) add_digits(m.str(1));
    });
  }
  // Korean: 나이는 마흔하나예요.
  static const boost::regex kKoAgeWord = Re(R"(나이(?:는|가) *([^ ,.!?]+))");
  if (c.hangul && Contains(l, "나이")) {
    ForEach(kKoAgeWord, l, [&](const boost::smatch& m) {
      if (auto n = ParseKoreanNativeNumber(StripKoreanEnding(m.str(1))))
        out.push_back(IntCandidate(*n, m.str(1)));
    });
  }
  // Korean native numbers: 서른네 살, 스무살.
  for (size_t at = l.find("살"); at != std::string::npos; at = l.find("살", at + 3)) {
    size_t end = at;
    while (end > 0 && l[end - 1] == ' ') --end;
    size_t begin = end;
    while (begin >= 3 && IsHangulAt(l, begin - 3)) begin -= 3;
    if (begin < end) {
      if (auto n = ParseKoreanNativeNumber(l.substr(begin, end - begin)))
        out.push_back(IntCandidate(*n, l.substr(begin, end - begin)));
    }
  }
  // English words: "I'm thirty-four", "thirty four years old", "aged forty".
  static const boost::regex kWordCue = Re(R"((?:\bi'm|\bi am|\bim|\baged?|\bturned|\bage is) +)");
  if (ContainsAny(l, {"i'm", "i am", "im", "age", "turned"})) {
    ForEach(kWordCue, l, [&](const boost::smatch& m) {
      if (auto n = NumberWordsAt(l, m.position() + m.length()))
        out.push_back(IntCandidate(n->first, n->second));
    });
  }
  static const boost::regex kWordOld = Re(R"(([a-z][a-z -]*?) +years? old)");
  if (Contains(l, "year")) {
    ForEach(kWordOld, l, [&](const boost::smatch& m) {
      // The longest number-word suffix of the captured words.
      const std::vector<std::string> words = SplitWords(m.str(1));
      for (size_t from = 0; from < words.size(); ++from) {
        std::string tail;
        for (size_t i = from; i < words.size(); ++i) tail += (i > from ? " " : "") + words[i];
        if (auto n = ParseWordNumber(NumberWords(tail))) {
          out.push_back(IntCandidate(*n, tail));
          break;
        }
      }
    });
  }
  // A correction in the same message wins: "I'm 31 — wait, no, 32".
  static const boost::regex kFix = Re(
      R"((?:\bwait|\bno|\bsorry|\bactually|\bi mean|\boops)[,.!]* +(?:no[,.]* +)?(?:i'm |i am |im )?(\d{2,3})\b(?! ?(?:am|pm|min|minutes|hours|o'clock|%|kg|cm))(?! *(?:years?|yrs?) (?:ago|later)))");
  if (out.size() >= 1 && c.digits >= 4 &&
      ContainsAny(l, {"wait", "no", "sorry", "actually", "i mean", "oops"})) {
    std::vector<Candidate> fixes;
    ForEach(kFix, l, [&](const boost::smatch& m) {
      fixes.push_back(IntCandidate(std::stoll(m.str(1)), m.str(1)));
    });
    // The last correction first.
    out.insert(out.begin(), fixes.rbegin(), fixes.rend());
  }
  return out;
}

// A bare answer to "How old are you?": "34", "about 34", "thirty-four", "서른넷".
std::vector<Candidate> BareNumber(const Ctx& c, bool integer) {
  std::vector<Candidate> out;
  static const boost::regex kNum = Re(R"((^|[^\d.])(-?\d{1,9}(?:\.\d+)?)(?![\d@]))");
  boost::smatch m;
  if (boost::regex_search(c.lower, m, kNum)) {
    const std::string d = m.str(2);
    if (d.find('.') != std::string::npos) {
      if (!integer)
        out.push_back({json::value(std::stod(d)), d});
      else
        out.push_back({json::value(std::stod(d)), d});  // rejected as "not an integer"
    } else {
      out.push_back(IntCandidate(std::stoll(d), d));
    }
    return out;
  }
  const std::string t = TrimPunct(c.lower);
  for (size_t i = 0; i < t.size(); ++i) {
    if (i == 0 || t[i - 1] == ' ') {
      if (auto n = NumberWordsAt(t, i)) {
        out.push_back(IntCandidate(n->first, n->second));
        return out;
      }
    }
  }
  for (const std::string& w : SplitWords(t)) {
    if (auto n = ParseKoreanNativeNumber(StripKoreanEnding(w))) {
      out.push_back(IntCandidate(*n, w));
      return out;
    }
  }
  return out;
}

// ---------------------------------------------------------------- email, phone, date

const boost::regex& EmailRe() {
  static const boost::regex re = Re(R"([a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,})");
  return re;
}

std::vector<Candidate> EmailCandidates(const Ctx& c, bool asked) {
  std::vector<Candidate> out;
  if (!Contains(c.lower, "@")) return out;
  ForEach(EmailRe(), c.lower, [&](const boost::smatch& m) {
    out.push_back({json::value(m.str(0)), m.str(0)});
  });
  if (out.empty() && asked) {
    // Something email-like that the schema will reject ("alice@example").
    for (const std::string& w : SplitWords(c.text))
      if (Contains(w, "@")) out.push_back({json::value(TrimPunct(w)), TrimPunct(w)});
  }
  return out;
}

std::string MaskEmails(const std::string& lower) {
  if (!Contains(lower, "@")) return lower;
  return boost::regex_replace(lower, EmailRe(), " ");
}

std::vector<Candidate> PhoneCandidates(const Ctx& c, bool asked) {
  std::vector<Candidate> out;
  // A candidate needs 7 digits (3 when asked), and the match holds no more
  // digits than the whole message.
  if (c.digits < (asked ? 3 : 7)) return out;
  const std::string masked = MaskEmails(c.lower);
  static const boost::regex kPhone = Re(R"((?:^|[^\d\w])(\+?\(?\d[\d\-. ()]{4,20}\d))");
  static const boost::regex kDate = Re(R"(^\d{4}[-./]\d{1,2}[-./]\d{1,2}$)");
  ForEach(kPhone, masked, [&](const boost::smatch& m) {
    const std::string raw = Trim(m.str(1));
    if (boost::regex_match(raw, kDate)) return;
    const auto digits =
        std::count_if(raw.begin(), raw.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (digits >= 7 || (asked && digits >= 3)) out.push_back({json::value(raw), raw});
  });
  return out;
}

std::vector<Candidate> DateCandidates(const Ctx& c) {
  std::vector<Candidate> out;
  if (c.digits < 6) return out;  // yyyy + m + d
  static const boost::regex kDate =
      Re(R"((\d{4}) *(?:[-./]|년) *(\d{1,2}) *(?:[-./]|월) *(\d{1,2}) *(?:일)?)");
  ForEach(kDate, c.lower, [&](const boost::smatch& m) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", std::stoi(m.str(1)) % 10000,
                  std::stoi(m.str(2)) % 100, std::stoi(m.str(3)) % 100);
    out.push_back({json::value(std::string(buf)), Trim(m.str(0))});
  });
  return out;
}

// ---------------------------------------------------------------- city

std::vector<Candidate> CityAt(const Ctx& c, size_t pos, bool accept_lower) {
  const std::string clause = Clause(c, pos, false, {" and ", " but ", " since ", " for "});
  if (auto m = MatchCityPrefix(clause)) {
    return {{json::value(std::string(m->city->en)), clause.substr(m->pos, m->len)}};
  }
  if (auto m = FindCityIn(clause)) {
    return {{json::value(std::string(m->city->en)), clause.substr(m->pos, m->len)}};
  }
  // An unknown place: capitalised words ("Springfield", "Little Rock").
  std::vector<std::string> words = LeadingWords(clause, 4);
  std::string place;
  for (const auto& w : words) {
    const bool connector = InList(w, {"de", "la", "del", "do", "da", "of", "upon", "am"});
    if (!(IsUpperStart(w) || (accept_lower && place.empty()) || (connector && !place.empty())))
      break;
    if (InList(Lower(w), {"the", "a", "an", "my", "our", "this", "that", "here", "there", "it",
                          "love", "now", "currently"}))
      break;
    place += (place.empty() ? "" : " ") + w;
  }
  while (!place.empty() && !IsUpperStart(place.substr(place.rfind(' ') + 1)) &&
         place.find(' ') != std::string::npos) {
    place.resize(place.rfind(' '));  // a trailing connector
  }
  if (place.empty() || HasDigit(place)) return {};
  return {{json::value(TitleCaseIfLower(place)), place}};
}

// True if the clause from `pos` on says the place is not the user's home:
// "… for a work trip this week", "… at a hostel, just backpacking".
bool NotHomeAfter(const Ctx& c, size_t pos) {
  size_t end = pos;
  while (end < c.lower.size() && !IsSentenceEnd(c.lower[end])) ++end;
  for (const auto& w : SplitWords(c.lower.substr(pos, end - pos))) {
    if (InList(TrimPunct(w),
               {"trip",      "visiting",   "visit",       "vacation",   "holiday", "holidays",
                "hostel",    "hotel",      "backpacking", "conference", "layover", "business",
                "week",      "weekend",    "weeks",       "days",       "tour",    "touring",
                "traveling", "travelling", "staying"}))
      return true;
  }
  return false;
}

std::vector<Candidate> CityCandidates(const Ctx& c) {
  std::vector<Candidate> out, from;
  auto append = [](std::vector<Candidate>* to, std::vector<Candidate> more) {
    for (auto& m : more) to->push_back(std::move(m));
  };
  static const boost::regex kLive = Re(
      R"((?:\b(?:i|we) (?:currently |now |still |actually |also )?(?:live|reside|stay) in|)"
      R"(\b(?:i'm|i am|im|we're|we are) (?:currently |now |still |actually )?(?:living|staying|based|residing) (?:in|out of)|)"
      R"(\bliving in|\bbased (?:in|out of)|\b(?:just |recently |)moved to|\brelocated to|\bhere in|\bnow (?:live|living) in|)"
      R"(\bmy (?:city|hometown|home town|location) is|\bcity:) +)");
  if (ContainsAny(c.lower, {"live", "liv", "resid", "stay", "based", "moved to", "relocated to",
                            "city", "hometown", "home town", "location", "here in"})) {
    ForEach(kLive, c.lower, [&](const boost::smatch& m) {
      if (Contains(m.str(0), "here in") && NotHomeAfter(c, m.position() + m.length())) return;
      append(&out, CityAt(c, m.position() + m.length(),
                          Contains(m.str(0), "is") || Contains(m.str(0), "city:")));
    });
  }
  static const boost::regex kFrom =
      Re(R"((?:\b(?:i'm|i am|im) (?:originally )?from|\bi come from|\bi'm in|\bi am in) +)");
  if (ContainsAny(c.lower, {"from", "i'm in", "i am in"})) {
    ForEach(kFrom, c.lower, [&](const boost::smatch& m) {
      auto found = CityAt(c, m.position() + m.length(), false);
      // "I'm in love" is not a place: "I'm in X" needs a known city, and
      // "I'm in Bangkok for a work trip" is not home.
      if (Contains(m.str(0), " in") && !found.empty() &&
          (FindCity(found[0].value.get_string().c_str()) == nullptr ||
           NotHomeAfter(c, m.position() + m.length())))
        return;
      append(&from, std::move(found));
    });
  }
  // Korean: 서울에 살아요, 부산에서 살고 있어요, 대구 출신이에요, 인천으로 이사했어요.
  static const boost::regex kKo = Re(
      R"((?:^|[ ,])([^ ,.!?]+?)(?:에서|에) *(?:살아|살고|삽니다|살아요|거주|지내|살며|살 |사는|산 지)|)"
      R"((?:^|[ ,])([^ ,.!?]+?)(?:으로|로) *이사|(?:사는 곳은|도시는|사는 도시는|사는 곳 *:) *([^ ,.!?/]+))");
  if (c.hangul && ContainsAny(c.lower, {"에", "로", "도시는", "사는 곳"})) {
    ForEach(kKo, c.lower, [&](const boost::smatch& m) {
      std::string raw = m[1].matched ? m.str(1) : m[2].matched ? m.str(2) : m.str(3);
      raw = StripKoreanEnding(raw);
      if (raw.empty() || HasDigit(raw)) return;
      if (const City* city = FindCity(raw)) {
        out.push_back({json::value(std::string(city->en)), raw});
        return;
      }
      // A district after its city ("서울 강남에 살아요"): the city.
      const size_t at = m.position(m[1].matched ? 1 : m[2].matched ? 2 : 3);
      size_t end = at;
      while (end > 0 && c.lower[end - 1] == ' ') --end;
      size_t begin = end;
      while (begin > 0 && c.lower[begin - 1] != ' ' && c.lower[begin - 1] != ',') --begin;
      if (begin < end) {
        if (const City* city = FindCity(StripKoreanEnding(c.lower.substr(begin, end - begin)))) {
          out.push_back({json::value(std::string(city->en)), c.lower.substr(begin, end - begin)});
          return;
        }
      }
      out.push_back({json::value(TitleCaseIfLower(raw)), raw});
    });
  }
  // A known city with no particle before 사는 / 살아요 ("부산 사는 간호사",
  // "대전 살아요", "춘천 살아"), and, weaker, where the user works ("서울에서
  // 개발자로 일해요", "청주에서 약사로 일하고 있어요"; a known city only).
  std::vector<Candidate> works_in;
  if (c.hangul && ContainsAny(c.lower, {"사는", "살아", "살고", "삽니다", "거주", "에서"})) {
    const std::vector<std::string> words = SplitWords(c.lower);
    for (size_t i = 0; i < words.size(); ++i) {
      const std::string w = TrimPunct(words[i]);
      if (i > 0 && (w == "사는" || w.starts_with("살아") || w.starts_with("살고") ||
                    w.starts_with("삽니다") || w.starts_with("거주"))) {
        const std::string place = TrimPunct(words[i - 1]);
        if (const City* city = FindCity(place))
          out.push_back({json::value(std::string(city->en)), place});
      }
      if (w.size() > 6 && w.ends_with("에서")) {
        const City* city = FindCity(w.substr(0, w.size() - 6));
        for (size_t k = i + 1; city != nullptr && k < words.size() && k <= i + 4; ++k) {
          if (words[k].starts_with("일하") || words[k].starts_with("일해") ||
              words[k].starts_with("근무") || words[k].starts_with("일합") ||
              Contains(words[k], "로 일")) {
            works_in.push_back({json::value(std::string(city->en)), w});
            break;
          }
        }
      }
    }
  }
  static const boost::regex kKoFrom =
      Re(R"((?:^|[ ,])([^ ,.!?]+?) *(?:출신|에서 왔|사람이에요|사람입니다))");
  if (ContainsAny(c.lower, {"출신", "에서 왔", "사람이에요", "사람입니다"})) {
    ForEach(kKoFrom, c.lower, [&](const boost::smatch& m) {
      if (const City* city = FindCity(m.str(1)))
        from.push_back({json::value(std::string(city->en)), m.str(1)});
    });
  }
  // Where the user works, after where they are from.
  append(&from, std::move(works_in));
  // Where the user lives now beats where they are from.
  append(&out, std::move(from));
  // Weakest: a known city after "in" or "from" anywhere ("a nurse in
  // Seoul", "cardiologist from Busan"), unless the words before say it is
  // not where the user lives (a trip, a birthplace, someone else).
  if (ContainsAny(c.lower, {" in ", " from ", "in ", "from "})) {
    static const boost::regex kPlaceCue = Re(R"(\b(?:in|from) +)");
    static const std::initializer_list<std::string_view> kNotHome = {
        "born",   "grew",     "raised",     "visit",    "visited",    "visiting",  "trip",
        "travel", "traveled", "travelled",  "vacation", "holiday",    "went",      "been",
        "flew",   "flying",   "interested", "believe",  "back",       "returned",  "studied",
        "stayed", "friend",   "friends",    "family",   "parents",    "mom",       "mum",
        "dad",    "mother",   "father",     "wife",     "husband",    "brother",   "sister",
        "son",    "daughter", "boss",       "partner",  "girlfriend", "boyfriend", "flight",
        "was",    "were",     "used",       "ago",      "last",       "next",      "someday",
        "once",   "moving",   "cousin",     "aunt",     "uncle",      "grandma",   "grandpa",
        "kids",   "children", "team",       "company",  "she",        "he",        "she's",
        "he's",   "they",     "they're",    "her",      "his"};
    ForEach(kPlaceCue, c.lower, [&](const boost::smatch& m) {
      const size_t pos = m.position() + m.length();
      // The clause before the cue, back to its start: no word that says "not home".
      size_t begin = m.position();
      while (begin > 0 && !IsSentenceEnd(c.lower[begin - 1]) && c.lower[begin - 1] != ',') --begin;
      for (const auto& w : SplitWords(c.lower.substr(begin, m.position() - begin)))
        if (InList(TrimPunct(w), kNotHome)) return;
      auto found = MatchCityPrefix(c.text.substr(pos));
      if (!found || found->pos != 0) return;
      if (!found->city->curated && !IsUpperStart(c.text.substr(pos))) return;
      if (NotHomeAfter(c, pos + found->len)) return;
      out.push_back(
          {json::value(std::string(found->city->en)), std::string(c.text.substr(pos, found->len))});
    });
  }
  // Weakest: a known city that is a whole item of a compact introduction
  // with other facts in it ("Lena. 30. Munich. Architect.", "Dr. Kim, 45,
  // cardiologist, Minneapolis."): capitalised, and a curated city or one
  // of 100,000 people or more (GeoNames names include everyday words).
  const std::vector<std::string_view>& segs = SegmentsOf(c);
  if (segs.size() >= 3) {
    for (std::string_view seg : segs) {
      if (!IsUpperStart(seg)) continue;
      const City* city = FindCity(seg);
      if (city == nullptr || (!city->curated && city->population < 100000)) continue;
      out.push_back({json::value(std::string(city->en)), std::string(seg)});
    }
  }
  return out;
}

std::vector<Candidate> BareCity(const Ctx& c, std::string_view clause) {
  if (auto m = FindCityIn(clause))
    return {{json::value(std::string(m->city->en)), std::string(clause.substr(m->pos, m->len))}};
  std::string s = TrimPunct(clause);
  if (HasHangul(s)) s = StripKoreanEnding(s);
  for (std::string_view prefix : {"in ", "it's ", "its ", "i live in "})
    if (Lower(s).starts_with(prefix)) s = s.substr(prefix.size());
  if (s.empty() || HasDigit(s) || CountWords(s) > 3 || Contains(s, "?")) return {};
  for (const auto& w : SplitWords(Lower(s)))
    if (InList(w, kNotNames)) return {};
  return {{json::value(TitleCaseIfLower(s)), s}};
}

// ---------------------------------------------------------------- occupation

const std::initializer_list<std::string_view> kJobWords = {
    "engineer",     "developer",     "programmer",   "teacher",      "nurse",        "doctor",
    "student",      "designer",      "manager",      "lawyer",       "accountant",   "chef",
    "cook",         "writer",        "artist",       "scientist",    "researcher",   "professor",
    "consultant",   "analyst",       "architect",    "pilot",        "driver",       "farmer",
    "pharmacist",   "dentist",       "surgeon",      "physician",    "therapist",    "journalist",
    "editor",       "photographer",  "musician",     "actor",        "actress",      "singer",
    "dancer",       "mechanic",      "electrician",  "plumber",      "carpenter",    "firefighter",
    "officer",      "soldier",       "cashier",      "clerk",        "salesperson",  "marketer",
    "entrepreneur", "founder",       "ceo",          "cto",          "owner",        "freelancer",
    "barista",      "waiter",        "waitress",     "bartender",    "librarian",    "veterinarian",
    "vet",          "paramedic",     "translator",   "interpreter",  "secretary",    "assistant",
    "intern",       "tutor",         "coach",        "trainer",      "banker",       "economist",
    "scientist",    "technician",    "cleaner",      "housewife",    "homemaker",    "retiree",
    "specialist",   "administrator", "director",     "lead",         "president",    "executive",
    "producer",     "director",      "police",       "detective",    "judge",        "miner",
    "fisherman",    "builder",       "baker",        "butcher",      "tailor",       "hairdresser",
    "stylist",      "model",         "streamer",     "youtuber",     "blogger",      "investor",
    "trader",       "agent",         "broker",       "coordinator",  "midwife",      "nanny",
    "caregiver",    "receptionist",  "instructor",   "welder",       "janitor",      "courier",
    "guard",        "lecturer",      "optician",     "surveyor",     "machinist",    "painter",
    "sculptor",     "poet",          "novelist",     "composer",     "dj",           "chemist",
    "physicist",    "biologist",     "geologist",    "nutritionist", "dietitian",    "accountant",
    "auditor",      "bookkeeper",    "paralegal",    "attorney",     "counselor",    "counsellor",
    "psychologist", "psychiatrist",  "pediatrician", "optometrist",  "radiologist",  "sailor",
    "seaman",       "captain",       "steward",      "stewardess",   "attendant",    "housekeeper",
    "gardener",     "landscaper",    "rancher",      "beekeeper",    "jeweler",      "florist",
    "barber",       "chauffeur",     "dispatcher",   "recruiter",    "planner",      "strategist",
    "webdesigner",  "animator",      "illustrator",  "copywriter",   "screenwriter", "filmmaker",
    "vlogger",      "influencer",    "pastor",       "priest",       "monk",         "nun",
    "athlete",      "footballer",    "cyclist",      "swimmer",      "nurse's aide", "medic"};

// The people-words that end in job-like suffixes but are not jobs.
const std::initializer_list<std::string_view> kNotJobs = {
    "teenager", "beginner",   "lover",     "member",    "foreigner", "mother",  "father",
    "brother",  "sister",     "daughter",  "parent",    "resident",  "person",  "fan",
    "bit",      "lot",        "child",     "kid",       "adult",     "citizen", "native",
    "vegan",    "vegetarian", "introvert", "extrovert", "friend",    "newbie",  "local",
    "tourist",  "visitor",    "runner",    "reader",    "gamer",     "dreamer", "believer",
    "survivor", "winner",     "loser",     "thinker",   "talker",    "sucker",  "fighter",
    "hugger",   "other",      "morning",   "night",     "big",       "huge",    "little",
    "good",     "great",      "bad",       "proud",     "new",       "single",  "married",
    "total",    "bit",        "true",      "real",      "fast",      "slow",    "very",
    "pretty",   "cat",        "dog",       "people",    "only",      "early",   "late",
    "part"};

bool LooksLikeJob(const std::vector<std::string>& words) {
  if (words.empty()) return false;
  for (const auto& w : words)
    if (InList(Lower(w), kNotJobs)) return false;
  for (const auto& w : words)
    if (InList(Lower(w), kJobWords)) return true;
  const std::string last = Lower(words.back());
  for (std::string_view suffix : {"er", "or", "ist", "ian", "ant", "ent", "eer", "ect", "man",
                                  "woman", "ee", "ive", "ographer"})
    if (last.size() > suffix.size() + 2 && last.ends_with(suffix)) return true;
  return false;
}

std::optional<std::string> JobPhrase(const Ctx& c, size_t pos, bool guard) {
  std::string phrase =
      Clause(c, pos, true,
             {" at ", " for ", " in ", " with ", " and ", " but ", " from ", " who ", " since ",
              " so ", " because ", " living ", " based ", " of "});
  std::vector<std::string> words = SplitWords(phrase);
  while (!words.empty() && InList(Lower(words[0]), {"a", "an", "the", "as"}))
    words.erase(words.begin());
  if (words.empty() || words.size() > 5) return std::nullopt;
  if (guard && !LooksLikeJob(words)) return std::nullopt;
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  out = TrimPunct(out);
  if (out.empty() || HasDigit(out) || FindCuratedCity(out) != nullptr) return std::nullopt;
  return out;
}

std::vector<Candidate> OccupationCandidates(const Ctx& c) {
  std::vector<Candidate> out;
  auto add = [&](const std::optional<std::string>& p) {
    if (p) out.push_back({json::value(*p), *p});
  };
  static const boost::regex kStrong = Re(
      R"((?:\bi (?:currently |now |still |actually )?work(?:ed)? as|\bi(?:'m| am|m) (?:currently |now )?(?:working|employed) as|)"
      R"(\bmy (?:job|occupation|profession|role|position|job title) is(?: as)?|\boccupation:|\bi work in|)"
      R"(\bi(?:'m| am|m) (?:currently |now )?(?:working|employed) in|\bwork(?:ing)? (?:at|for) [^,.;!?]{1,40}? as|)"
      R"(\b(?:and |, *|^)work(?:ing)? as|\bi(?:'ve| have) been(?: working as)?(?= an? )|\bjob:|\bwork:) +)");
  if (ContainsAny(c.lower, {"work", "employ", "my ", "occupation", "been", "job:"})) {
    ForEach(kStrong, c.lower,
            [&](const boost::smatch& m) { add(JobPhrase(c, m.position() + m.length(), false)); });
  }
  const bool i_am = ContainsAny(c.lower, {"i'm ", "i am ", "im "});
  static const boost::regex kIam =
      Re(R"(\bi(?:'m| am|m) (?:currently |now |actually |also |still )?(?:a|an) +)");
  if (i_am) {
    ForEach(kIam, c.lower,
            [&](const boost::smatch& m) { add(JobPhrase(c, m.position() + m.length(), true)); });
  }
  static const boost::regex kStatus = Re(
      R"(\bi(?:'m| am|m) (?:currently |now )?(retired|unemployed|self-employed|between jobs|a student|a freelancer)\b)");
  if (i_am) {
    ForEach(kStatus, c.lower, [&](const boost::smatch& m) {
      std::string s = m.str(1);
      if (s.starts_with("a ")) s = s.substr(2);
      add(s);
    });
  }
  static const boost::regex kTeach = Re(R"(\bi teach +)");
  if (Contains(c.lower, "i teach")) {
    ForEach(kTeach, c.lower, [&](const boost::smatch& m) {
      auto p = JobPhrase(c, m.position() + m.length(), false);
      if (p) add(*p + " teacher");
    });
  }
  static const boost::regex kLiving = Re(R"(\bi do (.{2,40}?) for a living)");
  if (Contains(c.lower, "for a living")) {
    ForEach(kLiving, c.lower,
            [&](const boost::smatch& m) { add(Trim(c.text.substr(m.position(1), m.length(1)))); });
  }
  // A job that is a whole item of a compact introduction: "Sam here, 29,
  // barista from Austin", "I'm Ruth, 67, a librarian in Halifax", "Felix,
  // 34yo dentist in Vienna", "a 33-year-old software engineer from …". Only
  // words of the job list count (a guess from suffixes would take
  // "Italian" or "Christian"), and only an item of that shape: nothing but
  // an article, an age, up to two more words and the job, then a place.
  for (std::string_view seg :
       SegmentsOf(c).size() >= 2 ? SegmentsOf(c) : std::vector<std::string_view>{}) {
    if (seg.size() > 80) continue;
    std::vector<std::string> words = SplitWords(Lower(seg));
    size_t i = 0;
    auto skip = [&](std::initializer_list<std::string_view> list) {
      while (i < words.size() && InList(TrimPunct(words[i]), list)) ++i;
    };
    skip({"and", "also", "i'm", "im", "i", "am", "currently", "now", "a", "an"});
    // An age: "34yo", "34", "34-year-old", "34 years old", "aged 34".
    if (i < words.size() && (words[i] == "aged" || words[i] == "age")) ++i;
    if (i < words.size() && HasDigit(words[i])) {
      ++i;
      skip({"years", "year", "old", "yo", "y/o"});
    }
    skip({"a", "an", "and"});
    std::vector<std::string> job;
    for (; i < words.size() && job.size() < 4; ++i) {
      const std::string w = TrimPunct(words[i]);
      if (InList(w, {"in",   "from",     "at",      "based",     "living", "who", "for",
                     "with", "and",      "but",     "here",      "since",  "on",  "of",
                     "to",   "residing", "working", "currently", "now",    "by"}))
        break;
      job.push_back(w);
    }
    if (job.empty() || job.size() > 3) continue;
    bool ok = InList(job.back(), kJobWords) || job.back().ends_with("ologist");
    for (const auto& w : job)
      if (InList(w, kNotJobs) || HasDigit(w) ||
          InList(w, {"is",  "was",  "are",  "my",   "his",  "her",  "their",   "our",    "your",
                     "she", "he",   "they", "be",   "been", "has",  "have",    "had",    "not",
                     "no",  "want", "like", "love", "need", "hate", "married", "dating", "with"}))
        ok = false;
    if (!ok) continue;
    // Keep the words as written.
    std::string out_job;
    for (const auto& w : job) out_job += (out_job.empty() ? "" : " ") + w;
    add(out_job);
  }
  if (!c.hangul) return out;  // the Korean rules below all need Hangul
  // Korean: 직업은 교사입니다, 개발자로 일해요, 마케팅 일을 해요, 저는 개발자예요.
  static const boost::regex kKoJob = Re(R"(직업(?:은|이| *:) *([^,.!?/]+))");
  if (Contains(c.lower, "직업")) {
    ForEach(kKoJob, c.lower, [&](const boost::smatch& m) {
      std::string s = StripKoreanEnding(Trim(m.str(1)));
      if (!s.empty() && CountWords(s) <= 4) add(s);
    });
  }
  static const boost::regex kKoWork =
      Re(R"((?:^|[ ,])([^ ,.!?]+?)(?:으로|로) *(?:일하|일해|근무|재직|활동))");
  if (Contains(c.lower, "로")) {
    ForEach(kKoWork, c.lower, [&](const boost::smatch& m) {
      if (FindCuratedCity(m.str(1)) == nullptr) add(m.str(1));
    });
  }
  static const boost::regex kKoDo = Re(R"((?:^|[ ,])([^ ,.!?]+) +일을 *(?:하고|해요|합니다|해))");
  if (Contains(c.lower, "일을")) {
    ForEach(kKoDo, c.lower, [&](const boost::smatch& m) { add(m.str(1)); });
  }
  static const boost::regex kKoIam = Re(
      R"((?:^|[ ,])([^ ,.!?]+?)(?:입니다|이에요|예요|이예요|이고요|이고|이야|야|인데요|인데|이라서)(?:[ ,.!?]|$))");
  // Someone else's job ("언니가 의사예요") is not the user's.
  auto someone_else = [&](size_t at) {
    size_t end = at;
    while (end > 0 && c.lower[end - 1] == ' ') --end;
    size_t begin = end;
    while (begin > 0 && c.lower[begin - 1] != ' ' && c.lower[begin - 1] != ',') --begin;
    const std::string prev = c.lower.substr(begin, end - begin);
    for (std::string_view who :
         {"언니",   "오빠",   "형",       "누나",     "동생", "엄마",   "아빠",
          "남편",   "아내",   "친구",     "딸",       "아들", "어머니", "아버지",
          "부모님", "와이프", "남자친구", "여자친구", "남친", "여친"})
      if (prev.starts_with(who)) return true;
    return false;
  };
  if (ContainsAny(c.lower, {"입니다", "에요", "예요", "이고", "야", "인데", "이라서"})) {
    ForEach(kKoIam, c.lower, [&](const boost::smatch& m) {
      if (someone_else(m.position(1) + m.length(1) + 1)) return;  // "언니가" itself
      if (IsKoreanOccupation(m.str(1)) && !someone_else(m.position(1))) add(m.str(1));
    });
  }
  // A job just before the user's name ("간호사 김소희입니다", "프리랜서 번역가
  // 정유진입니다", "서른다섯 살 회사원 이동욱입니다").
  if (ContainsAny(c.lower, {"입니다", "에요", "예요", "이고"})) {
    const std::vector<std::string> words = SplitWords(c.lower);
    for (size_t i = 1; i < words.size(); ++i) {
      const std::string w = TrimPunct(words[i]);
      if (!(w.ends_with("입니다") || w.ends_with("예요") || w.ends_with("이에요") ||
            w.ends_with("이고요") || w.ends_with("이고")))
        continue;
      const std::string job = TrimPunct(words[i - 1]);
      if (!IsKoreanOccupation(job) || IsKoreanOccupation(StripKoreanEnding(w))) continue;
      if (i >= 2 && InList(TrimPunct(words[i - 2]), {"프리랜서", "전업", "전직", "현직", "신입"}))
        add(TrimPunct(words[i - 2]) + " " + job);
      else
        add(job);
    }
  }
  return out;
}

std::vector<Candidate> BareOccupation(std::string_view clause) {
  std::string s = TrimPunct(clause);
  if (HasHangul(s)) s = StripKoreanEnding(s);
  for (std::string_view prefix : {"i'm a ", "i'm an ", "i am a ", "i am an ", "im a ", "a ", "an ",
                                  "i work as a ", "i work as an ", "i work as ", "i'm ", "as a "})
    if (Lower(s).starts_with(prefix)) s = s.substr(prefix.size());
  const std::string lower = Lower(s);
  for (std::string_view stop : {" at the moment", " right now", " currently", " these days", " at ",
                                " in ", " for ", " but ", " and i"}) {
    const size_t at = lower.find(stop);
    if (at != std::string::npos && at < s.size()) s.resize(std::min(s.size(), at));
  }
  s = TrimPunct(s);
  if (s.empty() || CountWords(s) > 6 || Contains(s, "?")) return {};
  return {{json::value(s), s}};
}

// ---------------------------------------------------------------- interests

std::string CleanItem(std::string item) {
  item = TrimPunct(item);
  for (std::string_view prefix :
       {"and ", "or ", "i guess ", "i think ", "maybe ", "probably ", "um ", "well ", "mostly ",
        "mainly ", "also ", "to ", "doing ", "really ", "especially ", "like "})
    if (Lower(item).starts_with(prefix)) item = item.substr(prefix.size());
  for (std::string_view suffix : {" a lot", " very much", " too", " as well", " so much"})
    if (Lower(item).ends_with(suffix)) item.resize(item.size() - suffix.size());
  return TrimPunct(item);
}

// "hiking, jazz and cooking" → {hiking, jazz, cooking}.
std::vector<std::string> SplitItems(std::string_view phrase) {
  std::string s(phrase);
  static const boost::regex kSep = Re(R"( *(?:,|;| and | & | or |/| as well as | plus ) *)");
  std::vector<std::string> out;
  size_t start = 0;
  // Separators are found on a lower-case copy (" AND "); byte positions agree.
  std::vector<std::pair<size_t, size_t>> cuts;
  const std::string lower = Lower(s);
  for (auto it = boost::sregex_iterator(lower.begin(), lower.end(), kSep);
       it != boost::sregex_iterator(); ++it)
    cuts.emplace_back(it->position(), it->length());
  for (const auto& [pos, len] : cuts) {
    out.push_back(s.substr(start, pos - start));
    start = pos + len;
  }
  out.push_back(s.substr(start));
  std::vector<std::string> items;
  for (auto& item : out) {
    std::string cleaned = CleanItem(item);
    const std::string l = Lower(cleaned);
    if (cleaned.empty() || InList(l, {"it", "that", "this", "you", "them", "him", "her", "things",
                                      "stuff", "etc", "more", "others", "other things"}))
      continue;
    if (CountWords(cleaned) > 5 || l.starts_with("my ") || l.starts_with("your ")) continue;
    items.push_back(cleaned);
  }
  return items;
}

// Korean list: "등산과 요리를" → {등산, 요리}; "재즈 음악을" → {재즈 음악}.
std::vector<std::string> SplitKoreanItems(std::string_view phrase) {
  std::vector<std::string> items;
  std::string current;
  for (std::string w : SplitWords(phrase)) {
    const bool comma = w.ends_with(",");
    w = TrimPunct(w);
    if (w.empty() || InList(w, {"저는", "전", "나는", "난", "제가", "요즘", "정말", "진짜", "특히",
                                "그리고", "또", "주로", "제", "취미는"}))
      continue;
    std::string stripped = w;
    if (stripped.ends_with(",")) stripped.pop_back();
    bool conj = false;
    stripped = StripParticle(StripKoreanEnding(stripped), &conj);
    current += (current.empty() ? "" : " ") + stripped;
    if (conj || comma) {
      items.push_back(current);
      current.clear();
    }
  }
  if (!current.empty()) items.push_back(current);
  std::vector<std::string> out;
  for (auto& item : items) {
    for (const auto& part : SplitItems(item)) out.push_back(part);
  }
  return out;
}

bool Negated(const std::string& lower, size_t pos) {
  const size_t from = pos > 14 ? pos - 14 : 0;
  const std::string before = lower.substr(from, pos - from);
  return Contains(before, "don't") || Contains(before, "do not") || Contains(before, "never") ||
         Contains(before, "didn't") || Contains(before, "not ") || Contains(before, "dont") ||
         Contains(before, "no longer");
}

std::vector<std::string> InterestItems(const Ctx& c) {
  std::vector<std::string> items;
  static const boost::regex kEn = Re(
      R"((?:\bi (?:really |also |just |only |absolutely |especially |do |very much |totally |still )*(?:like|love|enjoy|adore)|)"
      R"(\bi(?:'m| am|m) (?:really |also |very |quite |totally )*(?:into|interested in|passionate about|a (?:big |huge )?fan of|fond of|keen on)|)"
      R"(\bmy (?:hobbies|hobby|interests|interest|passions?) (?:is|are|include)|\bhobbies:|\binterests:|)"
      R"(\bin my (?:free|spare) time,? i(?: like to| love to| enjoy)?) +)");
  if (ContainsAny(c.lower, {"like", "love", "enjoy", "adore", "into", "interest", "passion",
                            "fan of", "fond of", "keen on", "hobb", "free time", "spare time"})) {
    ForEach(kEn, c.lower, [&](const boost::smatch& m) {
      if (Negated(c.lower, m.position())) return;
      const std::string phrase =
          Clause(c, m.position() + m.length(), false,
                 {" and i ", " and i'm ", " and my ", " but ", " because ", " so ", " when ",
                  " and im ", " which ", " since ", " i like", " i love", " i enjoy", " i'm "});
      // "I like to think that…" / "I'd like to" are not interests; "I like to cook" is.
      if (Lower(phrase).starts_with("to be ") || Lower(phrase).starts_with("that ")) return;
      for (auto& item : SplitItems(phrase)) items.push_back(item);
    });
  }
  // Korean: 등산과 요리를 좋아해요 / 취미는 독서예요.
  static const boost::regex kKoLike = Re(
      R"(([^.!?]*?) *(?:을|를)? *(?:좋아해|좋아합|좋아하|즐겨|즐기|즐깁|관심이 있|관심 있|관심있))");
  if (c.hangul &&
      ContainsAny(c.lower, {"좋아하", "좋아해", "좋아합", "즐겨", "즐기", "즐깁", "관심"})) {
    ForEach(kKoLike, c.lower, [&](const boost::smatch& m) {
      std::string phrase = m.str(1);
      if (Contains(phrase, "안 ") || Contains(phrase, "싫")) return;
      for (auto& item : SplitKoreanItems(phrase)) items.push_back(item);
    });
  }
  static const boost::regex kKoHobby = Re(R"((?:취미는|취미가|관심사는) *([^.!?]+))");
  if (ContainsAny(c.lower, {"취미", "관심사는"})) {
    ForEach(kKoHobby, c.lower, [&](const boost::smatch& m) {
      std::string phrase = StripKoreanEnding(Trim(m.str(1)));
      for (std::string_view tail : {"이에요", "예요", "입니다", "이고", "에요"})
        if (phrase.ends_with(tail)) phrase.resize(phrase.size() - tail.size());
      for (auto& item : SplitKoreanItems(phrase)) items.push_back(item);
    });
  }
  return items;
}

// The full new list: existing items first (unless "only"/"just"), then new.
std::optional<Candidate> MergeInterests(const Ctx& c, const FieldSpec& f,
                                        const std::vector<std::string>& items) {
  if (items.empty()) return std::nullopt;
  static const boost::regex kOnly = Re(R"(\b(?:only|just)\b|만 좋아)");
  json::array list;
  const json::value* have = Find(c.profile, f.name);
  if (have && have->is_array() && !boost::regex_search(c.lower, kOnly)) {
    for (const auto& v : have->get_array())
      if (v.is_string()) list.push_back(v);
  }
  std::string raw;
  for (const auto& item : items) {
    list.emplace_back(item);
    raw += (raw.empty() ? "" : ", ") + item;
  }
  return Candidate{json::value(std::move(list)), raw};
}

// ---------------------------------------------------------------- goals

std::vector<Candidate> GoalCandidates(const Ctx& c) {
  std::vector<std::string> goals;
  static const boost::regex kEn = Re(
      R"((?:\bmy (?:main |big |biggest |current |long-term )?(?:goal|goals|aim|dream|ambition|plan) (?:is|are|would be|right now is)(?: to)?|)"
      R"(\bi (?:really |also |still )?(?:want|hope|plan|aim|intend|wish|would like|'d like|would love|'d love) to|)"
      R"(\bi(?:'m| am|m) (?:planning|hoping|trying|aiming|working) (?:to|on|towards?)|)"
      R"(\bi(?:'m| am|m) saving (?:up )?(?:to|for)|\bgoal:) +)");
  static const boost::regex kNotGoal = Re(
      R"(^(?:change|update|correct|fix|delete|remove|forget|clear|erase|know|ask|say|tell|talk|be called|)"
      R"(be contacted|be reached|stop|go\b|add|edit|see|check|skip|pass|hear|get contacted|receive))");
  if (ContainsAny(c.lower, {"goal", "aim", "dream", "ambition", "plan", "want", "hop", "intend",
                            "wish", "like", "love", "trying", "working", "saving"})) {
    ForEach(kEn, c.lower, [&](const boost::smatch& m) {
      const size_t pos = m.position() + m.length();
      const std::string phrase = TrimPunct(Clause(c, pos, false, {" but "}));
      const std::string lp = Lower(phrase);
      if (phrase.empty() || boost::regex_search(lp, kNotGoal) || Contains(lp, "contact") ||
          Contains(lp, "email me") || Contains(lp, "call me") || Contains(lp, "text me"))
        return;
      goals.push_back(phrase);
    });
  }
  // Korean: 목표는 마라톤 완주예요 / 스페인어를 배우고 싶어요.
  static const boost::regex kKoGoal = Re(R"((?:목표는|목표가|꿈은) *([^.!?]+))");
  if (ContainsAny(c.lower, {"목표", "꿈은"})) {
    ForEach(kKoGoal, c.lower, [&](const boost::smatch& m) {
      std::string g = StripKoreanEnding(Trim(m.str(1)));
      if (!g.empty()) goals.push_back(g);
    });
  }
  static const boost::regex kKoWant =
      Re(R"(([^.!?]*?(?:고|기를|기) *(?:싶어|싶습니다|싶다|희망)[^.!?]*))");
  static const boost::regex kKoNot = Re("(바꾸|수정|삭제|지우|변경|연락|잊어)");
  if (ContainsAny(c.lower, {"싶", "희망"})) {
    ForEach(kKoWant, c.lower, [&](const boost::smatch& m) {
      std::string g = TrimPunct(m.str(1));
      for (std::string_view p : {"저는 ", "전 ", "나는 ", "제 "})
        if (g.starts_with(p)) g = Trim(g.substr(p.size()));
      if (!g.empty() && !boost::regex_search(g, kKoNot)) goals.push_back(g);
    });
  }
  if (goals.empty()) return {};
  std::string joined;
  for (const auto& g : goals) joined += (joined.empty() ? "" : "; ") + g;
  return {{json::value(joined), joined}};
}

// ---------------------------------------------------------------- enum, boolean

std::string Words(std::string_view field_name) {
  std::string s = Lower(field_name);
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

bool WordAt(const std::string& lower, size_t pos, size_t len) {
  const bool ascii = static_cast<unsigned char>(lower[pos]) < 0x80;
  if (!ascii) return true;  // Korean: particles follow without a space
  const bool left = pos == 0 || !IsWordByte(static_cast<unsigned char>(lower[pos - 1]));
  const bool right =
      pos + len >= lower.size() || !IsWordByte(static_cast<unsigned char>(lower[pos + len]));
  return left && right;
}

std::vector<Candidate> EnumCandidates(const Ctx& c, const FieldSpec& f) {
  const bool asked = c.asked == f.name;
  // Only a message about this field may set it: "my email is x@y.z" must not
  // set contact_preference = email.
  static const boost::regex kContactCue =
      Re(R"(\b(?:contact\w*|reach|prefer|preferred|preference|rather|best way|get in touch|)"
         R"((?:email|e-mail|text|call|phone|message|mail|ring) me)\b|연락|선호)");
  bool cue = asked || Contains(c.lower, Words(f.name));
  if (!cue && Contains(Lower(f.name), "contact") &&
      ContainsAny(c.lower, {"contact", "reach", "prefer", "rather", "best way", "get in touch",
                            " me", "연락", "선호"}))
    cue = boost::regex_search(c.lower, kContactCue);
  for (const auto& h : f.hints)
    if (!h.empty() && Contains(c.lower, Lower(h))) cue = true;
  if (!cue) return {};
  // Phrases: the values and the synonyms (lower-case), longest first at a position.
  std::vector<std::pair<std::string, std::string>> phrases;  // phrase → canonical
  for (const auto& v : f.enum_values) phrases.emplace_back(Lower(v), v);
  for (const auto& [syn, v] : f.synonyms) phrases.emplace_back(syn, v);
  std::sort(phrases.begin(), phrases.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  size_t best_pos = std::string::npos;
  std::string best, best_raw;
  for (const auto& [phrase, value] : phrases) {
    for (size_t at = c.lower.find(phrase); at != std::string::npos;
         at = c.lower.find(phrase, at + 1)) {
      if (!WordAt(c.lower, at, phrase.size())) continue;
      // "my email" / "your phone" talk about another field.
      if (at >= 3 && c.lower.compare(at - 3, 3, "my ") == 0) continue;
      if (at >= 5 && c.lower.compare(at - 5, 5, "your ") == 0) continue;
      // "call me Al" is a name.
      if (c.lower.compare(at, phrase.size() + 4, phrase + " me ") == 0) {
        const size_t next = at + phrase.size() + 4;
        if (next < c.text.size() && IsUpperStart(c.text.substr(next))) continue;
      }
      if (at < best_pos) {
        best_pos = at;
        best = value;
        best_raw = c.text.substr(at, phrase.size());
      }
      break;
    }
  }
  if (best_pos == std::string::npos) return {};
  return {{json::value(best), best_raw}};
}

std::vector<Candidate> BoolCandidates(const Ctx& c, const FieldSpec& f) {
  static const boost::regex kYes = Re(
      R"(^(?:yes|yeah|yep|yup|sure|of course|correct|true|definitely|absolutely|i do|i am|right|ok|okay)\b|^(?:네|예|응|맞아|그래|물론))");
  static const boost::regex kNo = Re(
      R"(^(?:no|nope|nah|not really|false|never|i don't|i do not|i'm not|i am not)\b|^(?:아니|아뇨|아님|없어))");
  std::vector<Candidate> out;
  const std::string t = TrimPunct(c.lower);
  if (c.asked == f.name) {
    if (boost::regex_search(t, kNo))
      out.push_back({json::value(false), t});
    else if (boost::regex_search(t, kYes))
      out.push_back({json::value(true), t});
  }
  const std::string words = Words(f.name);
  if (!MayMention(c.lower, words)) return out;
  const boost::regex& named = CachedRe(words + R"( *(?:is|:|=) *(yes|no|true|false))");
  boost::smatch m;
  if (boost::regex_search(c.lower, m, named)) {
    const std::string v = m.str(1);
    out.push_back({json::value(v == "yes" || v == "true"), v});
  }
  return out;
}

// "my height is 180", "score: 7.5".
std::vector<Candidate> NamedNumber(const Ctx& c, const FieldSpec& f) {
  std::vector<Candidate> out;
  const std::string words = Words(f.name);
  if (!MayMention(c.lower, words) || c.digits == 0) return out;
  const boost::regex& re = CachedRe(words + R"( *(?:is|:|=|of)? *(-?\d+(?:\.\d+)?))");
  ForEach(re, c.lower, [&](const boost::smatch& m) {
    const std::string d = m.str(1);
    if (d.find('.') == std::string::npos && f.type == FieldType::kInteger)
      out.push_back(IntCandidate(std::stoll(d), d));
    else
      out.push_back({json::value(std::stod(d)), d});
  });
  return out;
}

// "my favourite colour is blue" for a field favourite_colour.
std::vector<Candidate> NamedString(const Ctx& c, const FieldSpec& f) {
  std::vector<Candidate> out;
  const std::string words = Words(f.name);
  if (!MayMention(c.lower, words)) return out;
  const boost::regex& re = CachedRe(words + R"( *(?:is|are|:|=) +)");
  ForEach(re, c.lower, [&](const boost::smatch& m) {
    const std::string s = TrimPunct(Clause(c, m.position() + m.length(), false, {" and i "}));
    if (!s.empty()) out.push_back({json::value(s), s});
  });
  return out;
}

// ---------------------------------------------------------------- clearing

// English and Korean words that name a field of the default schema.
std::vector<std::string> FieldAliases(const FieldSpec& f) {
  std::vector<std::string> out = {Words(f.name), Lower(f.name)};
  static const std::map<std::string, std::vector<std::string>> kAliases = {
      {"name", {"name", "이름"}},
      {"age", {"age", "나이"}},
      {"email", {"email address", "email", "e-mail", "mail", "이메일", "메일"}},
      {"phone",
       {"phone number", "phone", "number", "mobile", "cell", "전화번호", "전화", "번호", "휴대폰"}},
      {"city", {"city", "location", "hometown", "도시", "사는 곳", "지역"}},
      {"occupation", {"occupation", "job", "work", "profession", "직업"}},
      {"interests", {"interests", "hobbies", "hobby", "interest", "취미", "관심사"}},
      {"goals", {"goals", "goal", "목표"}},
      {"contact_preference",
       {"contact preference", "contact method", "preference", "연락 방법", "연락방법"}},
  };
  if (auto it = kAliases.find(Lower(f.name)); it != kAliases.end())
    out.insert(out.end(), it->second.begin(), it->second.end());
  std::sort(out.begin(), out.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  return out;
}

std::set<std::string> ClearedFields(const Ctx& c) {
  std::set<std::string> out;
  static const boost::regex kEn = Re(
      R"(\b(?:forget|delete|remove|clear|erase|drop|wipe|get rid of) +(?:about +)?(?:my|the|your) +([a-z][a-z -]*))");
  static const boost::regex kKo =
      Re(R"(([^ ,.!?]+(?: [^ ,.!?]+)?) *(?:을|를|은|는)? *(?:지워|삭제|잊어|지우|없애))");
  auto match_fields = [&](const std::string& words) {
    for (const auto& f : c.schema.fields()) {
      for (const auto& alias : FieldAliases(f)) {
        if (words.starts_with(alias) || (HasHangul(alias) && Contains(words, alias))) {
          out.insert(f.name);
          return;
        }
      }
    }
  };
  if (ContainsAny(c.lower,
                  {"forget", "delete", "remove", "clear", "erase", "drop", "wipe", "get rid of"}))
    ForEach(kEn, c.lower, [&](const boost::smatch& m) { match_fields(m.str(1)); });
  if (ContainsAny(c.lower, {"지워", "삭제", "잊어", "지우", "없애"}))
    ForEach(kKo, c.lower, [&](const boost::smatch& m) { match_fields(m.str(1)); });
  return out;
}

// ---------------------------------------------------------------- driver

std::vector<Candidate> PatternCandidates(const Ctx& c, const FieldSpec& f,
                                         const std::string& first_of_type) {
  const bool asked = c.asked == f.name;
  switch (Classify(f)) {
    case Kind::kName:
      return NameCandidates(c);
    case Kind::kAge:
      return AgeCandidates(c);
    case Kind::kCity:
      return CityCandidates(c);
    case Kind::kOccupation:
      return OccupationCandidates(c);
    case Kind::kInterests: {
      auto m = MergeInterests(c, f, InterestItems(c));
      if (m) return {*m};
      return {};
    }
    case Kind::kGoals:
      return GoalCandidates(c);
    case Kind::kGeneric:
      break;
  }
  // Typed extraction, found anywhere: only for the asked field of the type or,
  // failing that, the first field of the type in schema order.
  const bool owns_type = asked || first_of_type == f.name;
  switch (f.type) {
    case FieldType::kEmail:
      return owns_type ? EmailCandidates(c, asked) : std::vector<Candidate>{};
    case FieldType::kPhone:
      return owns_type ? PhoneCandidates(c, asked) : std::vector<Candidate>{};
    case FieldType::kDate:
      return owns_type ? DateCandidates(c) : std::vector<Candidate>{};
    case FieldType::kEnum:
      return EnumCandidates(c, f);
    case FieldType::kBoolean:
      return BoolCandidates(c, f);
    case FieldType::kInteger:
    case FieldType::kNumber:
      return NamedNumber(c, f);
    case FieldType::kString:
    case FieldType::kText:
      return NamedString(c, f);
    case FieldType::kStringList: {
      std::vector<std::string> items;
      for (const auto& cand : NamedString(c, f))
        for (auto& item : SplitItems(cand.raw)) items.push_back(item);
      auto m = MergeInterests(c, f, items);
      if (m) return {*m};
      return {};
    }
  }
  return {};
}

// A bare answer to the asked field: the message (or its first clause) is the value.
std::vector<Candidate> BareCandidates(const Ctx& c, const FieldSpec& f, std::string_view clause) {
  if (Contains(clause, "?")) return {};
  switch (Classify(f)) {
    case Kind::kName: {
      auto n = BareName(clause);
      if (n) return {{json::value(*n), *n}};
      return {};
    }
    case Kind::kAge:
      return BareNumber(c, true);
    case Kind::kCity:
      return BareCity(c, clause);
    case Kind::kOccupation:
      return BareOccupation(clause);
    case Kind::kInterests: {
      auto items = HasHangul(clause) ? SplitKoreanItems(clause) : SplitItems(clause);
      auto m = MergeInterests(c, f, items);
      if (m) return {*m};
      return {};
    }
    case Kind::kGoals: {
      std::string s = TrimPunct(clause);
      if (Lower(s).starts_with("to ")) s = s.substr(3);
      if (s.empty()) return {};
      return {{json::value(s), s}};
    }
    case Kind::kGeneric:
      break;
  }
  switch (f.type) {
    case FieldType::kInteger:
      return BareNumber(c, true);
    case FieldType::kNumber:
      return BareNumber(c, false);
    case FieldType::kEmail:
    case FieldType::kPhone:
    case FieldType::kDate:
    case FieldType::kEnum:
    case FieldType::kBoolean: {
      // Whatever the user wrote, so that the reply can explain the rejection.
      const std::string s = TrimPunct(clause);
      if (s.empty() || CountWords(s) > 4) return {};
      return {{json::value(s), s}};
    }
    case FieldType::kString:
    case FieldType::kText: {
      std::string s = TrimPunct(clause);
      if (HasHangul(s)) s = StripKoreanEnding(s);
      if (s.empty()) return {};
      return {{json::value(s), s}};
    }
    case FieldType::kStringList: {
      auto items = HasHangul(clause) ? SplitKoreanItems(clause) : SplitItems(clause);
      auto m = MergeInterests(c, f, items);
      if (m) return {*m};
      return {};
    }
  }
  return {};
}

// The first clause of the text: up to , . ; ! or " and ".
std::string FirstClause(std::string_view text) {
  size_t end = text.size();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == ',' || text[i] == ';' || text[i] == '!' || text[i] == '\n' ||
        (text[i] == '.' && (i + 1 == text.size() || text[i + 1] == ' '))) {
      end = i;
      break;
    }
  }
  const std::string lower = Lower(text.substr(0, end));
  const size_t and_at = lower.find(" and ");
  if (and_at != std::string::npos) end = std::min(end, and_at);
  return Trim(text.substr(0, end));
}

}  // namespace

std::optional<int> ParseEnglishNumber(std::string_view words) {
  return ParseWordNumber(NumberWords(TrimPunct(words)));
}

std::optional<int> ParseKoreanNativeNumber(std::string_view word) {
  static constexpr std::pair<std::string_view, int> kTens[] = {
      {"열", 10}, {"스물", 20}, {"스무", 20}, {"서른", 30}, {"마흔", 40},
      {"쉰", 50}, {"예순", 60}, {"일흔", 70}, {"여든", 80}, {"아흔", 90}};
  static constexpr std::pair<std::string_view, int> kUnits[] = {
      {"하나", 1}, {"한", 1},   {"둘", 2},   {"두", 2},   {"셋", 3},   {"세", 3},  {"넷", 4},
      {"네", 4},   {"다섯", 5}, {"여섯", 6}, {"일곱", 7}, {"여덟", 8}, {"아홉", 9}};
  std::string_view w = word;
  while (!w.empty() && w.back() == ' ') w.remove_suffix(1);
  int value = 0;
  for (const auto& [t, v] : kTens) {
    if (w.starts_with(t)) {
      value = v;
      w.remove_prefix(t.size());
      break;
    }
  }
  if (w.empty()) return value > 0 ? std::optional<int>(value) : std::nullopt;
  for (const auto& [u, v] : kUnits)
    if (w == u) return value + v;
  return std::nullopt;
}

std::string DetectLanguage(std::string_view text, std::string_view hint) {
  if (HasHangul(text)) return "ko";
  const bool ascii_letter = std::any_of(text.begin(), text.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
  });
  if (!ascii_letter) return hint.empty() ? "en" : std::string(hint);
  if (hint == "ko" && CountWords(text) == 1) return "ko";
  return "en";
}

Extraction ExtractDetailed(const model::Schema& schema, const json::object& profile,
                           std::string_view text, std::string_view asked_field,
                           std::string_view lang) {
  // The rules are regular expressions that can be quadratic in the input, so
  // only the start of a very long message is read (at a UTF-8 boundary).
  if (text.size() > kMaxTextBytes) {
    size_t cut = kMaxTextBytes;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text = text.substr(0, cut);
  }
  Ctx c{schema, profile, text, Lower(text), asked_field, lang};
  Extraction out;
  if (Trim(text).empty()) return out;

  // The first field of each typed kind owns values of that type found anywhere.
  std::map<FieldType, std::string> first_of_type;
  for (const auto& f : schema.fields()) first_of_type.emplace(f.type, f.name);

  const std::set<std::string> cleared = ClearedFields(c);
  std::map<std::string, json::value> found;  // field → normalised value
  std::set<std::string> rejected_fields;
  auto consider = [&](const FieldSpec& f, const std::vector<Candidate>& cands) -> bool {
    const Candidate* first_bad = nullptr;
    std::string reason;
    for (const auto& cand : cands) {
      auto v = schema.Validate(f.name, cand.value);
      if (v.ok()) {
        found[f.name] = *v;
        return true;
      }
      if (!first_bad) {
        first_bad = &cand;
        reason = std::string(v.status().message());
      }
    }
    if (first_bad) {
      std::string raw = first_bad->raw;
      if (raw.size() > 40) {
        size_t cut = 40;
        while (cut > 0 && (static_cast<unsigned char>(raw[cut]) & 0xC0) == 0x80) --cut;
        raw = raw.substr(0, cut) + "…";
      }
      out.rejected.push_back({f.name, std::move(raw), reason});
      rejected_fields.insert(f.name);
    }
    return false;
  };

  for (const auto& f : schema.fields()) {
    if (cleared.count(f.name)) continue;
    consider(f, PatternCandidates(c, f, first_of_type[f.type]));
  }

  const FieldSpec* asked = asked_field.empty() ? nullptr : schema.Find(asked_field);
  if (asked && !found.count(asked->name) && !rejected_fields.count(asked->name) &&
      !cleared.count(asked->name)) {
    const bool refusal = IsRefusal(c.lower);
    std::vector<Candidate> bare;
    if (!refusal) {
      // With other facts in the message, only its first clause can be the answer.
      const bool others = !found.empty() || !out.rejected.empty();
      const std::string clause = others ? FirstClause(text) : Trim(text);
      bool clause_free = true;
      if (others) {
        // The first clause must not itself be one of the facts already found.
        Ctx sub{schema, profile, clause, Lower(clause), "", lang};
        for (const auto& f : schema.fields())
          if (f.name != asked->name && !PatternCandidates(sub, f, first_of_type[f.type]).empty())
            clause_free = false;
      }
      if (clause_free && !clause.empty()) bare = BareCandidates(c, *asked, clause);
      if (!bare.empty()) consider(*asked, bare);
    }
    if (refusal && !found.count(asked->name)) out.declined = true;
  }

  for (const auto& f : schema.fields()) {
    if (cleared.count(f.name)) {
      const json::value* have = Find(profile, f.name);
      if (have && !have->is_null()) out.changes.push_back({f.name, json::value(nullptr)});
      continue;
    }
    auto it = found.find(f.name);
    if (it == found.end()) continue;
    const json::value* have = Find(profile, f.name);
    if (have && *have == it->second) {
      out.restated.push_back(f.name);
    } else {
      out.changes.push_back({f.name, it->second});
    }
  }
  // A rejection for a field that also got a valid value is moot.
  std::erase_if(out.rejected, [&](const Rejection& r) { return found.count(r.field) > 0; });
  return out;
}

std::vector<ProposedChange> Extract(const model::Schema& schema, const json::object& profile,
                                    std::string_view text, std::string_view asked_field,
                                    std::string_view lang) {
  return ExtractDetailed(schema, profile, text, asked_field, lang).changes;
}

}  // namespace persona::ai::builtin

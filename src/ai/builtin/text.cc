#include "ai/builtin/text.h"

namespace persona::ai::builtin {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool IsWordByte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80 ||
         c == '\'';
}

bool IsHangulAt(std::string_view s, size_t i) {
  if (i + 3 > s.size()) return false;
  const auto b0 = static_cast<unsigned char>(s[i]);
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  // U+AC00 = EA B0 80, U+D7A3 = ED 9E A3.
  if (b0 == 0xEA) return b1 >= 0xB0;
  if (b0 == 0xEB || b0 == 0xEC) return true;
  if (b0 == 0xED) return b1 <= 0x9E;
  return false;
}

bool HasHangul(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i)
    if (IsHangulAt(s, i)) return true;
  return false;
}

bool HasLetter(std::string_view s) {
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return true;
  }
  return false;
}

std::string Trim(std::string_view s, std::string_view extra) {
  auto strip = [&](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           extra.find(c) != std::string_view::npos;
  };
  size_t b = 0, e = s.size();
  while (b < e && strip(s[b])) ++b;
  while (e > b && strip(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

std::string TrimPunct(std::string_view s) { return Trim(s, ".,!?;:\"'()~"); }

std::vector<std::string> SplitWords(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
    size_t j = i;
    while (j < s.size() && !(s[j] == ' ' || s[j] == '\t' || s[j] == '\n' || s[j] == '\r')) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

int CountWords(std::string_view s) { return static_cast<int>(SplitWords(s).size()); }

std::string TitleCaseIfLower(std::string_view s) {
  std::string out;
  for (const std::string& w : SplitWords(s)) {
    std::string word = w;
    bool all_lower = true;
    for (char c : word)
      if (!((c >= 'a' && c <= 'z') || c == '-' || c == '\'' || c == '.')) all_lower = false;
    if (all_lower && !word.empty() && word[0] >= 'a' && word[0] <= 'z')
      word[0] = static_cast<char>(word[0] - 'a' + 'A');
    if (!out.empty()) out.push_back(' ');
    out += word;
  }
  return out;
}

}  // namespace persona::ai::builtin

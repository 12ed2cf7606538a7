// Small UTF-8-aware text helpers shared by the builtin provider's extractor
// and reply composer. Pure functions; ASCII case folding only (Hangul has no
// case).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace persona::ai::builtin {

// ASCII lower-case copy; other bytes unchanged.
std::string Lower(std::string_view s);

// True for bytes that can be part of a word: ASCII letters and digits, the
// apostrophe, and every byte of a multi-byte UTF-8 sequence.
bool IsWordByte(unsigned char c);

// True if a Hangul syllable (U+AC00..U+D7A3) starts at byte `i` of `s`.
bool IsHangulAt(std::string_view s, size_t i);
bool HasHangul(std::string_view s);

// True if `s` contains an ASCII letter or any non-ASCII character.
bool HasLetter(std::string_view s);

// Strips spaces and the given punctuation from both ends.
std::string Trim(std::string_view s, std::string_view extra = "");
// Strips spaces and sentence punctuation (.,!?;:"') from both ends.
std::string TrimPunct(std::string_view s);

// Splits on ASCII whitespace.
std::vector<std::string> SplitWords(std::string_view s);

// Number of whitespace-separated words (a rough token count).
int CountWords(std::string_view s);

// First letter upper-cased for each word that is entirely lower-case ASCII
// ("alice kim" → "Alice Kim"); other words are kept as written.
std::string TitleCaseIfLower(std::string_view s);

}  // namespace persona::ai::builtin

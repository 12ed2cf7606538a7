// base64url (RFC 4648 §5) without padding, as JWTs and persona's ids use it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace persona {

// Encodes `data` in base64url without '=' padding.
std::string Base64UrlEncode(std::string_view data);

// Decodes unpadded base64url strictly: nullopt for any character outside
// [A-Za-z0-9_-], for '=' padding, for an impossible length (4n+1) and for
// non-zero unused bits in the last character (so every byte string has
// exactly one accepted encoding).
std::optional<std::string> Base64UrlDecode(std::string_view text);

}  // namespace persona

// Opaque identifiers: 22 characters of base64url over 128 bits from the
// kernel's CSPRNG.
// Thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace persona {

// Returns a new random id (22 chars, [A-Za-z0-9_-], never starting with '-').
std::string NewId();

// True if `id` is a non-empty URL-safe token of at most 128 characters
// ([A-Za-z0-9_-.~]). Used to validate ids supplied by clients.
bool IsValidId(std::string_view id);

}  // namespace persona

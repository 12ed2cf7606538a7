// AWS Signature Version 4 (header signing), as pure functions: no clock, no I/O.
//
// The caller builds a SigningRequest with the exact bytes it will send, calls SignV4 and adds the
// returned headers (Authorization, X-Amz-Date and, with a session token, X-Amz-Security-Token)
// to the request. Everything that is signed must then go on the wire unchanged:
//   - `path` is the path AS SENT (already percent-encoded). Build it with EncodePathSegment /
//     WirePath; for Bedrock: "/model/" + EncodePathSegment(model_id) + "/converse", which turns
//     "anthropic.claude-3-haiku-20240307-v1:0" into "...-v1%3A0" (and the '/' of an ARN model
//     id into %2F, so it stays one segment).
//   - The canonical URI is that wire path with "." / ".." / empty segments removed and then
//     URI-encoded once more: "%3A" becomes "%253A". This is what AWS does for every service
//     but S3 (S3 is not supported here) and what botocore does (quote(path, safe='/~') of the
//     already-quoted URL path). The published test suite is consistent with this rule: its
//     request lines ("GET /example space/", "GET /ሴ") are the wire paths and are encoded once.
//   - `query` holds unencoded pairs; send WireQuery(query) (the canonical query string, which
//     is also a valid query string) after '?'.
//   - `headers` are all signed. Values are trimmed and inner runs of spaces collapsed for the
//     signature only; send them as given. Repeated names are joined with ',' in order. Host,
//     X-Amz-Date, X-Amz-Security-Token and Authorization in `headers` are ignored: the first
//     three come from `host`, `amz_date` and the credentials, and are signed.
//   - The payload is hashed with SHA-256 (no x-amz-content-sha256 header is added; Bedrock
//     does not need one).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace persona::ai::bedrock {

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // optional (temporary credentials)
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct SigningRequest {
  std::string method;  // "POST"
  std::string host;    // "bedrock-runtime.us-east-1.amazonaws.com" (":port" if non-default)
  std::string path;    // wire path (percent-encoded), see above; "" means "/"
  std::vector<std::pair<std::string, std::string>> query;  // unencoded
  HeaderList headers;                                      // signed, in addition to host/date
  std::string payload;
  std::string region;    // "us-east-1"
  std::string service;   // "bedrock"
  std::string amz_date;  // "20150830T123600Z" (see AmzDate)
};

// The headers to add to the request: Authorization, X-Amz-Date and, when the credentials carry
// a session token, X-Amz-Security-Token (which is signed too).
HeaderList SignV4(const SigningRequest& r, const Credentials& c);

// The steps of SignV4, exposed for tests and for verifiers.
std::string CanonicalRequest(const SigningRequest& r);
std::string StringToSign(const SigningRequest& r, const std::string& canonical_request);
// Hex HMAC-SHA256 of `string_to_sign` under the key derived from the secret, the date of
// `r.amz_date`, `r.region` and `r.service`.
std::string Signature(const SigningRequest& r, const Credentials& c,
                      const std::string& string_to_sign);

// "YYYYMMDDTHHMMSSZ" (UTC) for a Unix time in seconds.
std::string AmzDate(int64_t unix_seconds);

// RFC 3986 percent-encoding as SigV4 defines it: A-Z a-z 0-9 - . _ ~ stay, every other byte
// becomes %XY (upper-case hex); '/' stays only when `keep_slash`.
std::string UriEncode(std::string_view s, bool keep_slash);
// One path segment for the wire ('/' encoded): UriEncode(segment, false).
std::string EncodePathSegment(std::string_view segment);
// A raw (unencoded) path for the wire: each '/'-separated segment encoded once, '/' kept.
// WirePath("/model/a:b/converse") == "/model/a%3Ab/converse".
std::string WirePath(std::string_view raw_path);
// The canonical query string: pairs encoded, sorted by key then value, joined with '&'.
std::string WireQuery(const std::vector<std::pair<std::string, std::string>>& query);
// The canonical URI for a wire path (normalised, then encoded again).
std::string CanonicalUri(std::string_view wire_path);

std::string Sha256Hex(std::string_view data);

}  // namespace persona::ai::bedrock

#include "ai/bedrock/sigv4.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <ctime>
#include <map>

namespace persona::ai::bedrock {
namespace {

constexpr char kAlgorithm[] = "AWS4-HMAC-SHA256";
constexpr char kHex[] = "0123456789abcdef";

std::string Hex(const unsigned char* data, size_t n) {
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[data[i] >> 4]);
    out.push_back(kHex[data[i] & 0xf]);
  }
  return out;
}

// Raw 32-byte HMAC-SHA256.
std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Trims and collapses every run of whitespace into one space (botocore: ' '.join(v.split())).
std::string CanonicalHeaderValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool pending_space = false;
  for (char c : v) {
    if (IsSpace(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(c);
  }
  return out;
}

struct CanonicalHeaders {
  std::string block;         // "name:value\n" lines
  std::string signed_names;  // "a;b;c"
};

CanonicalHeaders BuildHeaders(const SigningRequest& r) {
  std::map<std::string, std::string> merged;  // sorted by lower-case name
  for (const auto& [name, value] : r.headers) {
    std::string key = Lower(name);
    if (key == "host" || key == "x-amz-date" || key == "authorization") continue;
    auto [it, inserted] = merged.emplace(key, CanonicalHeaderValue(value));
    if (!inserted) it->second += "," + CanonicalHeaderValue(value);
  }
  merged["host"] = CanonicalHeaderValue(r.host);
  merged["x-amz-date"] = CanonicalHeaderValue(r.amz_date);
  CanonicalHeaders out;
  for (const auto& [name, value] : merged) {
    out.block += name + ":" + value + "\n";
    if (!out.signed_names.empty()) out.signed_names.push_back(';');
    out.signed_names += name;
  }
  return out;
}

std::string DateStamp(const SigningRequest& r) { return r.amz_date.substr(0, 8); }

std::string Scope(const SigningRequest& r) {
  return DateStamp(r) + "/" + r.region + "/" + r.service + "/aws4_request";
}

}  // namespace

std::string Sha256Hex(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  return Hex(out, len);
}

std::string UriEncode(std::string_view s, bool keep_slash) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~' || (c == '/' && keep_slash)) {
      out.push_back(ch);
    } else {
      constexpr char kUpper[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kUpper[c >> 4]);
      out.push_back(kUpper[c & 0xf]);
    }
  }
  return out;
}

std::string EncodePathSegment(std::string_view segment) { return UriEncode(segment, false); }

std::string WirePath(std::string_view raw_path) {
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t slash = raw_path.find('/', start);
    out += EncodePathSegment(raw_path.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    out.push_back('/');
    start = slash + 1;
  }
  return out;
}

std::string WireQuery(const std::vector<std::pair<std::string, std::string>>& query) {
  std::vector<std::pair<std::string, std::string>> encoded;
  encoded.reserve(query.size());
  for (const auto& [k, v] : query) encoded.emplace_back(UriEncode(k, false), UriEncode(v, false));
  std::sort(encoded.begin(), encoded.end());
  std::string out;
  for (const auto& [k, v] : encoded) {
    if (!out.empty()) out.push_back('&');
    out += k + "=" + v;
  }
  return out;
}

std::string CanonicalUri(std::string_view wire_path) {
  // RFC 3986 remove_dot_segments plus collapsing of empty segments, as botocore does.
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start <= wire_path.size()) {
    size_t slash = wire_path.find('/', start);
    if (slash == std::string_view::npos) slash = wire_path.size();
    std::string_view seg = wire_path.substr(start, slash - start);
    if (seg == "..") {
      if (!segments.empty()) segments.pop_back();
    } else if (!seg.empty() && seg != ".") {
      segments.push_back(seg);
    }
    start = slash + 1;
  }
  std::string normalized = "/";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) normalized.push_back('/');
    normalized += segments[i];
  }
  if (!segments.empty() && !wire_path.empty() && wire_path.back() == '/') {
    normalized.push_back('/');
  }
  return UriEncode(normalized, true);
}

std::string CanonicalRequest(const SigningRequest& r) {
  const CanonicalHeaders headers = BuildHeaders(r);
  std::string out;
  out += r.method + "\n";
  out += CanonicalUri(r.path) + "\n";
  out += WireQuery(r.query) + "\n";
  out += headers.block + "\n";
  out += headers.signed_names + "\n";
  out += Sha256Hex(r.payload);
  return out;
}

std::string StringToSign(const SigningRequest& r, const std::string& canonical_request) {
  return std::string(kAlgorithm) + "\n" + r.amz_date + "\n" + Scope(r) + "\n" +
         Sha256Hex(canonical_request);
}

std::string Signature(const SigningRequest& r, const Credentials& c,
                      const std::string& string_to_sign) {
  std::string key = HmacSha256("AWS4" + c.secret_access_key, DateStamp(r));
  key = HmacSha256(key, r.region);
  key = HmacSha256(key, r.service);
  key = HmacSha256(key, "aws4_request");
  const std::string sig = HmacSha256(key, string_to_sign);
  return Hex(reinterpret_cast<const unsigned char*>(sig.data()), sig.size());
}

HeaderList SignV4(const SigningRequest& request, const Credentials& c) {
  SigningRequest r = request;
  std::erase_if(r.headers, [](const auto& h) { return Lower(h.first) == "x-amz-security-token"; });
  if (!c.session_token.empty()) r.headers.emplace_back("X-Amz-Security-Token", c.session_token);

  const std::string canonical = CanonicalRequest(r);
  const std::string signature = Signature(r, c, StringToSign(r, canonical));
  HeaderList out;
  out.emplace_back("Authorization", std::string(kAlgorithm) + " Credential=" + c.access_key_id +
                                        "/" + Scope(r) + ", SignedHeaders=" +
                                        BuildHeaders(r).signed_names + ", Signature=" + signature);
  out.emplace_back("X-Amz-Date", r.amz_date);
  if (!c.session_token.empty()) out.emplace_back("X-Amz-Security-Token", c.session_token);
  return out;
}

std::string AmzDate(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace persona::ai::bedrock

#include "auth/jwt.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "core/base64.h"
#include "core/ids.h"

namespace persona::auth {
namespace {

constexpr size_t kMaxKeyFileBytes = 1 << 20;
constexpr size_t kMaxKeys = 64;
constexpr size_t kMaxSubjectBytes = 256;
constexpr size_t kMaxSessionsClaim = 1000;
constexpr size_t kMinHs256SecretBytes = 32;  // RFC 7518 §3.2: at least the hash size

enum class KeyType { kRsa, kEc256, kEd25519 };

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

struct Key {
  KeyType type;
  std::string kid;  // "" when the key has none
  std::string alg;  // JWKS "alg": the only algorithm it may verify ("" = by type)
  Pkey pkey;
};

std::string OpensslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

StatusOr<KeyType> Classify(EVP_PKEY* pkey) {
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
      if (EVP_PKEY_get_bits(pkey) < 2048)
        return absl::InvalidArgumentError("RSA keys must have at least 2048 bits");
      return KeyType::kRsa;
    case EVP_PKEY_EC: {
      char group[64] = {};
      size_t len = 0;
      if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &len) != 1 ||
          std::string_view(group, len) != "prime256v1")
        return absl::InvalidArgumentError("EC keys must be on P-256 (ES256)");
      return KeyType::kEc256;
    }
    case EVP_PKEY_ED25519:
      return KeyType::kEd25519;
    default:
      return absl::InvalidArgumentError("unsupported key type (RSA, EC P-256 or Ed25519)");
  }
}

KeyType TypeFor(std::string_view alg) {
  if (alg == "RS256") return KeyType::kRsa;
  if (alg == "ES256") return KeyType::kEc256;
  return KeyType::kEd25519;  // EdDSA
}

Status ParsePem(std::string_view text, std::vector<Key>* keys) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), &BIO_free);
  if (!bio) return absl::InternalError("out of memory");
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) {
      ERR_clear_error();  // the end of the file reads as "no start line"
      break;
    }
    const std::string block(name);
    OPENSSL_free(name);
    OPENSSL_free(header);
    const unsigned char* p = data;
    Pkey pkey;
    if (block == "PUBLIC KEY") {
      pkey.reset(d2i_PUBKEY(nullptr, &p, len));
    } else if (block == "CERTIFICATE") {
      X509* cert = d2i_X509(nullptr, &p, len);
      if (cert != nullptr) {
        pkey.reset(X509_get_pubkey(cert));
        X509_free(cert);
      }
    } else if (block.find("PRIVATE KEY") != std::string::npos) {
      OPENSSL_free(data);
      return absl::InvalidArgumentError(
          "holds a private key; give only public keys (PUBLIC KEY or CERTIFICATE blocks)");
    } else {
      OPENSSL_free(data);
      return absl::InvalidArgumentError("unsupported PEM block '" + block +
                                        "' (PUBLIC KEY or CERTIFICATE)");
    }
    OPENSSL_free(data);
    if (!pkey) return absl::InvalidArgumentError("bad " + block + ": " + OpensslError());
    auto type = Classify(pkey.get());
    if (!type.ok()) return type.status();
    keys->push_back(Key{*type, "", "", std::move(pkey)});
    if (keys->size() > kMaxKeys) return absl::InvalidArgumentError("more than 64 keys");
  }
  return absl::OkStatus();
}

std::optional<std::string> JwkBytes(const json::object& jwk, std::string_view member) {
  auto s = GetString(jwk, member);
  if (!s) return std::nullopt;
  return Base64UrlDecode(*s);
}

StatusOr<Pkey> FromParams(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* out = nullptr;
  const bool ok = params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
                  EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (!ok) return absl::InvalidArgumentError(OpensslError());
  Pkey pkey(out);
  // EVP_PKEY_fromdata does not promise that an EC point is on the curve.
  EVP_PKEY_CTX* check = EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(), nullptr);
  const bool valid = check != nullptr && EVP_PKEY_public_check(check) == 1;
  EVP_PKEY_CTX_free(check);
  if (!valid) return absl::InvalidArgumentError("public key check failed: " + OpensslError());
  return pkey;
}

StatusOr<Key> ParseJwk(const json::object& jwk) {
  if (Find(jwk, "d") != nullptr)
    return absl::InvalidArgumentError("holds a private key (member 'd'); give only public keys");
  auto kty = GetString(jwk, "kty");
  if (!kty) return absl::InvalidArgumentError("key without 'kty'");
  // Keys persona cannot use (encryption keys, other curves and algorithms)
  // are skipped, not fatal: an identity provider's JWKS often holds some.
  if (const json::value* use = Find(jwk, "use"); use && (!use->is_string() || *use != "sig"))
    return absl::UnimplementedError("key with 'use' other than \"sig\"");
  Key key;
  if (const json::value* kid = Find(jwk, "kid")) {
    if (!kid->is_string()) return absl::InvalidArgumentError("'kid' must be a string");
    key.kid = std::string(kid->get_string());
  }
  if (const json::value* alg = Find(jwk, "alg")) {
    if (!alg->is_string()) return absl::InvalidArgumentError("'alg' must be a string");
    key.alg = std::string(alg->get_string());
  }
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      &OSSL_PARAM_BLD_free);
  StatusOr<Pkey> pkey = absl::InvalidArgumentError("unreachable");
  if (*kty == "RSA") {
    auto n = JwkBytes(jwk, "n"), e = JwkBytes(jwk, "e");
    if (!n || !e || n->empty() || e->empty())
      return absl::InvalidArgumentError("RSA key needs base64url 'n' and 'e'");
    BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                             static_cast<int>(n->size()), nullptr);
    BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                             static_cast<int>(e->size()), nullptr);
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n);
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e);
    pkey = FromParams("RSA", bld.get());
    BN_free(bn_n);
    BN_free(bn_e);
  } else if (*kty == "EC") {
    auto x = JwkBytes(jwk, "x"), y = JwkBytes(jwk, "y");
    if (GetString(jwk, "crv") != "P-256")
      return absl::UnimplementedError("EC keys must have crv P-256");
    if (!x || !y || x->size() != 32 || y->size() != 32)
      return absl::InvalidArgumentError("EC key needs 32-byte base64url 'x' and 'y'");
    std::string point = "\x04" + *x + *y;  // uncompressed
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                     point.size());
    pkey = FromParams("EC", bld.get());
  } else if (*kty == "OKP") {
    auto x = JwkBytes(jwk, "x");
    if (GetString(jwk, "crv") != "Ed25519")
      return absl::UnimplementedError("OKP keys must have crv Ed25519");
    if (!x || x->size() != 32) return absl::InvalidArgumentError("Ed25519 key needs 32-byte 'x'");
    EVP_PKEY* raw = EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x->data()), x->size());
    if (raw == nullptr) return absl::InvalidArgumentError(OpensslError());
    pkey = Pkey(raw);
  } else {
    return absl::UnimplementedError("unsupported kty '" + std::string(*kty) + "'");
  }
  if (!pkey.ok()) return pkey.status();
  auto type = Classify(pkey->get());
  if (!type.ok()) return type.status();
  key.type = *type;
  if (!key.alg.empty() && (key.alg != "RS256" && key.alg != "ES256" && key.alg != "EdDSA"))
    return absl::UnimplementedError("key with unsupported 'alg' " + key.alg);
  if (!key.alg.empty() && TypeFor(key.alg) != key.type)
    return absl::InvalidArgumentError("key whose 'alg' does not match its type");
  key.pkey = std::move(*pkey);
  return key;
}

Status ParseJwks(std::string_view text, std::vector<Key>* keys) {
  auto v = ParseJson(text);
  if (!v.ok()) return v.status();
  const json::object* o = v->if_object();
  const json::value* arr = o ? Find(*o, "keys") : nullptr;
  if (arr == nullptr || !arr->is_array())
    return absl::InvalidArgumentError("a JWKS is an object with a 'keys' array");
  for (size_t i = 0; i < arr->get_array().size(); ++i) {
    const json::value& k = arr->get_array()[i];
    if (!k.is_object())
      return absl::InvalidArgumentError("keys[" + std::to_string(i) + "]: not an object");
    auto key = ParseJwk(k.get_object());
    if (absl::IsUnimplemented(key.status())) continue;  // not a key persona verifies with
    if (!key.ok())
      return absl::InvalidArgumentError("keys[" + std::to_string(i) +
                                        "]: " + std::string(key.status().message()));
    keys->push_back(std::move(*key));
    if (keys->size() > kMaxKeys) return absl::InvalidArgumentError("more than 64 keys");
  }
  return absl::OkStatus();
}

Status LoadKeyFile(const std::string& path, std::vector<Key>* keys) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError("cannot read '" + path + "'");
  std::string text;
  text.resize(kMaxKeyFileBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxKeyFileBytes)
    return absl::InvalidArgumentError("'" + path + "' is larger than 1 MiB");
  const size_t first = text.find_first_not_of(" \t\r\n");
  Status st = first != std::string::npos && text[first] == '{' ? ParseJwks(text, keys)
                                                               : ParsePem(text, keys);
  if (!st.ok()) return absl::InvalidArgumentError("'" + path + "': " + std::string(st.message()));
  if (keys->empty()) return absl::InvalidArgumentError("'" + path + "' holds no public key");
  return absl::OkStatus();
}

Status Refuse(const char* why) { return absl::UnauthenticatedError(why); }

// A NumericDate (RFC 7519 §2): a JSON number, possibly fractional.
std::optional<double> NumericDate(const json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double() && std::isfinite(v.get_double())) return v.get_double();
  return std::nullopt;
}

bool VerifyWith(EVP_PKEY* pkey, const EVP_MD* md, std::string_view data, const unsigned char* sig,
                size_t sig_len) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr && EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, pkey) == 1 &&
      EVP_DigestVerify(ctx, sig, sig_len, reinterpret_cast<const unsigned char*>(data.data()),
                       data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  ERR_clear_error();
  return ok;
}

// ES256 signatures are R || S (32 bytes each, RFC 7518 §3.4); OpenSSL wants DER.
bool VerifyEs256(EVP_PKEY* pkey, std::string_view data, const std::string& sig) {
  if (sig.size() != 64) return false;
  const auto* b = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* es = ECDSA_SIG_new();
  if (es == nullptr) return false;
  BIGNUM* r = BN_bin2bn(b, 32, nullptr);
  BIGNUM* s = BN_bin2bn(b + 32, 32, nullptr);
  if (r == nullptr || s == nullptr || ECDSA_SIG_set0(es, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return false;
  }
  unsigned char* der = nullptr;
  const int der_len = i2d_ECDSA_SIG(es, &der);
  ECDSA_SIG_free(es);
  if (der_len <= 0) return false;
  const bool ok = VerifyWith(pkey, EVP_sha256(), data, der, static_cast<size_t>(der_len));
  OPENSSL_free(der);
  return ok;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &len);
  return std::string(reinterpret_cast<const char*>(mac), len);
}

// "JWT", "at+jwt", optionally with "application/" (RFC 7515 §4.1.9, RFC 9068).
bool AcceptableTyp(std::string_view typ) {
  std::string t(typ);
  for (auto& c : t) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t.starts_with("application/")) t = t.substr(12);
  return t == "jwt" || t == "at+jwt";
}

}  // namespace

struct JwtVerifier::State {
  JwtOptions options;
  std::set<std::string> algorithms;
  std::vector<Key> keys;
};

JwtVerifier::JwtVerifier(std::shared_ptr<const State> state, Clock clock)
    : state_(std::move(state)), clock_(std::move(clock)) {
  if (!clock_) {
    clock_ = [] {
      return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

JwtVerifier::~JwtVerifier() = default;

StatusOr<std::shared_ptr<const JwtVerifier::State>> JwtVerifier::Build(JwtOptions options) {
  auto st = std::make_shared<State>();
  if (options.algorithms.empty())
    return absl::InvalidArgumentError(
        "algorithms: list at least one of HS256, RS256, ES256, EdDSA");
  bool asymmetric = false;
  for (const auto& a : options.algorithms) {
    std::string lower = a;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "none")
      return absl::InvalidArgumentError("algorithms: \"none\" is never allowed (RFC 8725 §3.1)");
    if (a != "HS256" && a != "RS256" && a != "ES256" && a != "EdDSA")
      return absl::InvalidArgumentError("algorithms: unsupported '" + a +
                                        "' (HS256, RS256, ES256, EdDSA)");
    asymmetric = asymmetric || a != "HS256";
    st->algorithms.insert(a);
  }
  if (st->algorithms.count("HS256") && options.hs256_secret.size() < kMinHs256SecretBytes)
    return absl::InvalidArgumentError(
        "hs256_secret: HS256 needs a secret of at least 32 bytes (set hs256_secret or "
        "hs256_secret_env)");
  if (!st->algorithms.count("HS256") && !options.hs256_secret.empty())
    return absl::InvalidArgumentError("hs256_secret: set, but algorithms does not list HS256");
  if (!options.public_keys_file.empty()) {
    if (!asymmetric)
      return absl::InvalidArgumentError(
          "public_keys_file: set, but algorithms lists none of RS256, ES256, EdDSA");
    if (Status s = LoadKeyFile(options.public_keys_file, &st->keys); !s.ok())
      return absl::InvalidArgumentError("public_keys_file: " + std::string(s.message()));
  }
  for (const auto& a : st->algorithms) {
    if (a == "HS256") continue;
    bool have = false;
    for (const auto& k : st->keys)
      have = have || (k.type == TypeFor(a) && (k.alg.empty() || k.alg == a));
    if (!have) return absl::InvalidArgumentError("public_keys_file: no key for algorithm " + a);
  }
  st->options = std::move(options);
  return std::shared_ptr<const JwtVerifier::State>(std::move(st));
}

StatusOr<std::unique_ptr<JwtVerifier>> JwtVerifier::Create(JwtOptions options, Clock clock) {
  auto st = Build(std::move(options));
  if (!st.ok()) return st.status();
  return std::unique_ptr<JwtVerifier>(new JwtVerifier(std::move(*st), std::move(clock)));
}

Status JwtVerifier::Reload(JwtOptions options) {
  auto st = Build(std::move(options));
  if (!st.ok()) return st.status();
  std::lock_guard<std::mutex> l(mu_);
  state_ = std::move(*st);
  return absl::OkStatus();
}

std::shared_ptr<const JwtVerifier::State> JwtVerifier::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  return state_;
}

size_t JwtVerifier::key_count() const { return Current()->keys.size(); }

StatusOr<std::string> JwtVerifier::Mint(json::object claims) const {
  const std::shared_ptr<const State> st = Current();
  if (!st->algorithms.count("HS256"))
    return absl::UnimplementedError(
        "minting tokens needs auth.jwt.hs256_secret (HS256); with other algorithms tokens come "
        "from the identity provider");
  if (!st->options.audience.empty()) claims["aud"] = st->options.audience;
  if (!st->options.issuer.empty()) claims["iss"] = st->options.issuer;
  return MintHs256(st->options.hs256_secret, claims);
}

StatusOr<Claims> JwtVerifier::Verify(std::string_view token) const {
  const std::shared_ptr<const State> st = Current();
  const JwtOptions& opt = st->options;
  if (token.empty()) return Refuse("no token");
  if (token.size() > opt.max_token_bytes) return Refuse("token too long");
  const size_t d1 = token.find('.');
  const size_t d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos || token.find('.', d2 + 1) != std::string_view::npos)
    return Refuse("not a JWS compact serialization (three segments)");
  const std::string_view signing_input = token.substr(0, d2);

  // Header.
  auto header_bytes = Base64UrlDecode(token.substr(0, d1));
  if (!header_bytes || header_bytes->empty()) return Refuse("bad header encoding");
  auto header = ParseJson(*header_bytes);
  if (!header.ok() || !header->is_object()) return Refuse("header is not a JSON object");
  const json::object& h = header->get_object();
  auto alg = GetString(h, "alg");
  if (!alg) return Refuse("header without alg");
  if (!st->algorithms.count(std::string(*alg))) return Refuse("algorithm not allowed");
  if (const json::value* typ = Find(h, "typ");
      typ && (!typ->is_string() || !AcceptableTyp(typ->get_string())))
    return Refuse("unexpected typ");
  if (Find(h, "crit") != nullptr) return Refuse("unsupported critical header");
  std::optional<std::string_view> kid;
  if (const json::value* k = Find(h, "kid")) {
    if (!k->is_string()) return Refuse("kid must be a string");
    kid = std::string_view(k->get_string().data(), k->get_string().size());
  }

  // Signature, before anything in the payload is looked at.
  auto sig = Base64UrlDecode(token.substr(d2 + 1));
  if (!sig || sig->empty()) return Refuse("bad signature encoding");
  bool verified = false;
  if (*alg == "HS256") {
    const std::string mac = HmacSha256(opt.hs256_secret, signing_input);
    verified = sig->size() == mac.size() && CRYPTO_memcmp(sig->data(), mac.data(), mac.size()) == 0;
  } else {
    const KeyType want = TypeFor(*alg);
    for (const auto& k : st->keys) {
      if (k.type != want || (!k.alg.empty() && k.alg != *alg)) continue;
      if (kid && !k.kid.empty() && k.kid != *kid) continue;
      if (want == KeyType::kEc256) {
        verified = VerifyEs256(k.pkey.get(), signing_input, *sig);
      } else {
        verified =
            VerifyWith(k.pkey.get(), want == KeyType::kRsa ? EVP_sha256() : nullptr, signing_input,
                       reinterpret_cast<const unsigned char*>(sig->data()), sig->size());
      }
      if (verified) break;
    }
  }
  if (!verified) return Refuse("bad signature");

  // Claims.
  auto payload_bytes = Base64UrlDecode(token.substr(d1 + 1, d2 - d1 - 1));
  if (!payload_bytes) return Refuse("bad payload encoding");
  auto payload = ParseJson(*payload_bytes);
  if (!payload.ok() || !payload->is_object()) return Refuse("claims are not a JSON object");
  const json::object& c = payload->get_object();
  const double now = clock_();
  const json::value* exp = Find(c, "exp");
  if (exp == nullptr) return Refuse("exp is required");
  auto exp_v = NumericDate(*exp);
  if (!exp_v) return Refuse("exp must be a number");
  if (now >= *exp_v + static_cast<double>(opt.leeway_s)) return Refuse("token expired");
  if (const json::value* nbf = Find(c, "nbf")) {
    auto v = NumericDate(*nbf);
    if (!v) return Refuse("nbf must be a number");
    if (now + static_cast<double>(opt.leeway_s) < *v) return Refuse("token not yet valid");
  }
  if (const json::value* iat = Find(c, "iat"); iat && !NumericDate(*iat))
    return Refuse("iat must be a number");
  if (const json::value* iss = Find(c, "iss"); iss && !iss->is_string())
    return Refuse("iss must be a string");
  if (!opt.issuer.empty() && GetString(c, "iss") != opt.issuer) return Refuse("wrong issuer");
  if (const json::value* aud = Find(c, "aud")) {
    bool match = false;
    if (aud->is_string()) {
      match = aud->get_string() == opt.audience;
    } else if (aud->is_array()) {
      for (const auto& a : aud->get_array()) {
        if (!a.is_string()) return Refuse("aud must be a string or an array of strings");
        match = match || a.get_string() == opt.audience;
      }
    } else {
      return Refuse("aud must be a string or an array of strings");
    }
    if (!opt.audience.empty() && !match) return Refuse("wrong audience");
  } else if (!opt.audience.empty()) {
    return Refuse("wrong audience");
  }
  Claims out;
  auto sub = GetString(c, "sub");
  if (!sub || sub->empty() || sub->size() > kMaxSubjectBytes)
    return Refuse("sub must be a non-empty string of at most 256 bytes");
  out.subject = std::string(*sub);
  // Far-future expiries are clamped (timers use 64-bit seconds).
  out.expires_at_s = static_cast<int64_t>(std::min(*exp_v, 253402300799.0));  // 9999-12-31
  if (const json::value* a = Find(c, "persona_admin")) {
    if (!a->is_bool()) return Refuse("persona_admin must be true or false");
    out.admin = a->get_bool();
  }
  if (const json::value* s = Find(c, "sessions")) {
    if (!s->is_array() || s->get_array().size() > kMaxSessionsClaim)
      return Refuse("sessions must be an array of at most 1000 session ids");
    out.limited = true;
    for (const auto& id : s->get_array()) {
      if (!id.is_string() || !IsValidId(std::string_view(id.get_string())))
        return Refuse("sessions must hold session ids");
      out.sessions.emplace_back(id.get_string());
    }
  }
  return out;
}

std::string SignHs256(std::string_view secret, std::string_view signing_input) {
  return Base64UrlEncode(HmacSha256(secret, signing_input));
}

std::string MintHs256(std::string_view secret, const json::object& claims) {
  std::string token = Base64UrlEncode(R"({"alg":"HS256","typ":"JWT"})");
  token += '.';
  token += Base64UrlEncode(json::serialize(claims));
  const std::string sig = SignHs256(secret, token);
  token += '.';
  token += sig;
  return token;
}

}  // namespace persona::auth

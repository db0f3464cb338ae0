// Entry point of the ffibox C++ client: a connection to one ffiboxd.
//
// `Client::Connect(address)` makes the gRPC channel (target syntax: `unix:/path/to/sock` or
// `host:port`): plaintext on a unix socket (the socket's owner-only directory is the door, and
// the client first checks that the socket and its listener are this user's or root's, see
// unix_server_check.h), TLS (optionally mutual) with a bearer token over TCP, as ffiboxd
// requires there;
// `OpenSession` starts a session with its own worker. A Client may open any number of
// sessions and is thread-safe.
#ifndef FFIBOX_CLIENT_CPP_CLIENT_H_
#define FFIBOX_CLIENT_CPP_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cpp/session.h"
#include "core/keepalive.h"
#include "ffibox/v1/ffibox.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {

struct ConnectOptions {
  // How long Connect waits for the server to accept the connection.
  absl::Duration connect_timeout = absl::Seconds(5);
  // TLS: on when `tls` is set or any PEM below is given (TCP servers require it).
  bool tls = false;
  std::string tls_root_certs;         // PEM CAs for the server's certificate; empty: system
  std::string tls_client_cert_chain;  // PEM client certificate, for mutual TLS
  std::string tls_client_key;         // PEM key of the client certificate
  std::string tls_server_name;        // name to check in the server's certificate; empty:
                                      // the host of `address`
  // Sent as `authorization: Bearer <token>` on every session; empty: none (the unix
  // socket's owner is the server's local identity).
  std::string bearer_token;
  // How sessions spread over the servers a TCP target names ("ipv4:10.0.0.1:7000,
  // 10.0.0.2:7000", "dns:///ffibox.example:7000"): gRPC's "round_robin" or "pick_first"
  // policy. A session is one stream and stays on the server it started on. A unix-socket
  // target is one server and ignores this.
  std::string load_balancing_policy = "round_robin";
  // With round_robin: new sessions go only to servers whose grpc.health.v1 status for
  // ffibox.v1.Ffibox is SERVING (gRPC's client-side health checking).
  bool health_check = true;
  // While a session is open the client pings the server this often and ends the connection
  // when a ping is not acknowledged within `keepalive_timeout`: a server that stopped
  // answering (its host gone, its process stopped) fails the requests in flight with
  // UNAVAILABLE instead of leaving them waiting forever (core/keepalive.h). ffiboxd takes
  // pings as often as once a second.
  absl::Duration keepalive_time = kClientKeepaliveTime;
  absl::Duration keepalive_timeout = kClientKeepaliveTimeout;
};

class Client {
 public:
  // Connects to the ffiboxd at `address` (a unix socket, or a gRPC target naming one or
  // several TCP servers); INVALID_ARGUMENT for an empty address, an unknown load-balancing
  // policy, a bearer token for a TCP target without TLS or TLS for a unix socket (nothing
  // is sent), UNAVAILABLE if nothing
  // accepts the connection within options.connect_timeout (which includes a failed TLS handshake:
  // an untrusted server or a refused client certificate; with health checks, no server reporting
  // SERVING). For a unix socket, PERMISSION_DENIED before anything is sent when the socket, its
  // directory or the process listening on it belongs to another user than this one or root
  // (CheckUnixServer); the message names the path and its owner.
  // Credentials are checked when a session opens: OpenSession fails with UNAUTHENTICATED or
  // PERMISSION_DENIED.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& address,
                                                         const ConnectOptions& options = {});

  // Opens a new session (one worker) with `options`; UNAVAILABLE if the server is gone,
  // UNAUTHENTICATED / PERMISSION_DENIED if the server refuses the credentials,
  // RESOURCE_EXHAUSTED if it has its maximum of sessions open (for this identity).
  absl::StatusOr<std::unique_ptr<Session>> OpenSession(const SessionOptions& options = {});

  // The gRPC target this client connected to.
  const std::string& address() const { return address_; }

 private:
  Client(std::string address, std::shared_ptr<grpc::Channel> channel);

  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
};

// The public error (code, message, signal, exit_code, function, ...) inside a status from
// this client; code ERROR_CODE_UNSPECIFIED for OK, UNAVAILABLE when the server could not be
// reached or the session's stream ended.
v1::Error ErrorOf(const absl::Status& status);

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_CLIENT_H_

// Entry point of the ffibox C++ client: a connection to one ffiboxd.
//
// `Client::Connect(address)` makes the gRPC channel (target syntax: `unix:/path/to/sock` or
// `host:port`; insecure credentials for now, so use it on a unix socket or a trusted
// network); `OpenSession` starts a session with its own worker. A Client may open any
// number of sessions and is thread-safe.
#ifndef FFIBOX_CLIENT_CPP_CLIENT_H_
#define FFIBOX_CLIENT_CPP_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cpp/session.h"
#include "ffibox/v1/ffibox.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {

struct ConnectOptions {
  // How long Connect waits for the server to accept the connection.
  absl::Duration connect_timeout = absl::Seconds(5);
};

class Client {
 public:
  // Connects to the ffiboxd at `address`; INVALID_ARGUMENT for an empty address,
  // UNAVAILABLE if nothing accepts the connection within options.connect_timeout.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const std::string& address,
                                                         const ConnectOptions& options = {});

  // Opens a new session (one worker) with `options`; UNAVAILABLE if the server is gone.
  absl::StatusOr<std::unique_ptr<Session>> OpenSession(const SessionOptions& options = {});

  // The gRPC target this client connected to.
  const std::string& address() const { return address_; }

 private:
  Client(std::string address, std::shared_ptr<grpc::Channel> channel);

  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
};

// The public error (code, message, signal, exit_code, function, ...) inside a status from
// this client; code ERROR_CODE_UNSPECIFIED for OK.
v1::Error ErrorOf(const absl::Status& status);

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_CLIENT_H_

// The listening sockets ffiboxd accepts on itself (server/broker/connection_acceptor.h): a unix
// socket file, and the TCP sockets of a HOST:PORT.
#ifndef FFIBOX_SERVER_BROKER_LISTEN_SOCKET_H_
#define FFIBOX_SERVER_BROKER_LISTEN_SOCKET_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// Binds and listens on the socket file `path`, made mode 0600 (its directory was prepared by
// PrepareUnixListenAddress); returns the listening descriptor. FAILED_PRECONDITION naming the
// path when that fails.
absl::StatusOr<int> ListenOnUnixSocket(const std::string& path);

// The sockets bound for one HOST:PORT, all on one port.
struct TcpListenSockets {
  std::vector<int> fds;  // non-blocking, close-on-exec, SO_REUSEADDR
  int port = 0;          // the port bound (the one picked, for port 0)
};

// Binds and listens on `address` (HOST:PORT, as ValidateTcpListenAddress accepts it) as gRPC's
// own listener did: a name is resolved and each of its addresses bound (localhost: 127.0.0.1
// and ::1), an IPv6 literal in brackets is bound IPv6-only, and a wildcard host (0.0.0.0,
// [::]) is one dual-stack socket (IPv4 alone where the host has no IPv6). Port 0 picks a free
// port, the same for every address. UNAVAILABLE naming the address when nothing binds.
absl::StatusOr<TcpListenSockets> ListenOnTcp(absl::string_view address);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LISTEN_SOCKET_H_

// The listening address of ffiboxd and the owner-only directory of its unix socket.
#ifndef FFIBOX_SERVER_BROKER_LISTEN_ADDRESS_H_
#define FFIBOX_SERVER_BROKER_LISTEN_ADDRESS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// Prepares a `unix:PATH` address for listening: creates PATH's directory with mode 0700 if
// missing, refuses a directory that another user owns or that others can enter (so only the
// owner can reach the socket), and removes a stale socket file no server is listening on.
// Fails with FAILED_PRECONDITION when the directory is unsafe or a live server holds PATH.
// Addresses other than unix: are returned unchanged (TCP needs TLS, see docs/security.md).
absl::Status PrepareUnixListenAddress(const std::string& address);

// Checks a TCP listening address, "HOST:PORT": HOST a name or an IPv4 address of letters,
// digits, '.' and '-', or a bracketed IPv6 address; PORT decimal, 0 to 65535 (0: any free
// port). INVALID_ARGUMENT naming the address otherwise: gRPC would take a larger port modulo
// 65536 ("99999" binds 34463) and a "unix:" or other URI target as a socket of its own,
// made without the owner-only checks above.
absl::Status ValidateTcpListenAddress(absl::string_view address);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LISTEN_ADDRESS_H_

// The listening address of ffiboxd and the owner-only directory of its unix socket.
#ifndef FFIBOX_SERVER_BROKER_LISTEN_ADDRESS_H_
#define FFIBOX_SERVER_BROKER_LISTEN_ADDRESS_H_

#include <string>

#include "absl/status/status.h"

namespace ffibox {

// Prepares a `unix:PATH` address for listening: creates PATH's directory with mode 0700 if
// missing, refuses a directory that another user owns or that others can enter (so only the
// owner can reach the socket), and removes a stale socket file no server is listening on.
// Fails with FAILED_PRECONDITION when the directory is unsafe or a live server holds PATH.
// Addresses other than unix: are returned unchanged (TCP needs TLS, see docs/security.md).
absl::Status PrepareUnixListenAddress(const std::string& address);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LISTEN_ADDRESS_H_

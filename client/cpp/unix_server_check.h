// Checks whom a client is about to talk to on a unix socket, before it sends anything.
//
// A unix socket has no TLS: whoever can put a socket at the path a client connects to would
// receive the client's arguments and could forge its results. Another local user can do that
// by pre-creating a directory such as `/tmp/ffibox-$UID` (the default address without
// XDG_RUNTIME_DIR) before ffiboxd does. So `Client::Connect` calls `CheckUnixServer` for every
// `unix:` and `unix-abstract:` address, and trusts a server only if it is this process's
// effective user or root; the Python client applies the same rules
// (client/python/ffibox/_unix_server_check.py). TCP addresses are not checked here: they
// authenticate the server with TLS.
#ifndef FFIBOX_CLIENT_CPP_UNIX_SERVER_CHECK_H_
#define FFIBOX_CLIENT_CPP_UNIX_SERVER_CHECK_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace ffibox {

// Checks that the server at gRPC target `address` belongs to this user (geteuid()) or root.
// For `unix:PATH` (also `unix:///PATH`): PATH's directory is a real directory (not a symbolic
// link) owned by this user or root and writable by neither group nor others, so nobody else
// can place or replace the socket; PATH is a socket owned by this user or root; and the
// process listening on it runs as this user or root (SO_PEERCRED of a probe connection, on
// which nothing is sent). For `unix-abstract:NAME`, which has no file, only the listening
// process is checked. Other addresses are not checked and return OK.
//
// Returns PERMISSION_DENIED, with a message naming the address, the offending path and its
// owner or mode, when any check fails; UNAVAILABLE when nothing listens at the address within
// `timeout` (a missing socket or a refused connection is retried until then);
// INVALID_ARGUMENT for a unix address gRPC would read differently (with `%`, `?` or `#`).
absl::Status CheckUnixServer(const std::string& address, absl::Duration timeout);

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_UNIX_SERVER_CHECK_H_

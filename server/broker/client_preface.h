// Whether a TCP peer has sent what an HTTP/2 client sends first: the connection preface and a
// SETTINGS frame. gRPC's own listener closes a connection that has not, by its handshake
// deadline; a connection handed to gRPC by descriptor (grpc::AddInsecureChannelFromFd) has no
// deadline at all, so ffiboxd's acceptor (server/broker/connection_acceptor.h) reads ahead
// (MSG_PEEK) and hands a connection over only once this says kComplete.
#ifndef FFIBOX_SERVER_BROKER_CLIENT_PREFACE_H_
#define FFIBOX_SERVER_BROKER_CLIENT_PREFACE_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace ffibox {

// The most bytes CheckClientPreface needs to see: the preface, a frame header and the largest
// first frame HTTP/2 allows before SETTINGS have changed it (16 KiB).
inline constexpr size_t kMaxClientPrefaceBytes = 24 + 9 + 16384;

enum class ClientPreface {
  kIncomplete,  // a prefix of a valid preface and SETTINGS frame: wait for more
  kComplete,    // the preface and a whole SETTINGS frame (more bytes may follow)
  kNotHttp2,    // bytes no HTTP/2 client sends first: gRPC would close the connection
};

// Classifies the first bytes a peer sent, `received` (untrusted; any length).
ClientPreface CheckClientPreface(absl::string_view received);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_CLIENT_PREFACE_H_

// gRPC keepalive between ffibox's clients and ffiboxd: how either side notices a peer that
// stopped answering without closing the connection (its host gone, its process stopped).
// Without it a session's stream, which is always open, would wait for an answer forever.
//
// A client pings while a session is open, every kClientKeepaliveTime, and ends the connection
// when a ping is not acknowledged within kClientKeepaliveTimeout: every request in flight then
// fails with UNAVAILABLE. ffiboxd takes a client's pings as often as every
// kServerMinPingInterval without data in between (gRPC's default, five minutes, would answer
// the third ping of an idle session with GOAWAY), and pings its clients every
// kServerKeepaliveTime so that the sessions (and workers) of a client that vanished end.
// The Python and Node clients use the same values (docs/protocol.md, "Keepalive").
#ifndef FFIBOX_CORE_KEEPALIVE_H_
#define FFIBOX_CORE_KEEPALIVE_H_

#include "absl/time/time.h"

namespace ffibox {

inline constexpr absl::Duration kClientKeepaliveTime = absl::Seconds(30);
inline constexpr absl::Duration kClientKeepaliveTimeout = absl::Seconds(20);
inline constexpr absl::Duration kServerMinPingInterval = absl::Seconds(1);
inline constexpr absl::Duration kServerKeepaliveTime = absl::Seconds(60);
inline constexpr absl::Duration kServerKeepaliveTimeout = absl::Seconds(20);

}  // namespace ffibox

#endif  // FFIBOX_CORE_KEEPALIVE_H_

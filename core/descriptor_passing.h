// Passing descriptors between the broker and a worker over a unix stream socket with
// SCM_RIGHTS, each tagged with the 8-byte id of the request it belongs to.
//
// The broker hands the worker a descriptor of each library it admitted (the worker loads
// exactly the file the broker checked, wherever it lies; server/broker/library_descriptor.h).
// The receiving side distrusts what arrives: a message without exactly one descriptor is
// refused and anything extra is closed.
#ifndef FFIBOX_CORE_DESCRIPTOR_PASSING_H_
#define FFIBOX_CORE_DESCRIPTOR_PASSING_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ffibox {

// The tag of the worker's seccomp listener, which the worker passes to the broker once,
// right after installing its filter (requests' tags are their ids, never this).
inline constexpr uint64_t kSeccompListenerTag = ~uint64_t{0};

// Sends `fd` with `tag` on the unix socket `socket_fd` without blocking. The caller keeps
// `fd`. UNAVAILABLE when the peer has gone or does not read (the socket is full).
absl::Status SendDescriptor(int socket_fd, int fd, uint64_t tag);

struct TaggedDescriptor {
  uint64_t tag = 0;
  int fd = -1;  // owned by the caller
};

// Receives one tagged descriptor from `socket_fd` (blocking). UNAVAILABLE at end of
// stream; DATA_LOSS for a message without exactly one descriptor or a short tag.
absl::StatusOr<TaggedDescriptor> ReceiveDescriptor(int socket_fd);

}  // namespace ffibox

#endif  // FFIBOX_CORE_DESCRIPTOR_PASSING_H_

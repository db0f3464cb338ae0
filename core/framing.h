// Length-prefixed frames on a stream socket: the one framing routine of the broker <-> worker
// channel. A frame is a 4-byte little-endian length followed by that many payload bytes.
#ifndef FFIBOX_CORE_FRAMING_H_
#define FFIBOX_CORE_FRAMING_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// Writes one frame to the stream socket `fd` (blocking, retries on EINTR, never raises
// SIGPIPE). Returns UNAVAILABLE when the peer has gone.
absl::Status WriteFrame(int fd, absl::string_view payload);

// Reads one frame from `fd` (blocking). The length prefix is untrusted: a frame longer than
// `max_bytes` is refused with RESOURCE_EXHAUSTED without reading it. Returns UNAVAILABLE on
// end of stream (also in the middle of a frame).
absl::StatusOr<std::string> ReadFrame(int fd, size_t max_bytes);

}  // namespace ffibox

#endif  // FFIBOX_CORE_FRAMING_H_

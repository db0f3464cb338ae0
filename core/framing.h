// Length-prefixed frames on the broker <-> worker channel (core/shm_channel.h): the one framing
// routine of that channel. A frame is a 4-byte little-endian length followed by that many
// payload bytes.
#ifndef FFIBOX_CORE_FRAMING_H_
#define FFIBOX_CORE_FRAMING_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/shm_channel.h"

namespace ffibox {

// Writes one frame to `channel`, waiting for room until `deadline` (a frame larger than the
// ring streams through it). RESOURCE_EXHAUSTED for a payload of 4 GiB or more; otherwise
// ShmChannel::Write's errors (UNAVAILABLE when the peer has gone).
absl::Status WriteFrame(ShmChannel& channel, absl::string_view payload, absl::Time deadline);

// Reads one frame from `channel`, waiting until `deadline`. The length prefix is untrusted: a
// frame longer than `max_bytes` is refused with RESOURCE_EXHAUSTED without reading it.
// Otherwise ShmChannel::Read's errors (UNAVAILABLE at end of stream, also in the middle of a
// frame).
absl::StatusOr<std::string> ReadFrame(ShmChannel& channel, size_t max_bytes, absl::Time deadline);

// Decodes frames that arrive in pieces (for non-blocking readers that must keep their own
// deadlines). The bytes fed to it are untrusted: the length prefix is checked against the
// limit before any payload is buffered.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Appends received bytes. The buffer grows geometrically but never past the end of the
  // frame in progress, so it holds about the frame's size, not up to twice it.
  void Append(const char* data, size_t size);

  // Returns the next whole frame, std::nullopt when more bytes are needed, or
  // RESOURCE_EXHAUSTED when the announced length exceeds the limit (the decoder is then
  // unusable).
  absl::StatusOr<std::optional<std::string>> Next();

  // True when bytes of an unfinished frame are buffered.
  bool HasPartialFrame() const { return buffer_.size() > consumed_; }

  // Bytes buffered and not yet returned as frames.
  size_t Buffered() const { return buffer_.size() - consumed_; }

  // The payload length the unfinished frame announced (0 while its header is incomplete or
  // there is none).
  size_t AnnouncedLength() const;

 private:
  size_t max_bytes_;
  std::string buffer_;
  size_t consumed_ = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_FRAMING_H_

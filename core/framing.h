// Length-prefixed frames on the broker <-> worker channel (core/shm_channel.h): the one framing
// routine of that channel. A frame is a 4-byte little-endian length followed by that many
// payload bytes.
#ifndef FFIBOX_CORE_FRAMING_H_
#define FFIBOX_CORE_FRAMING_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/malloc_tuning.h"
#include "core/shm_channel.h"
#include "google/protobuf/io/coded_stream.h"

namespace ffibox {

// The length prefix of every frame.
inline constexpr size_t kFrameHeaderBytes = 4;

// Writes one frame to `channel`, waiting for room until `deadline` (a frame larger than the
// ring streams through it). RESOURCE_EXHAUSTED for a payload of 4 GiB or more; otherwise
// ShmChannel::Write's errors (UNAVAILABLE when the peer has gone).
absl::Status WriteFrame(ShmChannel& channel, absl::string_view payload, absl::Time deadline);
// The same, waiting for room until `patience` after it first finds none
// (ShmChannel::Write): a frame that fits costs no read of the clock.
absl::Status WriteFrame(ShmChannel& channel, absl::string_view payload, absl::Duration patience);

// Writes one frame of `length` payload bytes that `serialize` produces, without holding the
// frame whole: the bytes go through the channel in pieces as they are produced (a large
// message costs its sender no second copy). RESOURCE_EXHAUSTED for a length of 4 GiB or more;
// ShmChannel::Write's errors; INTERNAL when `serialize` produced other than `length` bytes
// (the channel is then out of step with its peer and must be dropped).
absl::Status WriteFrame(ShmChannel& channel, size_t length,
                        absl::FunctionRef<void(google::protobuf::io::CodedOutputStream*)> serialize,
                        absl::Time deadline);

// Reads one frame from `channel`, waiting until `deadline`. The length prefix is untrusted: a
// frame longer than `max_bytes` is refused with RESOURCE_EXHAUSTED without reading it.
// Otherwise ShmChannel::Read's errors (UNAVAILABLE at end of stream, also in the middle of a
// frame).
absl::StatusOr<std::string> ReadFrame(ShmChannel& channel, size_t max_bytes, absl::Time deadline);
// The same into `*payload`, whose capacity is reused (a reader of one frame after another
// allocates nothing for frames no larger than the ones before; a larger frame gets a buffer
// of its own size, and a capacity above 1 MiB is given back once the next frame is smaller).
// `*payload` is unspecified after an error.
absl::Status ReadFrameInto(ShmChannel& channel, size_t max_bytes, absl::Time deadline,
                           std::string* payload);

// Frames whose payload is longer than this are kept in pieces of kFramePieceBytes.
inline constexpr size_t kLargeFrameBytes = size_t{1} << 20;
inline constexpr size_t kFramePieceBytes = size_t{4} << 20;
// A whole piece never makes a heap grow (core/malloc_tuning.h): freed, it holds no address
// space.
static_assert(kFramePieceBytes >= kMappedAllocationBytes);

// A frame's payload: one piece, or for a frame longer than kLargeFrameBytes, pieces of
// kFramePieceBytes (the last one shorter), so that a parser can free them as it goes
// (core/piece_stream.h) instead of holding the frame beside its parse.
struct FramePayload {
  // Inline: a frame of one piece (most) costs no allocation beyond its bytes.
  absl::InlinedVector<std::string, 1> pieces;

  size_t size() const {
    size_t total = 0;
    for (const std::string& piece : pieces) total += piece.size();
    return total;
  }
  std::vector<absl::string_view> Views() const {
    return std::vector<absl::string_view>(pieces.begin(), pieces.end());
  }
};

// Decodes frames that arrive in pieces (for non-blocking readers that must keep their own
// deadlines). The bytes fed to it are untrusted: the length prefix is checked against the
// limit before any payload is buffered.
class FrameDecoder {
 public:
  explicit FrameDecoder(size_t max_bytes) : max_bytes_(max_bytes) {}

  // Appends received bytes. What is buffered grows only as bytes arrive (an announced length
  // alone reserves nothing) and never past the end of the frame in progress, so it holds
  // about the frame's size, not up to twice it.
  void Append(const char* data, size_t size);

  // Returns the next whole frame's payload, std::nullopt when more bytes are needed, or
  // RESOURCE_EXHAUSTED when the announced length exceeds the limit (the decoder is then
  // unusable).
  absl::StatusOr<std::optional<FramePayload>> Next();

  // Gives the decoder `buffer` (the piece of a frame it returned, no longer needed) to buffer
  // the next bytes in, so that a reader of one small frame after another allocates nothing.
  // Ignored unless the decoder holds no bytes and `buffer` no more than the capacity a
  // decoder keeps between frames.
  void Recycle(std::string buffer);

  // True when bytes of an unfinished frame are buffered.
  bool HasPartialFrame() const { return Buffered() > 0; }

  // Bytes received and not yet returned as frames (headers included).
  size_t Buffered() const;

  // The payload length the unfinished frame announced (0 while its header is incomplete or
  // there is none).
  size_t AnnouncedLength() const;

 private:
  // When the frame at the head of `buffer_` announces a payload longer than kLargeFrameBytes
  // (and within the limit), moves what arrived of it into `large_` and starts filling that.
  void StartLargeFrame();
  // The length the header at the head of `buffer_` announces (0 while it is incomplete).
  size_t HeadLength() const;
  // Appends to `large_` up to the end of its frame; returns how many bytes it took.
  size_t AppendToLarge(const char* data, size_t size);

  size_t max_bytes_;
  // Frames up to kLargeFrameBytes (and the bytes after a large frame in progress).
  std::string buffer_;
  size_t consumed_ = 0;
  // The payload of a large frame, past its header, while it arrives.
  bool in_large_ = false;
  size_t large_length_ = 0;    // announced
  size_t large_received_ = 0;  // in `large_`
  FramePayload large_;
};

// Reads the next frame from `channel` through `decoder` (whose limit caps it) as its bytes
// arrive, for a reader that a stalled peer must not hold: waits for the first byte until
// `deadline` (CANCELLED when the channel is interrupted before any came), then, once the frame
// started, at most `progress` for each next byte (interruptions then wait for the frame).
// DATA_LOSS when a started frame stopped arriving, RESOURCE_EXHAUSTED when it announces more
// than the limit, DEADLINE_EXCEEDED, and the channel's errors (UNAVAILABLE at end of stream).
absl::StatusOr<FramePayload> ReadFrameAsItArrives(ShmChannel& channel, FrameDecoder& decoder,
                                                  absl::Time deadline, absl::Duration progress);

}  // namespace ffibox

#endif  // FFIBOX_CORE_FRAMING_H_

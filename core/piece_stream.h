// A protobuf input stream over a message's bytes in pieces (gRPC's slices of a received
// message, the pieces of a large frame from a worker) that lets go of each piece once the
// parser has moved past it. Parsing a large message this way holds about one copy of it: the
// parsed message grows as the pieces go, instead of beside all of them.
//
// The parser copies out what it keeps before it asks for the next piece, and BackUp only
// returns bytes of the last piece it was given, so a piece is released when the parser asks
// for more after it (a parser that reads to the end asks past the last one too).
#ifndef FFIBOX_CORE_PIECE_STREAM_H_
#define FFIBOX_CORE_PIECE_STREAM_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "google/protobuf/io/zero_copy_stream.h"
#include "google/protobuf/message.h"

namespace ffibox {

class PieceInputStream final : public google::protobuf::io::ZeroCopyInputStream {
 public:
  // `pieces` are the bytes in order; `release(i)` is called once the parser is done with
  // piece i (the owner frees it). The pieces must stay valid until they are released.
  PieceInputStream(std::vector<absl::string_view> pieces, std::function<void(size_t)> release)
      : pieces_(std::move(pieces)), release_(std::move(release)) {}

  bool Next(const void** data, int* size) override;
  void BackUp(int count) override;
  bool Skip(int count) override;
  int64_t ByteCount() const override { return position_; }

 private:
  // The bytes not yet returned of the current piece, handing out the next piece (and
  // releasing the one before) when it is used up. Empty at the end.
  absl::string_view Remaining();

  std::vector<absl::string_view> pieces_;
  std::function<void(size_t)> release_;
  size_t current_ = 0;    // the piece bytes come from
  size_t offset_ = 0;     // bytes of it handed out and not backed up
  int64_t position_ = 0;  // bytes handed out and not backed up, in all
};

// protobuf 3.21 reserves at most this many bytes for a `bytes` field it parses from a
// stream (its kSafeStringSize, a guard against hostile lengths) and grows the string by
// doubling beyond, which would cost up to twice a larger field while it is parsed.
inline constexpr size_t kParserReservedBytes = 50000000;

// Parses `message` from `pieces` (the whole message, in order) as ParseFromZeroCopyStream
// would, calling `release(i)` once piece i is no longer needed. A message longer than
// `large_bytes` may hold `bytes` fields longer than that: those are found first (a pass over
// the wire format that copies nothing) and copied into strings of exactly their size after
// the rest of the message is parsed, so the parse costs about one copy of the message at any
// size. A message whose encoding the first pass cannot place field by field (groups, a field
// that repeats where the last one wins, a map or a oneof on the way to such a field) is
// parsed the ordinary way. Returns false when `message` is malformed; `message` is then in
// an unspecified state.
bool ParseFromPieces(std::vector<absl::string_view> pieces, std::function<void(size_t)> release,
                     google::protobuf::Message* message, size_t large_bytes = kParserReservedBytes);

// ParseFromPieces of pieces the caller hands over: each is freed (left an empty string with no
// capacity) once the parse has passed it.
bool ParseFromOwnedPieces(absl::Span<std::string> pieces, google::protobuf::Message* message);

}  // namespace ffibox

#endif  // FFIBOX_CORE_PIECE_STREAM_H_

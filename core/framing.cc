#include "core/framing.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "core/malloc_tuning.h"
#include "google/protobuf/io/zero_copy_stream.h"

namespace ffibox {
namespace {

constexpr size_t kHeaderBytes = kFrameHeaderBytes;

uint32_t DecodeLength(const unsigned char* header) {
  return static_cast<uint32_t>(header[0]) | static_cast<uint32_t>(header[1]) << 8 |
         static_cast<uint32_t>(header[2]) << 16 | static_cast<uint32_t>(header[3]) << 24;
}

// Buffer capacity a FrameDecoder keeps between frames.
constexpr size_t kKeptCapacity = 1 << 20;

absl::Status FrameTooLarge(uint32_t length, size_t max_bytes) {
  return absl::ResourceExhaustedError(
      absl::StrCat("frame of ", length, " bytes exceeds the limit of ", max_bytes));
}

void EncodeLength(uint32_t length, char* header) {
  for (size_t i = 0; i < kHeaderBytes; ++i) header[i] = static_cast<char>(length >> (8 * i));
}

// What a serializer writes, passed to a channel a buffer at a time.
class ChannelOutputStream final : public google::protobuf::io::ZeroCopyOutputStream {
 public:
  // A buffer of at most `buffer_bytes`; what is written first is `prefix`.
  ChannelOutputStream(ShmChannel& channel, size_t buffer_bytes, absl::string_view prefix,
                      absl::Time deadline)
      : channel_(channel),
        capacity_(std::max(buffer_bytes, prefix.size())),
        // A small frame (a call and its answer, mostly) is built in place, not on the heap.
        heap_(capacity_ > sizeof(inline_) ? new char[capacity_] : nullptr),
        buffer_(heap_ != nullptr ? heap_.get() : inline_),
        deadline_(deadline) {
    memcpy(buffer_, prefix.data(), prefix.size());
    used_ = prefix.size();
  }

  bool Next(void** data, int* size) override {
    if (used_ == capacity_ && !Flush()) return false;
    *data = buffer_ + used_;
    *size = static_cast<int>(capacity_ - used_);
    written_ += capacity_ - used_;
    used_ = capacity_;
    return true;
  }

  void BackUp(int count) override {
    used_ -= static_cast<size_t>(count);
    written_ -= static_cast<size_t>(count);
  }

  int64_t ByteCount() const override { return static_cast<int64_t>(written_); }

  // Writes what is buffered; false (and status() says why) when the channel refused it.
  bool Flush() {
    if (!status_.ok()) return false;
    if (used_ > 0) status_ = channel_.Write(absl::string_view(buffer_, used_), deadline_);
    used_ = 0;
    return status_.ok();
  }

  const absl::Status& status() const { return status_; }

 private:
  ShmChannel& channel_;
  const size_t capacity_;
  char inline_[512];
  const std::unique_ptr<char[]> heap_;
  char* const buffer_;
  const absl::Time deadline_;
  size_t used_ = 0;
  size_t written_ = 0;  // bytes handed to the serializer and not backed up, past the prefix
  absl::Status status_;
};

// How much of a frame a sender buffers before it writes to the channel.
constexpr size_t kWriteBufferBytes = 64 << 10;

}  // namespace

namespace {

// Writes `payload` with its length prefix as one frame through `write(pieces)`.
template <typename WriteFn>
absl::Status WriteWithHeader(absl::string_view payload, WriteFn write) {
  if (payload.size() > UINT32_MAX) {
    return absl::ResourceExhaustedError("frame larger than 4 GiB");
  }
  char header[kHeaderBytes];
  EncodeLength(static_cast<uint32_t>(payload.size()), header);
  const absl::string_view pieces[] = {absl::string_view(header, sizeof(header)), payload};
  return write(absl::MakeConstSpan(pieces));
}

}  // namespace

absl::Status WriteFrame(ShmChannel& channel, absl::string_view payload, absl::Time deadline) {
  return WriteWithHeader(payload, [&](absl::Span<const absl::string_view> pieces) {
    return channel.Write(pieces, deadline);
  });
}

absl::Status WriteFrame(ShmChannel& channel, absl::string_view payload, absl::Duration patience) {
  return WriteWithHeader(payload, [&](absl::Span<const absl::string_view> pieces) {
    return channel.Write(pieces, patience);
  });
}

absl::Status WriteFrame(ShmChannel& channel, size_t length,
                        absl::FunctionRef<void(google::protobuf::io::CodedOutputStream*)> serialize,
                        absl::Time deadline) {
  if (length > UINT32_MAX) return absl::ResourceExhaustedError("frame larger than 4 GiB");
  char header[kHeaderBytes];
  EncodeLength(static_cast<uint32_t>(length), header);
  ChannelOutputStream stream(channel, std::min(kWriteBufferBytes, kHeaderBytes + length),
                             absl::string_view(header, sizeof(header)), deadline);
  {
    google::protobuf::io::CodedOutputStream out(&stream);
    serialize(&out);
    out.Trim();
    if (out.HadError()) {
      return stream.status().ok() ? absl::InternalError("a frame's serializer failed")
                                  : stream.status();
    }
  }  // the coded stream hands back what it did not use
  if (static_cast<size_t>(stream.ByteCount()) != length) {
    return absl::InternalError(absl::StrCat("a frame announced as ", length,
                                            " bytes was serialized as ", stream.ByteCount()));
  }
  if (!stream.Flush()) return stream.status();
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFrame(ShmChannel& channel, size_t max_bytes, absl::Time deadline) {
  std::string payload;
  absl::Status status = ReadFrameInto(channel, max_bytes, deadline, &payload);
  if (!status.ok()) return status;
  return payload;
}

absl::Status ReadFrameInto(ShmChannel& channel, size_t max_bytes, absl::Time deadline,
                           std::string* payload) {
  unsigned char header[kHeaderBytes];
  absl::Status status = channel.Read(reinterpret_cast<char*>(header), sizeof(header), deadline);
  if (!status.ok()) return status;
  const uint32_t length = DecodeLength(header);
  if (length > max_bytes) return FrameTooLarge(length, max_bytes);
  // A frame larger than the buffer gets one of its own size (growing the old one would copy
  // its bytes and double it), and one large frame does not pin its size for the reader's
  // lifetime.
  if (length > payload->capacity() ||
      (payload->capacity() > kKeptCapacity && length <= kKeptCapacity)) {
    std::string().swap(*payload);
  }
  payload->resize(length);
  return channel.Read(payload->data(), length, deadline);
}

size_t FrameDecoder::AnnouncedLength() const {
  if (in_large_) return large_length_;
  return HeadLength();
}

size_t FrameDecoder::Buffered() const {
  return buffer_.size() - consumed_ + (in_large_ ? kHeaderBytes + large_received_ : 0);
}

size_t FrameDecoder::HeadLength() const {
  if (buffer_.size() - consumed_ < kHeaderBytes) return 0;
  return DecodeLength(reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_));
}

void FrameDecoder::Recycle(std::string buffer) {
  if (!buffer_.empty() || in_large_ || buffer.capacity() > kKeptCapacity) return;
  buffer.clear();
  buffer_ = std::move(buffer);
  consumed_ = 0;
}

void FrameDecoder::Append(const char* data, size_t size) {
  if (in_large_) {
    const size_t took = AppendToLarge(data, size);
    data += took;
    size -= took;
    if (size == 0) return;
  }
  const size_t needed = buffer_.size() + size;
  if (needed > buffer_.capacity() && buffer_.size() - consumed_ >= kHeaderBytes) {
    // Grow geometrically, as a string would, but never past the end of the announced frame
    // (a string's doubling would hold up to twice a large frame). Grown only as bytes
    // arrive: an announced length alone reserves nothing.
    const size_t frame_end = consumed_ + kHeaderBytes + std::min(HeadLength(), max_bytes_);
    buffer_.reserve(std::max(needed, std::min(frame_end, 2 * buffer_.capacity())));
  }
  buffer_.append(data, size);
  StartLargeFrame();
}

void FrameDecoder::StartLargeFrame() {
  if (in_large_ || buffer_.size() - consumed_ < kHeaderBytes) return;
  const size_t length = HeadLength();
  if (length <= kLargeFrameBytes || length > max_bytes_) return;  // Next refuses the latter
  in_large_ = true;
  large_length_ = length;
  const size_t start = consumed_ + kHeaderBytes;
  const size_t took = AppendToLarge(buffer_.data() + start, buffer_.size() - start);
  buffer_.erase(0, start + took);  // keeps only bytes after the frame
  consumed_ = 0;
  if (buffer_.capacity() > kKeptCapacity) buffer_.shrink_to_fit();
}

size_t FrameDecoder::AppendToLarge(const char* data, size_t size) {
  size_t took = 0;
  while (took < size && large_received_ < large_length_) {
    auto& pieces = large_.pieces;
    if (pieces.empty() || pieces.back().size() == kFramePieceBytes) {
      pieces.emplace_back();
      const size_t piece_bytes = std::min(kFramePieceBytes, large_length_ - large_received_);
      pieces.back().reserve(piece_bytes);
      // The bytes come from a peer that may stop after the first byte of a huge page, and the
      // budget of unfinished frames counts bytes received: small pages only, even where
      // every mapping gets huge pages by default.
      KeepSmallPages(pieces.back().data(), piece_bytes);
    }
    std::string& piece = pieces.back();
    const size_t step =
        std::min({size - took, kFramePieceBytes - piece.size(), large_length_ - large_received_});
    piece.append(data + took, step);
    took += step;
    large_received_ += step;
  }
  return took;
}

absl::StatusOr<std::optional<FramePayload>> FrameDecoder::Next() {
  if (in_large_) {
    if (large_received_ < large_length_) return std::optional<FramePayload>();
    FramePayload frame = std::move(large_);
    large_ = FramePayload();
    in_large_ = false;
    large_length_ = 0;
    large_received_ = 0;
    StartLargeFrame();  // the bytes after it may be the start of another
    return std::optional<FramePayload>(std::move(frame));
  }
  size_t available = buffer_.size() - consumed_;
  if (available < kHeaderBytes) return std::optional<FramePayload>();
  uint32_t length =
      DecodeLength(reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_));
  if (length > max_bytes_) return FrameTooLarge(length, max_bytes_);
  if (available - kHeaderBytes < length) return std::optional<FramePayload>();
  FramePayload frame;
  if (consumed_ == 0 && available == kHeaderBytes + static_cast<size_t>(length)) {
    // The buffer is exactly this frame (the usual case): hand it over without a copy.
    frame.pieces.push_back(std::move(buffer_));
    frame.pieces[0].erase(0, kHeaderBytes);
    buffer_ = std::string();
    return std::optional<FramePayload>(std::move(frame));
  }
  frame.pieces.push_back(buffer_.substr(consumed_ + kHeaderBytes, length));
  consumed_ += kHeaderBytes + static_cast<size_t>(length);
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    // clear() keeps the capacity: without this, one large frame would pin its size in
    // memory for the channel's lifetime.
    if (buffer_.capacity() > kKeptCapacity) buffer_.shrink_to_fit();
    consumed_ = 0;
  } else if (consumed_ > (1 << 20)) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  StartLargeFrame();
  return std::optional<FramePayload>(std::move(frame));
}

absl::StatusOr<FramePayload> ReadFrameAsItArrives(ShmChannel& channel, FrameDecoder& decoder,
                                                  absl::Time deadline, absl::Duration progress) {
  absl::Time stall = absl::InfiniteFuture();
  for (;;) {
    absl::StatusOr<size_t> taken = channel.ReadAvailable(
        kFramePieceBytes,
        [&decoder](const char* untrusted, size_t size) { decoder.Append(untrusted, size); });
    if (!taken.ok()) return taken.status();
    absl::StatusOr<std::optional<FramePayload>> frame = decoder.Next();
    if (!frame.ok()) return frame.status();
    if (frame->has_value()) return **std::move(frame);
    const bool started = decoder.HasPartialFrame();
    if (started && (*taken > 0 || stall == absl::InfiniteFuture())) stall = absl::Now() + progress;
    absl::Status waited = channel.WaitReadable(started ? std::min(deadline, stall) : deadline);
    if (started && absl::IsCancelled(waited)) continue;
    if (started && absl::IsDeadlineExceeded(waited) && absl::Now() < deadline) {
      return absl::DataLossError(absl::StrCat("a frame stopped arriving (", decoder.Buffered(),
                                              " bytes of it came, then nothing for ",
                                              absl::FormatDuration(progress), ")"));
    }
    if (!waited.ok()) return waited;
  }
}

}  // namespace ffibox

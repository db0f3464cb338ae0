#include "core/framing.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ffibox {
namespace {

constexpr size_t kHeaderBytes = 4;

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

}  // namespace

absl::Status WriteFrame(ShmChannel& channel, absl::string_view payload, absl::Time deadline) {
  if (payload.size() > UINT32_MAX) {
    return absl::ResourceExhaustedError("frame larger than 4 GiB");
  }
  const uint32_t length = static_cast<uint32_t>(payload.size());
  const char header[kHeaderBytes] = {static_cast<char>(length), static_cast<char>(length >> 8),
                                     static_cast<char>(length >> 16),
                                     static_cast<char>(length >> 24)};
  const absl::string_view pieces[] = {absl::string_view(header, sizeof(header)), payload};
  return channel.Write(pieces, deadline);
}

absl::StatusOr<std::string> ReadFrame(ShmChannel& channel, size_t max_bytes, absl::Time deadline) {
  unsigned char header[kHeaderBytes];
  absl::Status status = channel.Read(reinterpret_cast<char*>(header), sizeof(header), deadline);
  if (!status.ok()) return status;
  const uint32_t length = DecodeLength(header);
  if (length > max_bytes) return FrameTooLarge(length, max_bytes);
  std::string payload(length, '\0');
  status = channel.Read(payload.data(), length, deadline);
  if (!status.ok()) return status;
  return payload;
}

size_t FrameDecoder::AnnouncedLength() const {
  if (buffer_.size() - consumed_ < kHeaderBytes) return 0;
  return DecodeLength(reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_));
}

void FrameDecoder::Append(const char* data, size_t size) {
  const size_t needed = buffer_.size() + size;
  if (needed > buffer_.capacity() && buffer_.size() - consumed_ >= kHeaderBytes) {
    // Grow geometrically, as a string would, but never past the end of the announced frame
    // (a string's doubling would hold up to twice a large frame). Grown only as bytes
    // arrive: an announced length alone reserves nothing.
    const size_t frame_end = consumed_ + kHeaderBytes + std::min(AnnouncedLength(), max_bytes_);
    buffer_.reserve(std::max(needed, std::min(frame_end, 2 * buffer_.capacity())));
  }
  buffer_.append(data, size);
}

absl::StatusOr<std::optional<std::string>> FrameDecoder::Next() {
  size_t available = buffer_.size() - consumed_;
  if (available < kHeaderBytes) return std::optional<std::string>();
  uint32_t length =
      DecodeLength(reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_));
  if (length > max_bytes_) return FrameTooLarge(length, max_bytes_);
  if (available - kHeaderBytes < length) return std::optional<std::string>();
  if (consumed_ == 0 && available == kHeaderBytes + static_cast<size_t>(length)) {
    // The buffer is exactly this frame (the usual case): hand it over without a copy.
    std::string frame = std::move(buffer_);
    frame.erase(0, kHeaderBytes);
    buffer_ = std::string();
    return std::optional<std::string>(std::move(frame));
  }
  std::string frame = buffer_.substr(consumed_ + kHeaderBytes, length);
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
  return std::optional<std::string>(std::move(frame));
}

}  // namespace ffibox

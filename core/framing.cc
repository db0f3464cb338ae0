#include "core/framing.h"

#include <errno.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace ffibox {
namespace {

absl::Status SendAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) {
        return absl::UnavailableError("channel closed by peer");
      }
      return absl::UnavailableError(absl::StrCat("channel write failed: ", strerror(errno)));
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Reads exactly `size` bytes. `*eof_at_start` is set when the stream ended before any byte.
absl::Status RecvAll(int fd, char* data, size_t size, bool* eof_at_start) {
  size_t got = 0;
  *eof_at_start = false;
  while (got < size) {
    ssize_t n = recv(fd, data + got, size - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("channel read failed: ", strerror(errno)));
    }
    if (n == 0) {
      *eof_at_start = got == 0;
      return absl::UnavailableError(got == 0 ? "channel closed by peer"
                                             : "channel closed in the middle of a frame");
    }
    got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

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

absl::Status WriteFrame(int fd, absl::string_view payload) {
  if (payload.size() > UINT32_MAX) {
    return absl::ResourceExhaustedError("frame larger than 4 GiB");
  }
  uint32_t length = static_cast<uint32_t>(payload.size());
  unsigned char header[4] = {
      static_cast<unsigned char>(length), static_cast<unsigned char>(length >> 8),
      static_cast<unsigned char>(length >> 16), static_cast<unsigned char>(length >> 24)};
  absl::Status status = SendAll(fd, reinterpret_cast<const char*>(header), sizeof(header));
  if (!status.ok()) return status;
  return SendAll(fd, payload.data(), payload.size());
}

absl::StatusOr<std::string> ReadFrame(int fd, size_t max_bytes) {
  unsigned char header[4];
  bool eof = false;
  absl::Status status = RecvAll(fd, reinterpret_cast<char*>(header), sizeof(header), &eof);
  if (!status.ok()) return status;
  uint32_t length = DecodeLength(header);
  if (length > max_bytes) return FrameTooLarge(length, max_bytes);
  std::string payload(length, '\0');
  status = RecvAll(fd, payload.data(), length, &eof);
  if (!status.ok()) return status;
  return payload;
}

size_t FrameDecoder::AnnouncedLength() const {
  if (buffer_.size() - consumed_ < 4) return 0;
  return DecodeLength(reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_));
}

void FrameDecoder::Append(const char* data, size_t size) {
  const size_t needed = buffer_.size() + size;
  if (needed > buffer_.capacity() && buffer_.size() - consumed_ >= 4) {
    // Grow geometrically, as a string would, but never past the end of the announced frame
    // (a string's doubling would hold up to twice a large frame). Grown only as bytes
    // arrive: an announced length alone reserves nothing.
    const size_t frame_end = consumed_ + 4 + std::min(AnnouncedLength(), max_bytes_);
    buffer_.reserve(std::max(needed, std::min(frame_end, 2 * buffer_.capacity())));
  }
  buffer_.append(data, size);
}

absl::StatusOr<std::optional<std::string>> FrameDecoder::Next() {
  size_t available = buffer_.size() - consumed_;
  if (available < 4) return std::optional<std::string>();
  uint32_t length =
      DecodeLength(reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_));
  if (length > max_bytes_) return FrameTooLarge(length, max_bytes_);
  if (available - 4 < length) return std::optional<std::string>();
  if (consumed_ == 0 && available == 4 + static_cast<size_t>(length)) {
    // The buffer is exactly this frame (the usual case): hand it over without a copy.
    std::string frame = std::move(buffer_);
    frame.erase(0, 4);
    buffer_ = std::string();
    return std::optional<std::string>(std::move(frame));
  }
  std::string frame = buffer_.substr(consumed_ + 4, length);
  consumed_ += 4 + static_cast<size_t>(length);
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

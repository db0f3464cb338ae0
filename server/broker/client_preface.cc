#include "server/broker/client_preface.h"

#include <algorithm>
#include <cstdint>

namespace ffibox {
namespace {

constexpr absl::string_view kPreface("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
constexpr size_t kFrameHeaderBytes = 9;
constexpr uint8_t kSettingsFrame = 0x4;
constexpr uint8_t kAckFlag = 0x1;

}  // namespace

ClientPreface CheckClientPreface(absl::string_view received) {
  const size_t compared = std::min(received.size(), kPreface.size());
  if (received.substr(0, compared) != kPreface.substr(0, compared)) {
    return ClientPreface::kNotHttp2;
  }
  if (received.size() < kPreface.size() + kFrameHeaderBytes) return ClientPreface::kIncomplete;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(received[kPreface.size() + i]); };
  const size_t length = (size_t{byte(0)} << 16) | (size_t{byte(1)} << 8) | byte(2);
  const uint32_t stream =
      (uint32_t{byte(5)} << 24 | uint32_t{byte(6)} << 16 | uint32_t{byte(7)} << 8 | byte(8)) &
      0x7fffffff;
  // RFC 9113 3.4 and 6.5: the first frame is a SETTINGS frame on stream 0, not an
  // acknowledgement, its length a multiple of 6 within the initial maximum frame size.
  if (byte(3) != kSettingsFrame || (byte(4) & kAckFlag) != 0 || stream != 0 || length % 6 != 0 ||
      kPreface.size() + kFrameHeaderBytes + length > kMaxClientPrefaceBytes) {
    return ClientPreface::kNotHttp2;
  }
  return received.size() >= kPreface.size() + kFrameHeaderBytes + length
             ? ClientPreface::kComplete
             : ClientPreface::kIncomplete;
}

}  // namespace ffibox

// The input format of the fuzz targets that take two messages (request_validation_fuzzer,
// call_fuzzer): one options byte, a little-endian uint16 length n, n bytes of the first
// serialized message, then the second serialized message up to the end.
#ifndef FFIBOX_FUZZ_FRAMED_INPUT_H_
#define FFIBOX_FUZZ_FRAMED_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

namespace ffibox {
namespace fuzz {

struct FramedInput {
  uint8_t options = 0;
  std::string first;
  std::string second;
};

// Splits `data`; false when it is shorter than the header (a length past the end is cut).
inline bool SplitFramedInput(const uint8_t* data, size_t size, FramedInput* out) {
  if (size < 3) return false;
  const size_t first_size = std::min<size_t>(data[1] | (data[2] << 8), size - 3);
  out->options = data[0];
  out->first.assign(reinterpret_cast<const char*>(data) + 3, first_size);
  out->second.assign(reinterpret_cast<const char*>(data) + 3 + first_size, size - 3 - first_size);
  return true;
}

// The bytes SplitFramedInput splits into `input`. Requires input.first of at most 65535 bytes.
inline std::string JoinFramedInput(const FramedInput& input) {
  std::string joined;
  joined.push_back(static_cast<char>(input.options));
  joined.push_back(static_cast<char>(input.first.size() & 0xFF));
  joined.push_back(static_cast<char>(input.first.size() >> 8));
  return joined + input.first + input.second;
}

}  // namespace fuzz
}  // namespace ffibox

#endif  // FFIBOX_FUZZ_FRAMED_INPUT_H_

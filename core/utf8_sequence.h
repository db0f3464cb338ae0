// The one UTF-8 sequence decoder that core/utf8 (strict text conversion) and core/errors
// (messages made fit for a proto string) share: well-formed means what protobuf takes in a
// string field, no overlong form, no surrogate, nothing above U+10FFFF.
#ifndef FFIBOX_CORE_UTF8_SEQUENCE_H_
#define FFIBOX_CORE_UTF8_SEQUENCE_H_

#include <cstddef>
#include <cstdint>

#include "absl/strings/string_view.h"

namespace ffibox {

struct Utf8Sequence {
  uint32_t code_point = 0;
  size_t length = 0;  // 0: `text` does not start with a well-formed sequence
};

// The sequence `text` (not empty) starts with.
inline Utf8Sequence DecodeUtf8Sequence(absl::string_view text) {
  const auto lead = static_cast<unsigned char>(text[0]);
  if (lead < 0x80) return {lead, 1};
  uint32_t code_point;
  size_t length;
  uint32_t least;
  if ((lead & 0xE0) == 0xC0) {
    code_point = lead & 0x1F, length = 2, least = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    code_point = lead & 0x0F, length = 3, least = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    code_point = lead & 0x07, length = 4, least = 0x10000;
  } else {
    return {};
  }
  if (text.size() < length) return {};
  for (size_t i = 1; i < length; ++i) {
    const auto next = static_cast<unsigned char>(text[i]);
    if ((next & 0xC0) != 0x80) return {};
    code_point = (code_point << 6) | (next & 0x3F);
  }
  if (code_point < least || code_point > 0x10FFFF ||
      (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return {};
  }
  return {code_point, length};
}

}  // namespace ffibox

#endif  // FFIBOX_CORE_UTF8_SEQUENCE_H_

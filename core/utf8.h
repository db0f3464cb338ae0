// Strict conversion between UTF-8 and wchar_t text (UTF-32 on Linux). Marshalling uses it for
// WSTRING arguments and results; the worker's ReadString uses it for wide strings; the C++
// client uses the std::u32string forms for its wide-string parameters, results and reads.
#ifndef FFIBOX_CORE_UTF8_H_
#define FFIBOX_CORE_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// Decodes UTF-8 `text` into `out`, which must hold at least text.size() units; sets `*count`
// to the number written (no NUL is added). Refuses overlong forms, surrogates and values
// above U+10FFFF with INVALID_ARGUMENT (no field; callers prefix theirs).
absl::Status DecodeUtf8(absl::string_view text, wchar_t* out, size_t* count);

// Decodes UTF-8 `text` into UTF-32; INVALID_ARGUMENT "malformed UTF-8 at byte 3" (no field)
// for what the form above refuses.
absl::StatusOr<std::u32string> DecodeUtf8(absl::string_view text);

// OK when `text` is well-formed UTF-8 (what a protobuf `string` field must hold), else
// INVALID_ARGUMENT at `field`: "malformed UTF-8 at byte 3".
absl::Status CheckUtf8(absl::string_view field, absl::string_view text);

// Encodes UTF-32 `text` as UTF-8 into `out`. Returns false, leaving `out` partly written, if
// a unit is a surrogate or above U+10FFFF (not a Unicode scalar value).
bool EncodeUtf8(const std::u32string& text, std::string* out);

// Encodes UTF-32 `text` as UTF-8; INVALID_ARGUMENT (no field) naming the first unit that is
// not a Unicode scalar value and its index.
absl::StatusOr<std::string> EncodeUtf8(std::u32string_view text);

}  // namespace ffibox

#endif  // FFIBOX_CORE_UTF8_H_

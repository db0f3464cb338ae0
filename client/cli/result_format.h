// Prints call results the way `ffibox call` shows them on stdout.
//
// Integers in decimal, `_Bool` as true/false, `char` as a quoted character ('b'), float
// with 9 and double / long double with 17 significant digits (%.9g / %.17g, enough to read
// the exact value back), `char*` as a C-quoted string ("hi\n"), `wchar_t*` as L"..." in
// UTF-8, pointers as 0x... and NULL as NULL. The value comes from the server, so a value
// of the wrong kind is reported (INTERNAL), not trusted.
#ifndef FFIBOX_CLIENT_CLI_RESULT_FORMAT_H_
#define FFIBOX_CLIENT_CLI_RESULT_FORMAT_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace cli {

// Formats `value`, the result of a function returning `type`. String results must already
// be bytes_value / text_value (or a NULL pointer); INTERNAL for a value of the wrong kind.
absl::StatusOr<std::string> FormatResult(const v1::Type& type, const v1::Value& value);

// `bytes` between double quotes with C escapes for quotes, backslashes and non-printable
// bytes; bytes >= 0x80 are kept when `keep_utf8`, else escaped as \xNN.
std::string CQuote(absl::string_view bytes, bool keep_utf8);

// A wchar_t string's units between double quotes, as a wide literal's contents: what does not
// print as itself (controls, bidirectional overrides, zero-width characters, a lone
// surrogate) escaped by its code point as \uXXXX or \UXXXXXXXX.
std::string WideQuote(std::u32string_view units);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_RESULT_FORMAT_H_

// Turns the argument words of `ffibox call` into protocol Values for a declared signature.
//
// Fixed parameters take their type from the declaration; each variadic argument carries its
// own type as `TYPE:VALUE` (e.g. `int:5`, `double:2.5`, `const char*:hi`), split at the
// first ':', and the C default argument promotions apply (float -> double; _Bool, char,
// short and their unsigned forms -> int). Value syntax per type:
//   integers    decimal, 0x hex or 0 octal, range-checked; char types also take one character
//   _Bool       true/false/1/0
//   float types anything strtod reads (1.5, 1e-3, inf, nan)
//   char*       the word itself, byte for byte; wchar_t* the word as UTF-8 text; NULL the
//               null pointer (\NULL the text NULL)
//   pointers    NULL / null / 0, or an address (0x...) in the current worker generation
// The words are user input: every error is INVALID_ARGUMENT naming the argument.
#ifndef FFIBOX_CLIENT_CLI_ARGUMENT_VALUES_H_
#define FFIBOX_CLIENT_CLI_ARGUMENT_VALUES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/c_declaration.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace cli {

// Parses `text` as a value of `type`; pointers are addresses of worker `generation`.
absl::StatusOr<v1::Value> ParseArgumentValue(const v1::Type& type, absl::string_view text,
                                             uint64_t generation);

// The type a variadic argument of `type` is passed as (C default argument promotions).
v1::Type PromoteVariadic(const v1::Type& type);

// Builds the Call (args and variadic_types) for `declaration` from the argument words;
// INVALID_ARGUMENT for a wrong count or an unparsable word.
absl::StatusOr<v1::Call> BuildCall(const CDeclaration& declaration,
                                   const std::vector<std::string>& words, uint64_t generation);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_ARGUMENT_VALUES_H_

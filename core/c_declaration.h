// Parses C function declarations: the text a user types for `ffibox call`, and the
// protocol's ParseDeclaration op, which the broker answers for every client.
//
// `ParseCDeclaration("double cos(double x)")` yields the function's name and its protocol
// `Signature`. Accepted: the C spellings of every scalar ffibox knows (`unsigned int`,
// `long long`, `unsigned long long`, `size_t`, `ssize_t`, `int8_t`..`uint64_t`, `_Bool` /
// `bool`, `wchar_t`, `intptr_t`, `uintptr_t`, `ptrdiff_t`, ...), `const`/`volatile`
// qualifiers, optional parameter names, `(void)`, a trailing `...` for variadic functions,
// and pointers: `char*` is a C string (CSTRING), `wchar_t*` a wide string (WSTRING), any
// other `T*` a plain pointer (POINTER). Structs, arrays and function pointers are not
// accepted yet. Used by the CLI (`ffibox_main.cc`) and the broker (`session.cc`); the input
// is untrusted user text and every error is an INVALID_ARGUMENT naming what could not be
// understood.
#ifndef FFIBOX_CORE_C_DECLARATION_H_
#define FFIBOX_CORE_C_DECLARATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

struct CDeclaration {
  std::string name;         // the function's name (the symbol to resolve)
  v1::Signature signature;  // result unset for void
};

// Parses one function declaration, e.g. "int printf(const char *format, ...)"; a trailing
// ';' is allowed. INVALID_ARGUMENT when it is not a declaration this parser understands.
absl::StatusOr<CDeclaration> ParseCDeclaration(absl::string_view text);

// Parses one C type spelling used as a value type, e.g. "unsigned long" or "const char*";
// INVALID_ARGUMENT for unknown spellings and for `void`.
absl::StatusOr<v1::Type> ParseCType(absl::string_view text);

// The longest declaration ParseDeclarationRequest accepts.
inline constexpr size_t kMaxCDeclarationBytes = 4096;

// Answers the protocol's ParseDeclaration op: the declaration at most kMaxCDeclarationBytes,
// parsed, and its signature valid within `limits` (at most `limits.max_args` parameters).
// INVALID_ARGUMENT with field "parse_declaration.declaration" otherwise.
absl::StatusOr<v1::DeclarationParsed> ParseDeclarationRequest(const v1::ParseDeclaration& request,
                                                              const TypeLimits& limits);

// The C spelling of a type this parser produces (for messages), e.g. "unsigned long".
std::string CTypeName(const v1::Type& type);

}  // namespace ffibox

#endif  // FFIBOX_CORE_C_DECLARATION_H_

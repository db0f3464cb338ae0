// Prints a HeaderModel as a header for the C++ client (`ffibox bindgen --lang=cpp`).
//
// In namespace `name_space` the header defines: `kLibrary` and `LoadLibrary(session)`;
// macro and enum constants (`inline constexpr`); the records as C++ structs and unions with
// clang's layout (`static_assert`ed against the C++ compiler's) and, for those the client can
// carry by value (scalar, array and described-record fields only, no bit fields, at most 32
// fields), an FFIBOX_STRUCT / FFIBOX_UNION / FFIBOX_PACKED_STRUCT description; typedefs as
// `using` aliases; and, per function, a signature in namespace `signatures` and an accessor
// `NAME(library)` returning `library.Function<signatures::NAME>("NAME")`.
//
// A C parameter becomes the C++ client type that carries it: scalars and enums by value;
// `char*` / `const char*` as strings; `T*` (T a scalar or described record) as
// `absl::Span<T>` (`const T*`: `absl::Span<const T>`), a block of any length; `T**` as
// `ffibox::RemotePtr*` (an out-pointer the library fills); other pointers (void*, opaque
// types, records that cannot be described, function pointers) as `ffibox::RemotePtr`. Results:
// char strings as `std::optional<std::string>`, other pointers as RemotePtr. Functions the
// client cannot type (variadic ones, `va_list`, records that cannot be described by value)
// are listed in a comment instead. The output depends only on its inputs.
#ifndef FFIBOX_CLIENT_CLI_CPP_BINDINGS_H_
#define FFIBOX_CLIENT_CLI_CPP_BINDINGS_H_

#include <string>

#include "client/cli/header_model.h"

namespace ffibox {
namespace cli {

// The C++ header for `model`, loading `library`, declaring into namespace `name_space`.
std::string CppBindings(const HeaderModel& model, const std::string& library,
                        const std::string& name_space);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_CPP_BINDINGS_H_

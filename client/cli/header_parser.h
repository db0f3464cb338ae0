// Reads C headers with libclang into a HeaderModel, for `ffibox bindgen`.
//
// The headers are compiled as C (gnu11) for the host, as the library was: every layout in the
// model is clang's. What the named headers declare is kept (records, enums, typedefs,
// functions, exported variables, object-like macros that clang evaluates to an integer,
// floating-point or string constant); records, enums and typedefs of other headers are kept
// only when something kept uses them (HeaderModel::*_emitted). Anonymous records get a name:
// the typedef's that names them (`typedef struct { ... } point;`), else `_anon_N` in order.
// Declarations whose types ffibox cannot carry (`__int128`, `_Complex`, vectors) are left out
// and listed in HeaderModel::skipped.
#ifndef FFIBOX_CLIENT_CLI_HEADER_PARSER_H_
#define FFIBOX_CLIENT_CLI_HEADER_PARSER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/header_model.h"

namespace ffibox {
namespace cli {

struct HeaderParseOptions {
  std::vector<std::string> headers;       // paths of the headers to read, in order
  std::vector<std::string> include_dirs;  // -I
  std::vector<std::string> defines;       // -D: NAME or NAME=VALUE
};

// Parses `options.headers` together (one translation unit that includes each in order).
// INVALID_ARGUMENT, with clang's error messages, when a header does not compile; NOT_FOUND
// when a header does not exist.
absl::StatusOr<HeaderModel> ParseHeaders(const HeaderParseOptions& options);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_HEADER_PARSER_H_

// `ffibox bindgen`: the command line of the binding generator, and running it.
//
//   ffibox bindgen --lang=python|cpp --library=LIB [--namespace=NS] HEADER... [-I DIR]
//                  [-D NAME[=VALUE]]
//
// Called by ffibox_main.cc with the words after `bindgen`; the generated source goes to
// stdout. Parsing reads user text: every problem is an INVALID_ARGUMENT saying what is wrong.
#ifndef FFIBOX_CLIENT_CLI_BINDGEN_COMMAND_H_
#define FFIBOX_CLIENT_CLI_BINDGEN_COMMAND_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/header_parser.h"

namespace ffibox {
namespace cli {

enum class BindingLanguage { kPython, kCpp };

struct BindgenRequest {
  BindingLanguage language = BindingLanguage::kPython;
  std::string library;        // what the bindings load: a path or a soname
  std::string cpp_namespace;  // --lang=cpp: the namespace of the declarations
  HeaderParseOptions parse;
};

// The usage text of the subcommand.
extern const char kBindgenUsage[];

// Reads the words after `bindgen`. INVALID_ARGUMENT for an unknown option or language, a
// missing --library or header, or an option without its value.
absl::StatusOr<BindgenRequest> ParseBindgenArguments(const std::vector<std::string>& words);

// Parses the headers and returns the bindings' source. The parser's errors (a header that
// does not compile: INVALID_ARGUMENT with clang's messages; NOT_FOUND) pass through.
absl::StatusOr<std::string> GenerateBindings(const BindgenRequest& request);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_BINDGEN_COMMAND_H_

// The command line's flag words checked before absl::ParseCommandLine reads them: absl's
// parser exits with status 1 on an unknown flag or a value that does not parse, where the
// CLI promises 2 for a bad command line (docs/cli.md). ffibox_main.cc calls it.
#ifndef FFIBOX_CLIENT_CLI_FLAG_WORDS_H_
#define FFIBOX_CLIENT_CLI_FLAG_WORDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ffibox {
namespace cli {

// Checks `words` (the flags of a command line, without the program's name) the way
// absl::ParseCommandLine would read them: `--name=value`, `--name` for a bool flag (and
// `--noname`), with one or two dashes; "--" ends them. Returns INVALID_ARGUMENT naming the
// word for an unknown flag, a flag that needs a value and has none, or a value its flag does
// not take (absl's reason). A flag whose value it checks is set to that value, as the parser
// would set it.
absl::Status CheckFlagWords(const std::vector<std::string>& words);

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_FLAG_WORDS_H_

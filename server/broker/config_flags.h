// ffiboxd's command-line flags for its settings, and how they change the configuration
// file's: a flag given on the command line replaces the file's value (--listen replaces its
// listeners; the list flags --allow_root, --waive_jail_layer, --jail_visible_path and
// --allow_env add to its lists, every occurrence counted). Flags not given leave the file
// as it is. The flags are defined here; ffiboxd_main.cc parses the command line.
#ifndef FFIBOX_SERVER_BROKER_CONFIG_FLAGS_H_
#define FFIBOX_SERVER_BROKER_CONFIG_FLAGS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "ffibox/config/v1/config.pb.h"

namespace ffibox {

// Applies the flags among `arguments` (the command line without argv[0], already parsed by
// absl::ParseCommandLine) to `config`. INVALID_ARGUMENT naming the flag for a negative,
// zero (where 0 is not a cap) or too large value.
absl::Status ApplyFlags(const std::vector<std::string>& arguments,
                        config::v1::ServerConfig* config);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_CONFIG_FLAGS_H_

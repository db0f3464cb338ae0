// Where ffiboxd looks for ffibox-worker when neither --worker nor the configuration's
// worker_path names it: the build tree keeps the two binaries side by side, an installation
// (scripts/install.sh, docs/install.md) keeps the worker out of PATH, in libexec/ffibox.
#ifndef FFIBOX_SERVER_BROKER_WORKER_LOCATION_H_
#define FFIBOX_SERVER_BROKER_WORKER_LOCATION_H_

#include <string>

#include "absl/strings/string_view.h"

namespace ffibox {

// The default worker binary for the ffiboxd at `server_path` (an absolute path): the
// executable `ffibox-worker` next to it, else `../libexec/ffibox/ffibox-worker` relative to
// its directory; when neither is executable, the first, so that the error names the
// ordinary place.
std::string DefaultWorkerPath(absl::string_view server_path);

// DefaultWorkerPath for this process's own executable (/proc/self/exe); `ffibox-worker`
// when that cannot be read.
std::string DefaultWorkerPathForSelf();

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_LOCATION_H_

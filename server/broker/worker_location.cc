#include "server/broker/worker_location.h"

#include <limits.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace ffibox {

std::string DefaultWorkerPath(absl::string_view server_path) {
  const absl::string_view directory = server_path.substr(0, server_path.rfind('/') + 1);
  const std::string beside = absl::StrCat(directory, "ffibox-worker");
  const std::string installed = absl::StrCat(directory, "../libexec/ffibox/ffibox-worker");
  for (const std::string& candidate : {beside, installed}) {
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return beside;
}

std::string DefaultWorkerPathForSelf() {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "ffibox-worker";
  return DefaultWorkerPath(absl::string_view(self, static_cast<size_t>(n)));
}

}  // namespace ffibox

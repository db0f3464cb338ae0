#include "server/jail/user_namespace.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace ffibox {
namespace {

absl::Status WriteProcFile(pid_t pid, const char* name, const std::string& content) {
  std::string path = absl::StrCat("/proc/", pid, "/", name);
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": ", strerror(errno)));
  ssize_t n = write(fd, content.data(), content.size());
  int saved = errno;
  close(fd);
  if (n != static_cast<ssize_t>(content.size())) {
    return absl::PermissionDeniedError(
        absl::StrCat("writing \"", content.substr(0, content.size() - 1), "\" to ", path, ": ",
                     n < 0 ? strerror(saved) : "short write"));
  }
  return absl::OkStatus();
}

}  // namespace

HostIds BrokerIds() { return {geteuid(), getegid()}; }

HostIds WorkerHostIds() { return geteuid() == 0 ? UnprivilegedWorkerIds() : BrokerIds(); }

absl::Status WriteUserNamespaceMaps(pid_t pid, HostIds ids) {
  if (geteuid() != 0) {
    absl::Status denied = WriteProcFile(pid, "setgroups", "deny\n");
    if (!denied.ok()) return denied;
  }
  absl::Status uid = WriteProcFile(pid, "uid_map", absl::StrCat("0 ", ids.uid, " 1\n"));
  if (!uid.ok()) return uid;
  return WriteProcFile(pid, "gid_map", absl::StrCat("0 ", ids.gid, " 1\n"));
}

}  // namespace ffibox

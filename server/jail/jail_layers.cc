#include "server/jail/jail_layers.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "server/jail/user_namespace.h"

namespace ffibox {
namespace {

constexpr JailLayer kNamespaceLayers[] = {JailLayer::kUserNamespace, JailLayer::kPidNamespace,
                                          JailLayer::kNetNamespace,  JailLayer::kIpcNamespace,
                                          JailLayer::kUtsNamespace,  JailLayer::kMountNamespace};

const char* CloneFlagName(int flag) {
  switch (flag) {
    case CLONE_NEWUSER:
      return "CLONE_NEWUSER";
    case CLONE_NEWPID:
      return "CLONE_NEWPID";
    case CLONE_NEWNET:
      return "CLONE_NEWNET";
    case CLONE_NEWIPC:
      return "CLONE_NEWIPC";
    case CLONE_NEWUTS:
      return "CLONE_NEWUTS";
    case CLONE_NEWNS:
      return "CLONE_NEWNS";
  }
  return "?";
}

// Clones a child into the namespace of `flag` that exits at once; for the user namespace
// the child waits until its maps are written. "" on success, else the reason.
std::string ProbeNamespace(int flag) {
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) != 0) return absl::StrCat("pipe: ", strerror(errno));
  long pid = syscall(SYS_clone, flag | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) {
    char byte;
    close(sync[1]);
    while (read(sync[0], &byte, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  int clone_errno = errno;
  close(sync[0]);
  std::string reason;
  if (pid < 0) {
    reason = absl::StrCat("clone(", CloneFlagName(flag), "): ", strerror(clone_errno));
  } else if (flag == CLONE_NEWUSER) {
    absl::Status mapped = WriteUserNamespaceMaps(static_cast<pid_t>(pid), UnprivilegedWorkerIds());
    if (!mapped.ok()) reason = std::string(mapped.message());
  }
  close(sync[1]);
  if (pid > 0) {
    while (waitpid(static_cast<pid_t>(pid), nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  return reason;
}

class HostLayers {
 public:
  static HostLayers& Get() {
    static HostLayers* layers = new HostLayers();  // never destroyed
    return *layers;
  }

  std::string Reason(JailLayer layer) {
    absl::MutexLock lock(&mu_);
    if (!probed_) {
      probed_ = true;
      for (JailLayer ns : kNamespaceLayers) {
        reasons_[static_cast<int>(ns)] = ProbeNamespace(JailLayerCloneFlag(ns));
      }
    }
    return reasons_[static_cast<int>(layer)];
  }

  void Mark(JailLayer layer, absl::string_view reason) {
    absl::MutexLock lock(&mu_);
    reasons_[static_cast<int>(layer)] = std::string(reason);
  }

 private:
  absl::Mutex mu_;
  bool probed_ ABSL_GUARDED_BY(mu_) = false;
  std::array<std::string, kJailLayerCount> reasons_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::string_view JailLayerName(JailLayer layer) {
  switch (layer) {
    case JailLayer::kUserNamespace:
      return "user namespace";
    case JailLayer::kPidNamespace:
      return "pid namespace";
    case JailLayer::kNetNamespace:
      return "net namespace";
    case JailLayer::kIpcNamespace:
      return "ipc namespace";
    case JailLayer::kUtsNamespace:
      return "uts namespace";
    case JailLayer::kMountNamespace:
      return "mount namespace";
    case JailLayer::kFilesystem:
      return "filesystem (pivot_root)";
    case JailLayer::kProc:
      return "/proc (fresh, pid namespace only)";
  }
  return "?";
}

int JailLayerCloneFlag(JailLayer layer) {
  switch (layer) {
    case JailLayer::kUserNamespace:
      return CLONE_NEWUSER;
    case JailLayer::kPidNamespace:
      return CLONE_NEWPID;
    case JailLayer::kNetNamespace:
      return CLONE_NEWNET;
    case JailLayer::kIpcNamespace:
      return CLONE_NEWIPC;
    case JailLayer::kUtsNamespace:
      return CLONE_NEWUTS;
    case JailLayer::kMountNamespace:
      return CLONE_NEWNS;
    default:
      return 0;
  }
}

bool JailLayerRequested(const JailOptions& options, JailLayer layer) {
  if (!options.enabled) return false;
  switch (layer) {
    case JailLayer::kUserNamespace:
      return options.user_namespace;
    case JailLayer::kPidNamespace:
      return options.pid_namespace;
    case JailLayer::kNetNamespace:
      return options.net_namespace;
    case JailLayer::kIpcNamespace:
      return options.ipc_namespace;
    case JailLayer::kUtsNamespace:
      return options.uts_namespace;
    case JailLayer::kMountNamespace:
      return options.mount_namespace;
    case JailLayer::kFilesystem:
      return options.mount_namespace;
    case JailLayer::kProc:
      return options.mount_namespace && options.pid_namespace;
  }
  return false;
}

std::string JailLayerUnavailableReason(JailLayer layer) { return HostLayers::Get().Reason(layer); }

void MarkJailLayerUnavailable(JailLayer layer, absl::string_view reason) {
  HostLayers::Get().Mark(layer, reason);
}

std::string DescribeJailLayers(const JailOptions& options) {
  if (!options.enabled) return "jail: OFF (workers are crash-isolated only)";
  std::vector<std::string> namespaces;
  std::vector<std::string> unavailable;
  for (JailLayer ns : kNamespaceLayers) {
    if (!JailLayerRequested(options, ns)) continue;
    std::string reason = JailLayerUnavailableReason(ns);
    std::string name(JailLayerName(ns));
    if (reason.empty()) {
      namespaces.push_back(name.substr(0, name.find(' ')));
    } else {
      unavailable.push_back(absl::StrCat(name, " (", reason, ")"));
    }
  }
  std::vector<std::string> parts;
  if (!namespaces.empty()) {
    parts.push_back(absl::StrCat(absl::StrJoin(namespaces, ", "), " namespaces"));
  }
  bool mount_ok = JailLayerUnavailableReason(JailLayer::kMountNamespace).empty();
  std::string fs_reason = JailLayerUnavailableReason(JailLayer::kFilesystem);
  if (JailLayerRequested(options, JailLayer::kFilesystem) && mount_ok && fs_reason.empty()) {
    parts.push_back(options.library_roots.empty()
                        ? "filesystem (pivot_root, whole filesystem read-only: no library roots)"
                        : absl::StrCat("filesystem (pivot_root, ", options.library_roots.size(),
                                       " library roots read-only, ", options.tmp_bytes >> 10,
                                       " KiB /tmp)"));
  } else if (!fs_reason.empty()) {
    unavailable.push_back(absl::StrCat("filesystem (", fs_reason, ")"));
  }
  parts.push_back(
      absl::StrCat("seccomp ", options.seccomp_policy,
                   options.extra_syscalls.empty()
                       ? ""
                       : absl::StrCat(" + ", absl::StrJoin(options.extra_syscalls, ","))));
  parts.push_back("no_new_privs");
  parts.push_back("rlimits");
  std::string line = absl::StrCat("jail: ", absl::StrJoin(parts, "; "));
  if (!unavailable.empty()) {
    absl::StrAppend(&line, "; unavailable: ", absl::StrJoin(unavailable, "; "));
  }
  return line;
}

}  // namespace ffibox

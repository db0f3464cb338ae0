#include "server/jail/jail_layers.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "server/jail/cgroups.h"
#include "server/jail/user_namespace.h"

namespace ffibox {
namespace {

constexpr JailLayer kNamespaceLayers[] = {JailLayer::kUserNamespace, JailLayer::kPidNamespace,
                                          JailLayer::kNetNamespace,  JailLayer::kIpcNamespace,
                                          JailLayer::kUtsNamespace,  JailLayer::kMountNamespace};

// Everything there is to know about each layer, in JailLayer order: the one place that
// names, keys, clone flags and configuration switches are listed.
struct LayerInfo {
  absl::string_view key;         // waivers, reports, SessionOpened.jail_layers
  absl::string_view name;        // messages
  absl::string_view clone_name;  // the clone flag's name, for probe failures
  int clone_flag;                // 0: not a namespace
  bool JailOptions::*requested;  // its switch in the configuration
};
const LayerInfo kLayers[kJailLayerCount] = {
    {"user", "user namespace", "CLONE_NEWUSER", CLONE_NEWUSER, &JailOptions::user_namespace},
    {"pid", "pid namespace", "CLONE_NEWPID", CLONE_NEWPID, &JailOptions::pid_namespace},
    {"net", "net namespace", "CLONE_NEWNET", CLONE_NEWNET, &JailOptions::net_namespace},
    {"ipc", "ipc namespace", "CLONE_NEWIPC", CLONE_NEWIPC, &JailOptions::ipc_namespace},
    {"uts", "uts namespace", "CLONE_NEWUTS", CLONE_NEWUTS, &JailOptions::uts_namespace},
    {"mount", "mount namespace", "CLONE_NEWNS", CLONE_NEWNS, &JailOptions::mount_namespace},
    {"filesystem", "filesystem (pivot_root)", "", 0, &JailOptions::filesystem},
    {"proc", "/proc (fresh, pid namespace only)", "", 0, &JailOptions::proc},
    {"cgroup", "cgroup (per worker pids, memory, idle cpu)", "", 0, &JailOptions::cgroup},
};

const LayerInfo& Info(JailLayer layer) { return kLayers[static_cast<int>(layer)]; }

// Clones a child into the namespace of `flag` (inside a new user namespace when
// `in_user_namespace`, as a worker's spawn does) that exits at once; for the user namespace
// the child first makes itself dumpable (so an unprivileged broker may write its maps) and
// waits until they are written. "" on success, else the reason.
std::string ProbeNamespace(JailLayer layer, bool in_user_namespace) {
  const int flag = Info(layer).clone_flag;
  int sync[2];
  int ready[2];
  if (pipe2(sync, O_CLOEXEC) != 0) return absl::StrCat("pipe: ", strerror(errno));
  if (pipe2(ready, O_CLOEXEC) != 0) {
    close(sync[0]);
    close(sync[1]);
    return absl::StrCat("pipe: ", strerror(errno));
  }
  const int flags = flag | (in_user_namespace ? CLONE_NEWUSER : 0);
  long pid = syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) {
    char byte = 'r';
    close(sync[1]);
    close(ready[0]);
    prctl(PR_SET_DUMPABLE, 1);
    (void)!write(ready[1], &byte, 1);
    while (read(sync[0], &byte, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  int clone_errno = errno;
  close(sync[0]);
  close(ready[1]);
  std::string reason;
  if (pid < 0) {
    reason = absl::StrCat("clone(", Info(layer).clone_name, "): ", strerror(clone_errno));
  } else if (flag == CLONE_NEWUSER) {
    char byte;
    while (read(ready[0], &byte, 1) < 0 && errno == EINTR) {
    }
    absl::Status mapped = WriteUserNamespaceMaps(static_cast<pid_t>(pid), WorkerHostIds());
    if (!mapped.ok()) reason = std::string(mapped.message());
  }
  close(ready[0]);
  close(sync[1]);
  if (pid > 0) {
    while (waitpid(static_cast<pid_t>(pid), nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  return reason;
}

class HostNamespaces {
 public:
  static HostNamespaces& Get() {
    static HostNamespaces* host = new HostNamespaces();  // never destroyed
    return *host;
  }

  std::string Reason(JailLayer layer, bool in_user_namespace) {
    if (JailLayerCloneFlag(layer) == 0) return "";
    absl::MutexLock lock(&mu_);
    Probes& probes = probes_[in_user_namespace ? 1 : 0];
    if (!probes.done) {
      probes.done = true;
      for (JailLayer ns : kNamespaceLayers) {
        probes.reasons[static_cast<int>(ns)] = ProbeNamespace(ns, in_user_namespace);
      }
    }
    return probes.reasons[static_cast<int>(layer)];
  }

 private:
  struct Probes {
    bool done = false;
    std::array<std::string, kJailLayerCount> reasons;
  };

  absl::Mutex mu_;
  // Without and with a new user namespace around each namespace probed.
  std::array<Probes, 2> probes_ ABSL_GUARDED_BY(mu_);
};

constexpr absl::string_view kJailLayerPayload = "type.ffibox.dev/jail_layer";

bool* LayerSwitch(JailOptions* options, JailLayer layer) {
  return &(options->*Info(layer).requested);
}

// The layer `layer` cannot exist without, if any.
std::optional<JailLayer> Prerequisite(JailLayer layer) {
  if (layer == JailLayer::kFilesystem) return JailLayer::kMountNamespace;
  if (layer == JailLayer::kProc) return JailLayer::kFilesystem;
  return std::nullopt;
}

bool Waived(const std::vector<std::string>& waivers, JailLayer layer) {
  return std::find(waivers.begin(), waivers.end(), JailLayerKey(layer)) != waivers.end();
}

absl::Status NotWaivedError(JailLayer layer, absl::string_view reason) {
  return absl::FailedPreconditionError(absl::StrCat(
      "the jail's ", JailLayerName(layer), " is unavailable on this host: ", reason,
      ". ffiboxd runs no worker with a weaker jail than configured; to run without this "
      "layer anyway, waive it by name: --waive_jail_layer=",
      JailLayerKey(layer), " (or jail.waive_layers in the configuration file)"));
}

}  // namespace

absl::string_view JailLayerName(JailLayer layer) { return Info(layer).name; }

int JailLayerCloneFlag(JailLayer layer) { return Info(layer).clone_flag; }

bool JailLayerRequested(const JailOptions& options, JailLayer layer) {
  return options.enabled && options.*Info(layer).requested;
}

absl::string_view JailLayerKey(JailLayer layer) { return Info(layer).key; }

std::optional<JailLayer> JailLayerByKey(absl::string_view key) {
  for (int i = 0; i < kJailLayerCount; ++i) {
    if (JailLayerKey(static_cast<JailLayer>(i)) == key) return static_cast<JailLayer>(i);
  }
  return std::nullopt;
}

std::string JailLayerUnavailableReason(JailLayer layer, bool in_user_namespace) {
  if (layer == JailLayer::kCgroup) return CgroupUnavailableReason();
  return HostNamespaces::Get().Reason(layer, in_user_namespace);
}

absl::Status DecideJailLayers(JailOptions* options, const std::vector<std::string>& waivers) {
  for (const std::string& waiver : waivers) {
    if (!JailLayerByKey(waiver).has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown jail layer \"", waiver,
          "\" in a waiver (the layers: user, pid, net, ipc, uts, mount, filesystem, proc, "
          "cgroup)"));
    }
  }
  if (!options->enabled) return absl::OkStatus();
  for (int i = 0; i < kJailLayerCount; ++i) {
    JailLayer layer = static_cast<JailLayer>(i);
    if (!JailLayerRequested(*options, layer)) continue;
    // Decided before the other namespaces (it comes first): the worker's spawn creates them
    // inside its user namespace when it has one; an unprivileged broker always does.
    const bool in_user_namespace =
        geteuid() != 0 || JailLayerRequested(*options, JailLayer::kUserNamespace);
    std::string reason = JailLayerUnavailableReason(layer, in_user_namespace);
    std::optional<JailLayer> needs = Prerequisite(layer);
    if (reason.empty() && needs.has_value() && !JailLayerRequested(*options, *needs)) {
      reason = absl::StrCat("it needs the ", JailLayerName(*needs), ", which is off");
    }
    if (layer == JailLayer::kProc && reason.empty() &&
        !JailLayerRequested(*options, JailLayer::kPidNamespace)) {
      reason = "it needs the pid namespace, which is off";
    }
    if (reason.empty()) continue;
    absl::Status waived = WaiveFailedLayer(options, waivers, layer, reason);
    if (!waived.ok()) return waived;
  }
  CapProcessesWithoutCgroup(options);
  return absl::OkStatus();
}

bool KernelCountsProcessesPerUserNamespace() {
  struct utsname name;
  int major = 0;
  int minor = 0;
  if (uname(&name) != 0 || sscanf(name.release, "%d.%d", &major, &minor) != 2) return false;
  return major > 5 || (major == 5 && minor >= 14);
}

void CapProcessesWithoutCgroup(JailOptions* options) {
  if (options->enabled && options->processes == 0 &&
      !JailLayerRequested(*options, JailLayer::kCgroup) &&
      JailLayerRequested(*options, JailLayer::kUserNamespace) &&
      KernelCountsProcessesPerUserNamespace()) {
    options->processes = options->worker_pids_max;
  }
}

absl::Status WaiveFailedLayer(JailOptions* options, const std::vector<std::string>& waivers,
                              JailLayer layer, absl::string_view reason) {
  if (!Waived(waivers, layer)) return NotWaivedError(layer, reason);
  *LayerSwitch(options, layer) = false;
  options->waived.push_back(absl::StrCat(JailLayerKey(layer), " (", reason, ")"));
  return absl::OkStatus();
}

std::vector<std::string> ActiveJailLayers(const JailOptions& options) {
  std::vector<std::string> keys;
  if (!options.enabled) return keys;
  for (int i = 0; i < kJailLayerCount; ++i) {
    JailLayer layer = static_cast<JailLayer>(i);
    if (JailLayerRequested(options, layer)) keys.emplace_back(JailLayerKey(layer));
  }
  keys.emplace_back("seccomp");
  keys.emplace_back("no_new_privs");
  keys.emplace_back("rlimits");
  return keys;
}

absl::Status JailLayerError(JailLayer layer, absl::string_view reason) {
  absl::Status status = absl::FailedPreconditionError(
      absl::StrCat("the jail's ", JailLayerName(layer), " could not be applied: ", reason));
  status.SetPayload(kJailLayerPayload, absl::Cord(JailLayerKey(layer)));
  return status;
}

std::optional<JailLayer> FailedJailLayer(const absl::Status& status) {
  auto key = status.GetPayload(kJailLayerPayload);
  if (!key.has_value()) return std::nullopt;
  return JailLayerByKey(std::string(*key));
}

absl::Status SeccompJailError(absl::string_view reason) {
  absl::Status status =
      absl::FailedPreconditionError(absl::StrCat("the jail's seccomp filter: ", reason));
  status.SetPayload(kJailLayerPayload, absl::Cord("seccomp"));
  return status;
}

bool IsJailError(const absl::Status& status) {
  return status.GetPayload(kJailLayerPayload).has_value();
}

std::string DescribeJailLayers(const JailOptions& options) {
  if (!options.enabled) return "jail: OFF (workers are crash-isolated only)";
  std::vector<std::string> namespaces;
  for (JailLayer ns : kNamespaceLayers) {
    if (JailLayerRequested(options, ns)) namespaces.emplace_back(JailLayerKey(ns));
  }
  std::vector<std::string> parts;
  if (!namespaces.empty()) {
    parts.push_back(absl::StrCat(absl::StrJoin(namespaces, ", "), " namespaces"));
  }
  if (JailLayerRequested(options, JailLayer::kFilesystem)) {
    parts.push_back(
        absl::StrCat("filesystem (pivot_root: system libraries and data read-only",
                     options.visible_paths.empty()
                         ? ""
                         : absl::StrCat(" + ", options.visible_paths.size(), " visible paths"),
                     ", ", options.tmp_bytes >> 10, " KiB /tmp)"));
  }
  if (JailLayerRequested(options, JailLayer::kProc)) parts.push_back("fresh /proc");
  parts.push_back(
      absl::StrCat("seccomp ", options.seccomp_policy,
                   options.extra_syscalls.empty()
                       ? ""
                       : absl::StrCat(" + ", absl::StrJoin(options.extra_syscalls, ","))));
  parts.push_back("no_new_privs");
  parts.push_back("rlimits");
  parts.push_back(absl::StrCat("worker uid ", DescribeWorkerIds()));
  std::string line = absl::StrCat("jail: ", absl::StrJoin(parts, "; "));
  if (!options.waived.empty()) {
    absl::StrAppend(&line, "; WAIVED: ", absl::StrJoin(options.waived, "; "));
  }
  return line;
}

}  // namespace ffibox

// The layers of the worker jail: their names, which ones the configuration asks for, and
// the startup decision that fixes, once, which layers every worker gets.
//
// Fail closed: ffiboxd calls DecideJailLayers at startup. A layer the configuration asks
// for and the host cannot provide stops ffiboxd with a message naming it, unless the
// operator waived that layer by name; a waived, missing layer is turned off in the options
// and listed in JailOptions::waived. After that nothing changes: a worker whose setup fails
// is not started (JailLayerError names the layer), and no failure of one worker changes
// what later workers get.
#ifndef FFIBOX_SERVER_JAIL_JAIL_LAYERS_H_
#define FFIBOX_SERVER_JAIL_JAIL_LAYERS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/jail/jail_options.h"

namespace ffibox {

enum class JailLayer {
  kUserNamespace,
  kPidNamespace,
  kNetNamespace,
  kIpcNamespace,
  kUtsNamespace,
  kMountNamespace,
  kFilesystem,  // the pivot_root view (needs the mount namespace)
  kProc,        // a fresh /proc in that view (needs the pid namespace)
  kCgroup,      // a cgroup per worker, made by the broker (server/jail/cgroups.h)
};
inline constexpr int kJailLayerCount = 9;

// "user namespace", "filesystem (pivot_root)", ...
absl::string_view JailLayerName(JailLayer layer);

// The short name used in waivers, reports and the OpenSession reply: "user", "pid", "net",
// "ipc", "uts", "mount", "filesystem", "proc".
absl::string_view JailLayerKey(JailLayer layer);

// The layer whose JailLayerKey is `key`, if any.
std::optional<JailLayer> JailLayerByKey(absl::string_view key);

// The clone flag of a namespace layer; 0 for the others.
int JailLayerCloneFlag(JailLayer layer);

// Whether `options` asks for `layer` (each layer by its switch, all off when the jail is).
bool JailLayerRequested(const JailOptions& options, JailLayer layer);

// "" when the host allows the namespace `layer` (probed once per process by cloning a
// child into it; for the user namespace, also writing its maps), else why not
// ("clone(CLONE_NEWUSER): Operation not permitted"); for the cgroup layer, whether this
// process can make a worker's cgroup. "" for the filesystem and /proc, which only a real
// worker can test (ffiboxd starts one at startup). `in_user_namespace`: the worker gets the
// namespace in the same clone as a new user namespace (it has the user layer, or this
// process is not root), which needs no privilege; root without it needs CAP_SYS_ADMIN.
std::string JailLayerUnavailableReason(JailLayer layer, bool in_user_namespace);

// Checks `waivers` (layer keys) and turns off each requested namespace layer the host
// cannot provide when it is waived, recording it in `options->waived`. A layer whose
// prerequisite is off must be waived too. FAILED_PRECONDITION naming the layer, the reason
// and the waiver when a missing layer is not waived; INVALID_ARGUMENT for an unknown key.
absl::Status DecideJailLayers(JailOptions* options, const std::vector<std::string>& waivers);

// Whether RLIMIT_NPROC counts the tasks of one user namespace (Linux 5.14 and later), so
// that a worker in its own user namespace is capped alone.
bool KernelCountsProcessesPerUserNamespace();

// The cap on one worker's threads and processes where no cgroup holds it: RLIMIT_NPROC at
// `worker_pids_max` when the worker has its own user namespace and the kernel counts per
// namespace (the worker's tasks alone, its init included); otherwise `processes` stays as
// it is. Called by DecideJailLayers once the layers are decided.
void CapProcessesWithoutCgroup(JailOptions* options);

// Turns off `layer` after a real worker showed the host cannot provide it (`reason`), if
// it is waived; otherwise returns the FAILED_PRECONDITION that stops ffiboxd.
absl::Status WaiveFailedLayer(JailOptions* options, const std::vector<std::string>& waivers,
                              JailLayer layer, absl::string_view reason);

// The keys of the layers every worker gets under `options`, plus "seccomp",
// "no_new_privs" and "rlimits" when the jail is on: what OpenSession reports.
std::vector<std::string> ActiveJailLayers(const JailOptions& options);

// The error for a worker whose `layer` could not be applied: FAILED_PRECONDITION with the
// layer's key attached (FailedJailLayer reads it back), so sessions answer
// JAIL_UNAVAILABLE.
absl::Status JailLayerError(JailLayer layer, absl::string_view reason);

// The layer a JailLayerError names, or nullopt for any other status.
std::optional<JailLayer> FailedJailLayer(const absl::Status& status);

// The error for a worker whose seccomp filter could not be installed or handed to the
// broker (FAILED_PRECONDITION; IsJailError is true).
absl::Status SeccompJailError(absl::string_view reason);

// Whether `status` says a worker's jail could not be applied (JailLayerError or
// SeccompJailError): sessions answer JAIL_UNAVAILABLE.
bool IsJailError(const absl::Status& status);

// One line for ffiboxd's startup output, e.g. "jail: user, pid, net, ipc, uts, mount
// namespaces; filesystem (pivot_root, ...); /proc; seccomp strict; no_new_privs; rlimits"
// plus "; WAIVED: <layer> (<reason>)" for each waived layer.
std::string DescribeJailLayers(const JailOptions& options);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_JAIL_LAYERS_H_

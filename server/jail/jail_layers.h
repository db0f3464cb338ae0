// Which layers of the worker jail the host allows, why the others are missing, and the
// one-line description of them that ffiboxd prints at startup.
//
// Each namespace is probed once per process (a child cloned into it that exits at once;
// for the user namespace, also writing its uid/gid maps). The filesystem and /proc layers
// are known to fail only when a real worker's setup fails; the launcher records that here
// and later workers start without the layer. Thread-safe.
#ifndef FFIBOX_SERVER_JAIL_JAIL_LAYERS_H_
#define FFIBOX_SERVER_JAIL_JAIL_LAYERS_H_

#include <string>

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
};
inline constexpr int kJailLayerCount = 8;

// "user namespace", "filesystem (pivot_root)", ...
absl::string_view JailLayerName(JailLayer layer);

// The clone flag of a namespace layer; 0 for the others.
int JailLayerCloneFlag(JailLayer layer);

// Whether `options` asks for `layer` (namespaces by their switches; the filesystem with
// the mount namespace; /proc with the filesystem and the pid namespace).
bool JailLayerRequested(const JailOptions& options, JailLayer layer);

// "" when the host allows `layer` as far as is known, else why not ("clone(CLONE_NEWUSER):
// Operation not permitted"). Probes the namespaces on first use.
std::string JailLayerUnavailableReason(JailLayer layer);

// Records that `layer` failed on this host, with the reason; later workers skip it.
void MarkJailLayerUnavailable(JailLayer layer, absl::string_view reason);

// One line for ffiboxd's startup output, e.g. "jail: user, pid, net, ipc, uts, mount
// namespaces; filesystem (pivot_root, 2 library roots); seccomp strict; no_new_privs;
// rlimits" plus "; unavailable: <layer> (<reason>)" for each layer the host refuses.
std::string DescribeJailLayers(const JailOptions& options);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_JAIL_LAYERS_H_

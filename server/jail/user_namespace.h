// The uid/gid maps of a worker's user namespace, written by the broker for its child.
//
// A worker maps its root (uid and gid 0 inside) to one host id: nobody (65534) when it
// sees only its library roots, so that even a file the view shows by mistake is read
// with no more rights than "other"; the broker's own ids when the jail shows the whole
// filesystem (no library roots configured), because the broker's files (bazel outputs
// under a 0700 home, for instance) must stay readable then.
#ifndef FFIBOX_SERVER_JAIL_USER_NAMESPACE_H_
#define FFIBOX_SERVER_JAIL_USER_NAMESPACE_H_

#include <sys/types.h>

#include "absl/status/status.h"

namespace ffibox {

// The host ids that the worker's root is mapped to.
struct HostIds {
  uid_t uid;
  gid_t gid;
};

inline constexpr uid_t kNobodyId = 65534;

// nobody/nogroup (65534).
inline HostIds UnprivilegedWorkerIds() { return {kNobodyId, kNobodyId}; }

// The broker's effective ids.
HostIds BrokerIds();

// Writes "0 <uid> 1" to /proc/<pid>/uid_map and "0 <gid> 1" to gid_map (setgroups stays
// allowed: the broker is privileged, and the worker drops its supplementary groups
// itself). Fails with the file and errno when the kernel refuses.
absl::Status WriteUserNamespaceMaps(pid_t pid, HostIds ids);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_USER_NAMESPACE_H_

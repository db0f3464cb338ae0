// The uid/gid maps of a worker's user namespace, written by the broker for its child.
//
// A worker maps its root (uid and gid 0 inside) to one host id. As root, that is nobody
// (65534): a file the view shows is read with no more rights than "other", and nothing
// the worker does runs as host root. As an ordinary user, the kernel lets the broker map
// only its own ids (without a setuid helper), so the worker's root is the user's uid; it
// keeps no capability outside its namespace, and the view, the pid namespace and the
// broker's PR_SET_DUMPABLE 0 keep it from the user's files and processes.
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

// The ids a worker's root maps to: nobody when the broker is root, else the broker's own.
HostIds WorkerHostIds();

// Writes "0 <uid> 1" to /proc/<pid>/uid_map and "0 <gid> 1" to gid_map. An unprivileged
// broker first writes "deny" to setgroups (the kernel requires it); a root broker leaves
// setgroups allowed and the worker drops its supplementary groups itself. The child must
// be dumpable (an unprivileged broker cannot open a non-dumpable child's maps). Fails with
// the file and errno when the kernel refuses.
absl::Status WriteUserNamespaceMaps(pid_t pid, HostIds ids);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_USER_NAMESPACE_H_

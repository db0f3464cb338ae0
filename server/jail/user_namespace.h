// The uid/gid maps of a worker's user namespace, written by the broker for its child.
//
// A worker maps its root (uid and gid 0 inside) to one host id that is never the broker's:
// - a root broker maps it to nobody (65534): a file the view shows is read with no more
//   rights than "other", and nothing the worker does runs as host root;
// - an unprivileged broker maps it to the first of the user's subordinate ids (/etc/subuid
//   and /etc/subgid, which Debian's useradd assigns) through the setuid helpers newuidmap
//   and newgidmap (package uidmap): the worker cannot read even the user's own files.
// Only when the user has no subordinate ids (or the helpers are missing) does an
// unprivileged broker map the worker to its own uid, the one id the kernel lets it map
// itself; the worker then holds no capability outside its namespace, and the view, the pid
// namespace and the broker's PR_SET_DUMPABLE 0 keep it from the user's files and processes.
// Which of these applies is decided once per process and reported by DescribeWorkerIds.
#ifndef FFIBOX_SERVER_JAIL_USER_NAMESPACE_H_
#define FFIBOX_SERVER_JAIL_USER_NAMESPACE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "server/jail/jail_process.h"  // kNobodyId

namespace ffibox {

// The host ids that the worker's root is mapped to, and how the maps are written.
struct HostIds {
  uid_t uid;
  gid_t gid;
  bool subordinate = false;  // written by newuidmap/newgidmap (unprivileged broker)
};

// nobody/nogroup (65534).
inline HostIds UnprivilegedWorkerIds() { return {kNobodyId, kNobodyId, false}; }

// The broker's effective ids.
HostIds BrokerIds();

// The ids a worker's root maps to (see the file comment), decided on first use.
HostIds WorkerHostIds();

// Whether a worker runs under another host uid than the broker (root's nobody, or a
// subordinate uid): then it cannot reopen a file only the broker may read.
bool WorkerIsAnotherUser();

// "65534 (nobody)", "100000 (a subordinate uid of yours)" or "1000 (yours: ...)".
std::string DescribeWorkerIds();

// Writes "0 <uid> 1" to /proc/<pid>/uid_map and "0 <gid> 1" to gid_map: directly for a root
// broker (setgroups stays allowed; the worker drops its supplementary groups itself),
// through newuidmap/newgidmap for subordinate ids, or after writing "deny" to setgroups
// (the kernel requires it) for the broker's own ids. The child must be dumpable (an
// unprivileged broker, and the helpers, cannot open a non-dumpable child's files). Fails
// with the file (or helper) and the reason when the kernel refuses.
absl::Status WriteUserNamespaceMaps(pid_t pid, HostIds ids);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_USER_NAMESPACE_H_

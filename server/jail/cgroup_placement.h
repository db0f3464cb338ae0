// Where the cgroup layer (server/jail/cgroups.h) puts ffiboxd's groups: decisions over
// what was read from /proc and what the kernel answered, with no file access of their own,
// so that any host can test them, whichever cgroup hierarchy it runs.
//
// On cgroup v2 a cgroup that holds processes cannot give controllers to its children (the
// "no internal processes" rule; only the root cgroup is exempt). A delegated cgroup (a
// systemd unit with Delegate=yes, a container's cgroup namespace root) holds ffiboxd
// itself, so ffiboxd first moves itself into a leaf child, BrokerLeafName, then enables the
// controllers in the cgroup it was given and makes its workers' tree there:
//
//   <delegated cgroup>/                 controllers enabled for the children
//     ffibox-<pid>-broker/              ffiboxd itself
//     ffibox-<pid>/                     the workers' tree (memory limit of all workers)
//       worker-0/ worker-1/ ...         one per worker
#ifndef FFIBOX_SERVER_JAIL_CGROUP_PLACEMENT_H_
#define FFIBOX_SERVER_JAIL_CGROUP_PLACEMENT_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace ffibox {

// The controllers the layer uses, in the order of CgroupHierarchies::v1.
inline constexpr const char* kCgroupControllers[] = {"pids", "memory", "cpu"};

// Where this process's cgroup of each hierarchy is, as a directory.
struct CgroupHierarchies {
  std::string v2;               // in the unified hierarchy, or "" without one
  std::vector<std::string> v1;  // per kCgroupControllers, "" when that hierarchy is missing
};

// Parses /proc/self/cgroup ("hierarchy-id:controllers:path" lines) and
// /proc/self/mountinfo (where each hierarchy is mounted, and from which of its paths).
// A hierarchy whose mount does not show this process's cgroup is reported missing.
CgroupHierarchies ParseCgroupHierarchies(absl::string_view proc_self_cgroup,
                                         absl::string_view mountinfo);

// "ffibox-<pid>": the parent of the worker groups of the ffiboxd with process id `pid`.
std::string WorkerTreeName(pid_t pid);

// "ffibox-<pid>-broker": the leaf that ffiboxd `pid` moves itself into on cgroup v2.
std::string BrokerLeafName(pid_t pid);

// The ffiboxd a group named WorkerTreeName or BrokerLeafName belongs to; nullopt for any
// other name.
std::optional<pid_t> OwnerOfGroup(absl::string_view name);

// The v2 cgroup whose children ffiboxd `pid` manages, given `own`, the directory of its
// cgroup: `own`, or `own`'s parent when `own` is ffiboxd's leaf there already (a second
// tree in the same process, such as the layer's startup probe followed by the real one).
std::string DelegatedV2Cgroup(const std::string& own, pid_t pid);

// What to do after enabling the controllers for the children of the delegated cgroup
// failed with `error` (an errno).
enum class ControllersRefused {
  kMoveBrokerToLeaf,  // EBUSY while ffiboxd is in the cgroup: leave it, then try again
  kFail,              // anything else, or EBUSY once ffiboxd has left: others are there
};
ControllersRefused AfterControllersRefused(int error, bool broker_in_leaf);

// The process ids listed in `procs` (a cgroup.procs file) other than `self`.
std::vector<pid_t> OtherProcesses(absl::string_view procs, pid_t self);

// Why the controllers cannot be had in the delegated cgroup `dir`, for the operator:
// `error` is the errno of the write to <dir>/cgroup.subtree_control, `others` the processes
// left in <dir>/cgroup.procs after ffiboxd moved out.
std::string ControllersRefusedMessage(const std::string& dir, int error,
                                      const std::vector<pid_t>& others);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_CGROUP_PLACEMENT_H_

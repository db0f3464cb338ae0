// Starting one worker process inside its jail: clone into the namespaces the host allows,
// write the user namespace's maps, build the filesystem view, drop privileges, exec.
//
// Called by WorkerProcess::Start (server/broker/worker_process.cc), which owns the descriptors and
// supplies the thread to clone from. The child runs in the broker's memory until it execs
// (CLONE_VM | CLONE_VFORK, as posix_spawn does), so a launch neither copies nor
// write-protects the broker's pages; only an unprivileged broker's child, which must be
// dumpable for its maps to be written, is a copy. With a pid namespace the child builds the
// view and execs ffibox-init (server/jail/init_main.cc), a small program beside the worker
// binary that becomes the namespace's init (pid 1, our code, never untrusted code): it forks
// the worker (pid 2), closes everything but its status pipe and relays the worker's wait
// status to the broker, so that the worker dies of its own signals (an init ignores signals
// it raises on itself) and the broker still learns how. Without one, the child execs the
// worker itself. Fail closed: the worker gets exactly the layers `jail` asks for (decided at
// startup, server/jail/jail_layers.h) or is not started; nothing here drops a layer. The
// worker applies rlimits and seccomp itself after exec (server/jail/worker_jail.h).
#ifndef FFIBOX_SERVER_JAIL_SPAWN_H_
#define FFIBOX_SERVER_JAIL_SPAWN_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/jail/jail_layers.h"
#include "server/jail/jail_options.h"

namespace ffibox {

// The worker's descriptors, each the caller's; the worker gets copies at fixed numbers and
// nothing else (in particular none of the broker's stdout, stderr or sockets).
struct WorkerSpawnRequest {
  int executable_fd = -1;  // the worker binary, O_PATH (exec'd with execveat)
  char* const* argv = nullptr;
  int stdin_fd = -1;           // becomes fd 0 (/dev/null)
  int stdout_fd = -1;          // becomes fd 1 (a pipe the broker drains)
  int stderr_fd = -1;          // becomes fd 2 (a pipe the broker drains)
  int channel_fd = -1;         // becomes fd 3 (the channel's hangup socket)
  int crash_fd = -1;           // becomes fd 4
  int descriptor_fd = -1;      // becomes fd 5 (descriptors passed with SCM_RIGHTS)
  int channel_memory_fd = -1;  // becomes fd 6 (the channel's memfd, core/shm_channel.h)
  // ffibox-init, O_PATH (exec'd with execveat): needed with a pid namespace. When it is -1,
  // why (the error of a worker start that needs it).
  int init_executable_fd = -1;
  std::string init_unavailable_reason;
};

// Which layers one worker got; each is active or absent with a reason.
struct SpawnedLayers {
  std::array<bool, kJailLayerCount> active{};
  std::array<std::string, kJailLayerCount> reasons;  // why an absent layer is absent
  bool unprivileged_ids = false;  // root broker: the worker runs as host uid/gid 65534
};

struct SpawnedWorker {
  pid_t pid = -1;            // the process to wait for (the init when relays_exit)
  int status_fd = -1;        // read end of the jail status pipe; the caller closes it
  bool relays_exit = false;  // pid is an init that relays the worker's status on status_fd
  pid_t worker_pid = -1;     // the host pid of the worker itself (== pid without an init)
  SpawnedLayers layers;
};

// Starts a closure on the long-lived launcher thread (see server/broker/worker_process.h) and
// returns at once; closures run one at a time, in order. It must not run the closure on
// the calling thread: the clone waits for the caller to write the child's maps.
using LauncherRun = std::function<void(std::function<void()>)>;

// Starts the worker described by `request` in the jail of `jail`. The caller keeps its
// descriptors (the child has copies). A layer that cannot be applied fails the start with
// JailLayerError (FAILED_PRECONDITION naming the layer); running out of descriptors,
// memory or processes with RESOURCE_EXHAUSTED; a missing or unusable ffibox-init with
// FAILED_PRECONDITION naming no layer (the host has the layer; the installation lacks its
// init); a child that gives no sign within `setup_timeout` with INTERNAL.
absl::StatusOr<SpawnedWorker> SpawnJailedWorker(const JailOptions& jail,
                                                const WorkerSpawnRequest& request,
                                                const LauncherRun& run_on_launcher,
                                                absl::Duration setup_timeout = absl::Seconds(10));

// Reads the worker's wait status relayed by its init on `status_fd`, if the init sent
// one. Non-blocking.
std::optional<int> ReadRelayedWaitStatus(int status_fd);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_SPAWN_H_

// A session's resource caps applied to a started worker from the broker with prlimit(2):
// the same caps the jail sets inside the worker, so that a worker started before its
// session (server/broker/worker_pool.h) and a worker started without a jail get them too. Limits
// are only ever lowered here.
#ifndef FFIBOX_SERVER_BROKER_WORKER_LIMITS_H_
#define FFIBOX_SERVER_BROKER_WORKER_LIMITS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace ffibox {

struct WorkerLimits {
  uint64_t address_space_bytes = 0;  // RLIMIT_AS; 0: unchanged
  // RLIMIT_CPU: SIGXCPU at this many seconds, SIGKILL one second later; 0: unchanged.
  uint64_t cpu_seconds = 0;
};

// Lowers the rlimits of process `pid` to `limits`. Requires the broker to own the process
// (or CAP_SYS_RESOURCE). INTERNAL naming the limit when prlimit fails.
absl::Status ApplyWorkerLimits(pid_t pid, const WorkerLimits& limits);

// Where no cgroup counts refused thread creations, tells the session when its worker is
// found at its cap on threads and processes (RLIMIT_NPROC, counted in the worker's own user
// namespace: server/jail/jail_layers.h) when a request ends: once, until the worker drops
// below it again. Counts the worker's threads and its init; a process the worker forked
// (the permissive policy) is not seen.
class ProcessCapWatch {
 public:
  // `worker_pid` is the worker's host pid; `other_tasks` the tasks of its namespace that
  // are not its threads (1 for the jail's init, else 0).
  ProcessCapWatch(pid_t worker_pid, uint64_t other_tasks, uint64_t cap)
      : worker_pid_(worker_pid), other_tasks_(other_tasks), cap_(cap) {}

  // As WorkerCgroup::NewLimitHits: the description of a new hit, or nothing.
  std::vector<std::string> NewLimitHits();

 private:
  const pid_t worker_pid_;
  const uint64_t other_tasks_;
  const uint64_t cap_;
  bool at_cap_ = false;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_LIMITS_H_

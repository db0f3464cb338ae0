// A session's resource caps applied to a started worker from the broker with prlimit(2):
// the same caps the jail sets inside the worker, so that a worker started before its
// session (server/worker_pool.h) and a worker started without a jail get them too. Limits
// are only ever lowered here.
#ifndef FFIBOX_SERVER_WORKER_LIMITS_H_
#define FFIBOX_SERVER_WORKER_LIMITS_H_

#include <sys/types.h>

#include <cstdint>

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

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_LIMITS_H_

// A pool of pre-started idle workers, so that opening a session does not pay for fork,
// exec and jail setup.
//
// The pool keeps `size` workers, started (and jailed, by the worker itself) with the
// server-wide launch options, ready on a background thread. A pooled worker has no
// generation yet: the session that takes it binds it to one (WorkerProcess::Begin), so
// Session::EnsureWorker takes one for a first worker and for a restart alike. With the cgroup
// layer, each pooled worker is already in its own cgroup with the server's default limits:
// moving a process into a cgroup is the slowest step of a worker's start on cgroup v1 (the
// kernel waits for an RCU grace period), so it happens here, in the background, and a
// session only rewrites the limits it changed. Per-session rlimits are applied after
// hand-out (server/broker/worker_limits.h). An idle worker that died meanwhile is discarded
// at hand-out. Thread-safe.
#ifndef FFIBOX_SERVER_BROKER_WORKER_POOL_H_
#define FFIBOX_SERVER_BROKER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/broker/worker_process.h"
#include "server/jail/cgroups.h"

namespace ffibox {

// A worker and its cgroup. Members are destroyed in reverse order: the process is reaped
// before its group is removed.
struct PooledWorker {
  std::unique_ptr<WorkerCgroup> cgroup;  // null without the cgroup layer
  std::unique_ptr<WorkerProcess> process;
};

class WorkerPool {
 public:
  // Starts filling a pool of `size` idle workers launched with `options`.
  // With `cgroups` (may be null; must outlive the pool) each is put in its own group with
  // `cgroup_limits`; a worker whose group cannot be made is discarded (sessions then start
  // their own, which fail closed the same way).
  WorkerPool(const WorkerLaunchOptions& options, size_t size, CgroupTree* cgroups,
             WorkerCgroupLimits cgroup_limits);
  // Stops refilling, then kills and reaps the idle workers.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // A live idle worker, not yet begun (in its cgroup, when the pool has cgroups), or one
  // with a null process when none is ready (the caller starts one itself). A replacement is
  // started in the background: at once when the pool is empty, else once no worker has been
  // taken for kRefillDelay, so that launching it (a few milliseconds of CPU) does not compete
  // with the session that took one while it loads its libraries and makes its first calls.
  PooledWorker Take();

  static constexpr absl::Duration kRefillDelay = absl::Milliseconds(15);

  // Idle workers ready now.
  size_t idle() const;

  // The launch options of pooled workers: a session may take one only when its own first
  // worker would be launched with these.
  const WorkerLaunchOptions& options() const { return options_; }

 private:
  void Refill();

  // A started worker, in its cgroup when the pool has cgroups.
  absl::StatusOr<PooledWorker> Start();

  const WorkerLaunchOptions options_;
  const size_t size_;
  CgroupTree* const cgroups_;
  const WorkerCgroupLimits cgroup_limits_;
  mutable absl::Mutex mu_;
  std::deque<PooledWorker> idle_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_take_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread refiller_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_POOL_H_

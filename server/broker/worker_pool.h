// A pool of pre-started idle workers, so that opening a session does not pay for fork,
// exec and jail setup.
//
// The pool keeps `size` workers of generation 1, started (and jailed, by the worker itself)
// with the server-wide launch options, ready on a background thread. Session::EnsureWorker
// takes one for its first worker; a restart (generation 2 and later) starts a fresh worker,
// because a worker stamps its generation on every address it hands out. Per-session caps
// are applied after hand-out (server/broker/worker_limits.h). An idle worker that died meanwhile is
// discarded at hand-out. Thread-safe.
#ifndef FFIBOX_SERVER_BROKER_WORKER_POOL_H_
#define FFIBOX_SERVER_BROKER_WORKER_POOL_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/broker/worker_process.h"

namespace ffibox {

class WorkerPool {
 public:
  // Starts filling a pool of `size` idle workers launched with `options` (generation 1).
  WorkerPool(const WorkerLaunchOptions& options, size_t size);
  // Stops refilling, then kills and reaps the idle workers.
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // A live idle worker of generation 1, or null when none is ready (the caller starts one
  // itself). A replacement is started in the background.
  std::unique_ptr<WorkerProcess> Take();

  // Idle workers ready now.
  size_t idle() const;

  // The launch options of pooled workers: a session may take one only when its own first
  // worker would be launched with these.
  const WorkerLaunchOptions& options() const { return options_; }

 private:
  void Refill();

  const WorkerLaunchOptions options_;
  const size_t size_;
  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<WorkerProcess>> idle_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refiller_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_POOL_H_

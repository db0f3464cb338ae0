#include "server/broker/worker_pool.h"

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/thread_name.h"

namespace ffibox {
namespace {

// Whether the worker has ended, without reaping it (its WorkerProcess reaps).
bool HasEnded(const WorkerProcess& worker) {
  siginfo_t info{};
  if (waitid(P_PID, worker.pid(), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return true;
  return info.si_pid == worker.pid();
}

}  // namespace

WorkerPool::WorkerPool(const WorkerLaunchOptions& options, size_t size, CgroupTree* cgroups,
                       WorkerCgroupLimits cgroup_limits)
    : options_(options), size_(size), cgroups_(cgroups), cgroup_limits_(cgroup_limits) {
  if (size_ > 0)
    refiller_ = std::thread([this] {
      NameThisThread("ffibox-pool");
      Refill();
    });
}

WorkerPool::~WorkerPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (refiller_.joinable()) refiller_.join();
  absl::MutexLock lock(&mu_);
  idle_.clear();  // each process is killed and reaped, then its cgroup removed
}

PooledWorker WorkerPool::Take() {
  absl::MutexLock lock(&mu_);
  last_take_ = absl::Now();
  while (!idle_.empty()) {
    PooledWorker worker = std::move(idle_.front());
    idle_.pop_front();
    if (!HasEnded(*worker.process)) return worker;
  }
  return {};
}

size_t WorkerPool::idle() const {
  absl::MutexLock lock(&mu_);
  return idle_.size();
}

void WorkerPool::Refill() {
  absl::Duration backoff = absl::Milliseconds(10);
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto needs_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || idle_.size() < size_;
      };
      mu_.Await(absl::Condition(&needs_work));
      // While a worker is still ready, the replacement waits for the sessions that just
      // took one to get going (a cold start costs more than it saves them).
      auto stopping_or_empty = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || idle_.empty();
      };
      while (!stopping_ && !idle_.empty()) {
        const absl::Time start_at = last_take_ + kRefillDelay;
        if (absl::Now() >= start_at) break;
        mu_.AwaitWithDeadline(absl::Condition(&stopping_or_empty), start_at);
      }
      if (stopping_) return;
    }
    absl::StatusOr<PooledWorker> started = Start();
    if (!started.ok()) {
      fprintf(stderr, "ffiboxd: worker pool: %s\n",
              std::string(started.status().message()).c_str());
      // Do not spin on a persistent failure; sessions start their own workers meanwhile.
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      mu_.AwaitWithTimeout(absl::Condition(&stopping), backoff);
      backoff = std::min(backoff * 2, absl::Seconds(5));
      continue;
    }
    backoff = absl::Milliseconds(10);
    absl::MutexLock lock(&mu_);
    idle_.push_back(*std::move(started));
  }
}

absl::StatusOr<PooledWorker> WorkerPool::Start() {
  PooledWorker worker;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> process = WorkerProcess::Start(options_);
  if (!process.ok()) return process.status();
  worker.process = *std::move(process);
  if (cgroups_ != nullptr) {
    absl::StatusOr<std::unique_ptr<WorkerCgroup>> cgroup =
        cgroups_->Attach(worker.process->worker_pid(), cgroup_limits_);
    if (!cgroup.ok()) {
      worker.process.reset();  // reaped before its group goes
      return absl::InternalError(
          absl::StrCat("cannot put a worker in its cgroup: ", cgroup.status().message()));
    }
    worker.cgroup = *std::move(cgroup);
  }
  return worker;
}

}  // namespace ffibox

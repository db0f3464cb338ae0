#include "server/broker/session_worker.h"

#include <atomic>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "server/broker/worker_death.h"
#include "server/jail/jail_layers.h"

namespace ffibox {
namespace {

// How long a worker may take to say it runs (a fresh one execs and links ffibox-worker first;
// a pooled one has said so long before).
constexpr absl::Duration kWorkerStartTimeout = absl::Seconds(20);

// The public error `code` with `message`, logged for the operator with the session's id.
absl::Status Refuse(v1::ErrorCode code, absl::string_view session_id, std::string message) {
  fprintf(stderr, "ffiboxd: session %.*s: %s\n", static_cast<int>(session_id.size()),
          session_id.data(), message.c_str());
  return ErrorStatus(code, message);
}

}  // namespace

WorkerLaunchOptions WorkerLaunchOptionsFor(const SessionConfig& config) {
  WorkerLaunchOptions options;
  options.worker_path = config.worker_path;
  options.executables = config.executables;
  options.max_reply_bytes = config.max_reply_bytes;
  options.worker.set_max_callback_depth(static_cast<uint32_t>(config.max_callback_depth));
  options.worker.set_max_block_bytes(config.type_limits.max_block_bytes);
  options.worker.set_max_batch_calls(static_cast<uint32_t>(config.type_limits.max_batch_calls));
  options.jail = config.jail;
  return options;
}

WorkerCgroupLimits DefaultWorkerCgroupLimits(const SessionConfig& config) {
  return WorkerCgroupLimits{config.jail.worker_pids_max, config.jail.address_space_bytes,
                            config.jail.idle_cpu_percent};
}

absl::StatusOr<std::unique_ptr<SessionWorker>> SessionWorker::Start(const SessionConfig& config,
                                                                    const Settings& settings,
                                                                    absl::string_view session_id) {
  WorkerLaunchOptions options = WorkerLaunchOptionsFor(config);
  options.jail.scratch_directory = settings.scratch_directory;
  PooledWorker pooled;
  if (config.pool != nullptr && options.jail.scratch_directory.empty()) {
    pooled = config.pool->Take();
  }
  absl::StatusOr<std::unique_ptr<WorkerProcess>> started = std::move(pooled.process);
  if (*started == nullptr && settings.ahead) {
    return absl::UnavailableError("no pooled worker for this session");
  }
  if (*started == nullptr) started = WorkerProcess::Start(options);
  if (!started.ok()) {
    // Fail closed: a worker whose jail could not be applied is not started, and the next
    // worker gets the same layers again.
    v1::ErrorCode code = v1::INTERNAL;
    if (IsJailError(started.status())) {
      code = v1::JAIL_UNAVAILABLE;
    } else if (absl::IsResourceExhausted(started.status())) {
      code = v1::RESOURCE_EXHAUSTED;
    }
    return Refuse(code, session_id,
                  absl::StrCat("cannot start a worker: ", started.status().message()));
  }
  std::unique_ptr<WorkerProcess> process = *std::move(started);
  // A worker that ends before it says it runs ran nothing of a session's: how it ended is
  // told as such (one that could not start its own thread, at a task limit, is
  // RESOURCE_EXHAUSTED), not as a crash of the session's library, nor as a cgroup that could
  // not take it.
  if (absl::Status running = process->AwaitStart(kWorkerStartTimeout); !running.ok()) {
    v1::ErrorCode code = v1::INTERNAL;
    std::string why(running.message());
    if (absl::IsUnavailable(running)) {
      const v1::Error death =
          DescribeWorkerDeath(process->Reap(), DeathCause::kBeforeStart, "its start");
      code = death.code();
      why = death.message();
    }
    process.reset();
    return Refuse(code, session_id, absl::StrCat("cannot start a worker: ", why));
  }
  // Before the first request: a pooled worker was started before this session existed, and
  // the session may have asked for a lower memory cap than the server's.
  absl::Status limited = ApplyWorkerLimits(
      process->worker_pid(), WorkerLimits{settings.memory_limit_bytes, config.jail.cpu_seconds});
  if (!limited.ok()) {
    return ErrorStatus(v1::INTERNAL,
                       absl::StrCat("cannot limit the session's worker: ", limited.message()));
  }
  // Fail closed: a worker whose cgroup cannot be made or given the session's limits serves
  // nothing.
  std::unique_ptr<WorkerCgroup> cgroup = std::move(pooled.cgroup);
  std::unique_ptr<ProcessCapWatch> process_cap;
  if (config.cgroups != nullptr) {
    const WorkerCgroupLimits limits{config.jail.worker_pids_max, settings.memory_limit_bytes,
                                    settings.idle_cpu_percent};
    absl::Status attached = absl::OkStatus();
    if (cgroup != nullptr) {
      attached = cgroup->SetLimits(limits);
    } else {
      absl::StatusOr<std::unique_ptr<WorkerCgroup>> made =
          config.cgroups->Attach(process->worker_pid(), limits);
      if (made.ok()) cgroup = *std::move(made);
      attached = made.status();
    }
    if (!attached.ok()) {
      process->Kill();
      process.reset();  // reaped here, before its group goes
      return Refuse(v1::JAIL_UNAVAILABLE, session_id,
                    absl::StrCat("cannot put the worker in its cgroup: ", attached.message()));
    }
  } else if (config.jail.processes > 0) {
    const pid_t worker_pid = process->worker_pid();
    process_cap = std::make_unique<ProcessCapWatch>(
        worker_pid, worker_pid != process->pid() ? 1 : 0, config.jail.processes);
  }
  // Last: the worker learns its generation once its caps hold.
  absl::Status begun = process->Begin(settings.generation, !settings.ahead);
  if (!begun.ok()) {
    process.reset();  // reaped here, before its group goes
    return Refuse(v1::INTERNAL, session_id,
                  absl::StrCat("cannot start a worker: ", begun.message()));
  }
  return std::unique_ptr<SessionWorker>(
      new SessionWorker(std::move(process), std::move(cgroup), std::move(process_cap)));
}

namespace {
std::atomic<int> busy_workers{0};
}  // namespace

int SessionWorker::BusyWorkers() { return busy_workers.load(std::memory_order_relaxed); }

SessionWorker::~SessionWorker() {
  NotBusy();
  process_.reset();  // ~WorkerProcess reaps: the group is empty after it
  cgroup_.reset();
}

void SessionWorker::NotBusy() {
  if (busy_.exchange(false)) busy_workers.fetch_sub(1, std::memory_order_relaxed);
}

void SessionWorker::Busy() {
  if (!busy_.exchange(true)) busy_workers.fetch_add(1, std::memory_order_relaxed);
  if (cgroup_ != nullptr) cgroup_->SetBusy(true).IgnoreError();
}

std::vector<std::string> SessionWorker::Idle() {
  NotBusy();
  return NewLimitHits();
}

void SessionWorker::Throttle() {
  if (cgroup_ != nullptr) cgroup_->SetBusy(false).IgnoreError();
}

std::optional<uint64_t> SessionWorker::OomKills() {
  if (cgroup_ == nullptr) return std::nullopt;
  return cgroup_->OomKills();
}

std::vector<std::string> SessionWorker::NewLimitHits() {
  if (cgroup_ != nullptr) return cgroup_->NewLimitHits();
  if (process_cap_ != nullptr) return process_cap_->NewLimitHits();
  return {};
}

}  // namespace ffibox

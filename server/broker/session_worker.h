// A session's worker and what holds it in: the process (from the pool, or started fresh),
// the session's caps applied from the broker, and its cgroup or, without the cgroup layer,
// the watch on its RLIMIT_NPROC (server/broker/worker_limits.h).
//
// Fail closed: a worker whose caps or cgroup cannot be applied is killed and not handed
// out. Destruction reaps the process (WorkerProcess kills and waits), then removes its
// cgroup, which must be empty by then. Not thread-safe: the session holds it under its lock
// (the process itself may be used from the session's reader thread; see worker_process.h).
#ifndef FFIBOX_SERVER_BROKER_SESSION_WORKER_H_
#define FFIBOX_SERVER_BROKER_SESSION_WORKER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/broker/session_config.h"
#include "server/broker/worker_limits.h"
#include "server/broker/worker_process.h"
#include "server/jail/cgroups.h"

namespace ffibox {

class SessionWorker {
 public:
  // What this session asks of its worker, beyond the server's configuration.
  struct Settings {
    uint64_t generation = 1;
    std::string scratch_directory;    // shown read-write to the worker; empty: none
    uint64_t memory_limit_bytes = 0;  // the session's memory cap; 0: none
    uint32_t idle_cpu_percent = 0;    // the worker's CPU share while idle (cgroup layer)
    // Taken ahead of any request: only a pooled worker (none idle, or a session that cannot
    // have one: UNAVAILABLE, not logged), and no request follows its `begin` at once.
    bool ahead = false;
  };

  // Takes a pooled worker (for a session without a scratch directory: pooled ones have none;
  // first workers and restarts alike) or starts one, applies the session's caps and cgroup,
  // then binds it to `settings.generation` (WorkerProcess::Begin). On failure the public error
  // (ErrorStatus): JAIL_UNAVAILABLE for a jail layer or cgroup that could not be applied,
  // RESOURCE_EXHAUSTED when the host ran out, INTERNAL otherwise; also logged, naming
  // `session_id`.
  static absl::StatusOr<std::unique_ptr<SessionWorker>> Start(const SessionConfig& config,
                                                              const Settings& settings,
                                                              absl::string_view session_id);

  SessionWorker(const SessionWorker&) = delete;
  SessionWorker& operator=(const SessionWorker&) = delete;
  ~SessionWorker();

  WorkerProcess& process() const { return *process_; }

  // The worker starts on a request while none was in flight: lifts the idle CPU throttle.
  void Busy();
  // No request is in flight any more (or, for a worker serving a same-host channel, which is
  // never idle, a request through the broker ended). Returns each limit that bit since the
  // last call, described for a LIMIT_REACHED event. The throttle stays lifted until Throttle:
  // a client that calls back to back pays no quota writes between its calls.
  std::vector<std::string> Idle();
  // Applies the idle CPU throttle again (one write, none if it is on already).
  void Throttle();
  // The limits that bit since they were last asked for, without the throttle (a worker
  // serving a same-host channel is never idle).
  std::vector<std::string> NewLimitHits();
  // WorkerCgroup::OomKills of its group; nullopt without one.
  std::optional<uint64_t> OomKills();

  // No request is in flight, or the worker ended, without touching the throttle: no longer
  // counted in BusyWorkers. Thread-safe.
  void NotBusy();

  // How many workers of this process are busy: between Busy and Idle or NotBusy (or their
  // end).
  static int BusyWorkers();

 private:
  SessionWorker(std::unique_ptr<WorkerProcess> process, std::unique_ptr<WorkerCgroup> cgroup,
                std::unique_ptr<ProcessCapWatch> process_cap)
      : process_(std::move(process)),
        cgroup_(std::move(cgroup)),
        process_cap_(std::move(process_cap)) {}

  std::unique_ptr<WorkerProcess> process_;
  std::unique_ptr<WorkerCgroup> cgroup_;          // null without the cgroup layer
  std::unique_ptr<ProcessCapWatch> process_cap_;  // without a cgroup, when capped
  std::atomic<bool> busy_{false};                 // counted in BusyWorkers
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_SESSION_WORKER_H_

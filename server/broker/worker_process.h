// One ffibox-worker child process: start (clone into its jail + exec of the worker
// binary), kill, reap.
//
// Used by the broker's sessions. Workers are cloned from a single long-lived launcher
// thread: PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, so forking
// from short-lived gRPC threads would kill workers at random. The child gets stdin from
// /dev/null, stdout and stderr as pipes the broker drains (none of the broker's own
// descriptors), the channel's socket as fd 3, its crash pipe as fd 4, the descriptor socket as
// fd 5 (the worker moves these three up: server/worker/own_descriptors.h), the channel's
// memfd as fd 6 (core/shm_channel.h: the worker maps it and closes the fd before it loads
// anything), no other fd, an empty environment, the default signal mask, and
// SIGKILL as its parent-death signal, so no worker outlives the broker. The jail
// (server/jail/spawn.h) is applied on the way; with a pid namespace, pid() is the namespace's init
// (ffibox-init, which must lie beside the worker binary), which relays the worker's wait status,
// so Reap reports the worker's own death either way.
#ifndef FFIBOX_SERVER_BROKER_WORKER_PROCESS_H_
#define FFIBOX_SERVER_BROKER_WORKER_PROCESS_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/broker/worker_connection.h"
#include "server/jail/jail_options.h"
#include "server/jail/spawn.h"
#include "server/protocol/crash_report.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

// The worker binary and the ffibox-init beside it, opened once (O_PATH): every worker
// launched with them runs the files the paths named when they were opened, whatever happens
// to the paths later. ffiboxd opens them at its start, so that a rebuild, an upgrade or a
// removal of its installation never leaves it starting workers of another build, or none.
class WorkerExecutables {
 public:
  // Opens `worker_path` and the ffibox-init beside it (needed only with the pid namespace
  // layer: when it is missing, why is kept for that layer's error). Both run before the
  // jail is whole, so the directory and the worker binary must be owned by root or this
  // process's user and writable by neither group nor others, and the worker binary
  // executable. FAILED_PRECONDITION when they are not or the worker binary cannot be opened;
  // RESOURCE_EXHAUSTED when out of descriptors.
  static absl::StatusOr<std::shared_ptr<const WorkerExecutables>> Open(
      const std::string& worker_path);

  WorkerExecutables(const WorkerExecutables&) = delete;
  WorkerExecutables& operator=(const WorkerExecutables&) = delete;
  ~WorkerExecutables();

  // The worker binary, or -1 when it could have been written by anyone but root or this user
  // now, or is not executable (its owner and mode are looked at on each call); `unavailable`
  // then says why.
  int worker_fd(std::string* unavailable) const;
  // ffibox-init, when it may be used now: it is missing, or could have been written by
  // anyone but root or this user (looked at on each call), gives -1 and `unavailable` says
  // why.
  int init_fd(std::string* unavailable) const;

 private:
  WorkerExecutables(int worker_fd, std::string worker_path, int init_fd, std::string init_path,
                    std::string init_unavailable, bool copies)
      : worker_fd_(worker_fd),
        worker_path_(std::move(worker_path)),
        init_fd_(init_fd),
        init_path_(std::move(init_path)),
        init_unavailable_(std::move(init_unavailable)),
        copies_(copies) {}

  // `fd` when the binary at `path` may be launched now, else -1 with `unavailable` saying why.
  int Runnable(int fd, const std::string& path, std::string* unavailable) const;

  const int worker_fd_;
  const std::string worker_path_;
  const int init_fd_;  // -1 when it could not be opened
  const std::string init_path_;
  const std::string init_unavailable_;
  // Both are sealed copies (memfds), made because the workers' host uid owns the binaries.
  const bool copies_;
};

struct WorkerLaunchOptions {
  std::string worker_path;  // the ffibox-worker executable
  // The binaries to launch, opened once; null: opened from worker_path at each start.
  std::shared_ptr<const WorkerExecutables> executables;
  size_t max_reply_bytes = 64 << 20;  // frames from the worker longer than this are refused
  JailOptions jail;                   // the worker's jail (on by default)
  bool jail_self_test = false;        // --check-jail: the worker calls execve once jailed
  // What the worker is told besides its jail (callback depth, block limit); Start adds the
  // part of `jail` the worker applies itself. Its generation comes later, with Begin.
  internal::WorkerSettings worker;
};

// How a worker ended, as waitpid reported it.
struct WorkerExit {
  int signal = 0;      // the terminating signal, or 0 when it exited
  int exit_code = -1;  // the exit status when it exited, else -1
  // The worker's own crash report, when it wrote one for the signal that killed it (or the
  // status it exited with): the worker's claim, untrusted (a library can forge it).
  std::optional<CrashReport> report;
  // The syscall the kernel reported through the seccomp listener before ffiboxd killed the
  // worker, or -1: the only evidence of a SANDBOX_VIOLATION; and its description ("ioctl
  // 0x541c").
  int seccomp_violation = -1;
  std::string seccomp_violation_detail;
  // The limits it ran under, to name them when it died of one (0 / "" = none).
  std::string seccomp_policy;  // the seccomp policy the worker ran under
  uint64_t cpu_seconds = 0;    // RLIMIT_CPU
  uint64_t file_bytes = 0;     // RLIMIT_FSIZE
  // Whether ffiboxd itself sent SIGKILL before the worker was reaped (Kill, or Reap's
  // grace period running out).
  bool killed_by_broker = false;
  // The CPU time (user and system) the worker used, with the processes it waited for, or
  // -1 when not known: past cpu_seconds, a SIGKILL it got is the CPU-time hard limit's.
  double cpu_used_seconds = -1;
  // The out-of-memory kills the kernel counted in the worker's cgroup, when it has one
  // (SessionWorker::OomKills): none, and a SIGKILL it got came from no limit.
  std::optional<uint64_t> oom_kills;
};

// The capacity of each ring of a worker's channel (requests down, replies up): messages
// larger than that stream through it. The memory is touched as it is used, the request ring
// charged to the broker, the reply ring to the worker.
inline constexpr size_t kWorkerChannelRingBytes = size_t{256} << 10;

// Descriptors a worker start needs at once in the broker (sockets, pipes, the binaries), and
// the reserve kept free for everything else; see CheckDescriptorReserve.
inline constexpr size_t kWorkerStartDescriptors = 16;
// How often AwaitStart looks at the seccomp listener while it waits.
inline constexpr absl::Duration kStartLook = absl::Milliseconds(20);
inline constexpr size_t kDescriptorReserve = 64;

// OK when ffiboxd can start a worker and still keep kDescriptorReserve descriptors free
// under its RLIMIT_NOFILE; RESOURCE_EXHAUSTED naming the counts otherwise.
absl::Status CheckDescriptorReserve();

// The broker's ends of a worker's descriptors (-1 when absent).
struct WorkerDescriptors {
  int crash = -1;        // read end of the crash-report pipe
  int descriptors = -1;  // the descriptor socket (SCM_RIGHTS to the worker's fd 5)
  int stdout_read = -1;  // read ends of the worker's stdout and stderr (non-blocking)
  int stderr_read = -1;
};

class WorkerProcess {
 public:
  // Starts a worker in the jail of `options.jail`. Fails when the binary is not executable,
  // the seccomp policy or a library root is invalid, or clone, socketpair, the channel's
  // memfd or jail setup fail.
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(const WorkerLaunchOptions& options);

  // Kills and reaps the worker if that has not happened yet.
  ~WorkerProcess();

  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  // The process the broker waits for and kills: the pid namespace's init when there is one
  // (killing it ends the whole namespace), else the worker.
  pid_t pid() const { return pid_; }
  // The host pid of the ffibox-worker process itself (for prlimit and inspection); equal to
  // pid() without a pid namespace; -1 if it could not be found.
  pid_t worker_pid() const { return worker_pid_; }
  // The generation Begin bound the worker to; 0 before.
  uint64_t generation() const { return generation_; }
  // Waits up to `timeout` for the worker to say it runs (WorkerReply.started: its own thread
  // started), before anything of a session is sent to it, handling a seccomp notification
  // meanwhile (the worker is then killed). UNAVAILABLE when it ended before that (Reap says
  // how: it ran nothing of a session's, so its exit status is ffibox-worker's own, and
  // kWorkerExitNoThread means it could not start that thread); DEADLINE_EXCEEDED, or
  // INTERNAL for another first frame. Call it once, first, from one thread.
  absl::Status AwaitStart(absl::Duration timeout);
  // Binds the worker to `generation` (at least 1): its first request. Call it once, before
  // anything else is sent and before another thread uses the worker; `request_follows`: a
  // request comes right behind (the worker spins for it). UNAVAILABLE when the worker has gone.
  absl::Status Begin(uint64_t generation, bool request_follows);
  WorkerConnection& connection() { return *connection_; }
  // Which jail layers this worker got.
  const SpawnedLayers& jail_layers() const { return layers_; }
  // Whether the worker loads libraries from descriptors (SendDescriptor): it has a /proc
  // (the jail's fresh one, or the host's when the jail is off).
  bool loads_by_descriptor() const { return loads_by_descriptor_; }
  // The read ends of the worker's stdout and stderr pipes (non-blocking; owned here).
  int stdout_fd() const { return fds_.stdout_read; }
  int stderr_fd() const { return fds_.stderr_read; }

  // Passes `fd` (the caller keeps it) to the worker with `tag`, the WorkerRequest id of the
  // load that uses it. Thread-safe. UNAVAILABLE when the worker has gone.
  absl::Status SendDescriptor(int fd, uint64_t tag);

  // The worker's seccomp listener (readable when it attempted a forbidden syscall), or -1
  // without seccomp. Owned here.
  int seccomp_listener() const { return seccomp_listener_; }
  // Reads the pending seccomp notification (call it only when seccomp_listener() polled
  // readable: the read blocks otherwise), records the syscall as the worker's violation
  // and kills the worker. Returns whether to keep watching: false once the worker was
  // killed, true when the notification was withdrawn before it could be read. For the
  // thread that watches seccomp_listener().
  bool HandleSeccompNotification();
  // Waits up to `timeout` for a seccomp notification and handles it; true if one came.
  bool WaitForSeccompViolation(absl::Duration timeout);

  // Sends SIGKILL unless the worker was already reaped. Thread-safe, idempotent.
  void Kill();

  // Waits for the worker to end and returns how it ended. Meant to be called after the
  // channel reported end of stream: a worker that closed its channel but keeps running is
  // given `grace`, then killed. Idempotent: later calls return the same result.
  WorkerExit Reap(absl::Duration grace = absl::Milliseconds(500));

 private:
  WorkerProcess(const SpawnedWorker& spawned, const WorkerLaunchOptions& options,
                std::unique_ptr<WorkerConnection> connection, WorkerDescriptors fds,
                int seccomp_listener)
      : pid_(spawned.pid),
        worker_pid_(spawned.worker_pid),
        connection_(std::move(connection)),
        fds_(fds),
        seccomp_listener_(seccomp_listener),
        status_fd_(spawned.status_fd),
        relays_exit_(spawned.relays_exit),
        layers_(spawned.layers),
        loads_by_descriptor_(!options.jail.enabled || options.jail.proc) {
    if (options.jail.enabled) {
      exit_.seccomp_policy = options.jail.seccomp_policy;
      exit_.cpu_seconds = options.jail.cpu_seconds;
      exit_.file_bytes = options.jail.file_bytes;
    }
  }

  // Records a wait status, the CPU time `usage` tells, and the crash report that matches
  // them; with an init, the worker's own status when the init relayed it (then returns
  // true). Requires mu_.
  bool RecordExit(int status, const struct rusage& usage) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the first crash report from the (dead) worker's pipe, if it wrote a valid one.
  std::optional<CrashReport> ReadCrashReport();

  const pid_t pid_;
  const pid_t worker_pid_;
  uint64_t generation_ = 0;
  std::unique_ptr<WorkerConnection> connection_;
  const WorkerDescriptors fds_;
  const int seccomp_listener_;
  const int status_fd_;  // read end of the jail's status pipe (the init's relayed status)
  const bool relays_exit_;
  const SpawnedLayers layers_;
  const bool loads_by_descriptor_;
  absl::Mutex descriptor_mu_;  // one descriptor message at a time on the socket
  absl::Mutex mu_;
  bool reaped_ ABSL_GUARDED_BY(mu_) = false;
  WorkerExit exit_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_PROCESS_H_

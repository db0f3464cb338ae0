// One ffibox-worker child process: start (fork + exec of the worker binary), kill, reap.
//
// Used by the broker's sessions. Workers are forked from a single long-lived launcher
// thread: PR_SET_PDEATHSIG fires when the *thread* that forked a child exits, so forking
// from short-lived gRPC threads would kill workers at random. The child gets the channel
// as fd 3, no other fd, an empty environment, the default signal mask, and SIGKILL as its
// parent-death signal, so no worker outlives the broker.
#ifndef FFIBOX_SERVER_WORKER_PROCESS_H_
#define FFIBOX_SERVER_WORKER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/crash_report.h"
#include "server/worker_channel.h"

namespace ffibox {

struct WorkerLaunchOptions {
  std::string worker_path;            // the ffibox-worker executable
  uint64_t generation = 1;            // stamped on the worker's remote addresses
  size_t max_reply_bytes = 64 << 20;  // frames from the worker longer than this are refused
  int max_callback_depth = 0;         // passed as --max_callback_depth when positive
};

// How a worker ended, as waitpid reported it.
struct WorkerExit {
  int signal = 0;      // the terminating signal, or 0 when it exited
  int exit_code = -1;  // the exit status when it exited, else -1
  // The worker's own crash report, when it wrote one for the signal that killed it.
  std::optional<CrashReport> report;
};

class WorkerProcess {
 public:
  // Starts a worker. Fails when the binary is not executable or fork/socketpair fail.
  static absl::StatusOr<std::unique_ptr<WorkerProcess>> Start(const WorkerLaunchOptions& options);

  // Kills and reaps the worker if that has not happened yet.
  ~WorkerProcess();

  WorkerProcess(const WorkerProcess&) = delete;
  WorkerProcess& operator=(const WorkerProcess&) = delete;

  pid_t pid() const { return pid_; }
  uint64_t generation() const { return generation_; }
  WorkerChannel& channel() { return *channel_; }

  // Sends SIGKILL unless the worker was already reaped. Thread-safe, idempotent.
  void Kill();

  // Waits for the worker to end and returns how it ended. Meant to be called after the
  // channel reported end of stream: a worker that closed its channel but keeps running is
  // given `grace`, then killed. Idempotent: later calls return the same result.
  WorkerExit Reap(absl::Duration grace = absl::Milliseconds(500));

 private:
  WorkerProcess(pid_t pid, uint64_t generation, std::unique_ptr<WorkerChannel> channel,
                int crash_fd)
      : pid_(pid), generation_(generation), channel_(std::move(channel)), crash_fd_(crash_fd) {}

  // Records a waitpid status and the crash report that matches it. Requires mu_.
  void RecordExit(int status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the first crash report from the (dead) worker's pipe, if it wrote a valid one.
  std::optional<CrashReport> ReadCrashReport();

  const pid_t pid_;
  const uint64_t generation_;
  std::unique_ptr<WorkerChannel> channel_;
  const int crash_fd_;  // read end of the worker's crash-report pipe
  absl::Mutex mu_;
  bool reaped_ ABSL_GUARDED_BY(mu_) = false;
  WorkerExit exit_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_PROCESS_H_

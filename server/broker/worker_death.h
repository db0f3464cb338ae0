// The one place that turns a worker's death into the public error its callers receive.
#ifndef FFIBOX_SERVER_BROKER_WORKER_DEATH_H_
#define FFIBOX_SERVER_BROKER_WORKER_DEATH_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/worker_process.h"

namespace ffibox {

// Why the broker saw the worker end.
enum class DeathCause {
  kUnexpected,         // it died on its own (crash, exit, abort)
  kDeadline,           // the broker killed it because `function` overran its deadline
  kProtocolViolation,  // the broker killed it for sending malformed or unexpected frames
  kBeforeStart         // it ended before it said it runs (WorkerReply.started): no library
                       // code ran in it, so its exit status is ffibox-worker's own
};

// Describes the death of a worker that was running `function` ("" when it was idle).
// A worker its seccomp policy killed (SIGSYS) is SANDBOX_VIOLATION naming the syscall; one
// killed by its CPU-time or file-size rlimit (SIGXCPU, SIGXFSZ) is RESOURCE_EXHAUSTED; any
// other death is WORKER_CRASHED; but one that ended before it started, with
// kWorkerExitNoThread (it could not start its own thread), is RESOURCE_EXHAUSTED.
// `deadline` is the timeout that was exceeded (kDeadline only); `detail` adds the
// protocol violation (kProtocolViolation only).
v1::Error DescribeWorkerDeath(const WorkerExit& exit, DeathCause cause, absl::string_view function,
                              absl::Duration deadline = {}, absl::string_view detail = "");

// "SIGSEGV" for 11; "signal N" for a number without a name.
std::string SignalName(int signal);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_DEATH_H_

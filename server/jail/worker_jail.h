// The part of the jail ffibox-worker applies to itself after exec: rlimits, then the
// seccomp policy (server/jail/seccomp_policy.h). The launcher has already applied the
// namespaces, the filesystem view, the ids, no_new_privs and the capability drop
// (server/jail/spawn.h).
//
// The broker describes it with WorkerJailFor in the worker's settings
// (server/protocol/worker_settings.h); the worker applies it (ApplyWorkerJail) before it
// loads any library or starts any thread.
#ifndef FFIBOX_SERVER_JAIL_WORKER_JAIL_H_
#define FFIBOX_SERVER_JAIL_WORKER_JAIL_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "server/jail/jail_options.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

// What a worker applies to itself for the jail `options` (which must be enabled); with
// `self_test`, it calls execve once jailed.
internal::WorkerJail WorkerJailFor(const JailOptions& options, bool self_test = false);

// The most signals a worker may have queued at once (RLIMIT_SIGPENDING).
inline constexpr uint64_t kWorkerPendingSignals = 32;

// Applies `jail` to the calling (single-threaded) process: rlimits (core 0 always; CPU with
// a hard limit 2 s above the soft one, so the worker first gets SIGXCPU; the shares of
// per-user budgets, kWorkerPendingSignals, no real-time priority, raised nice value or
// message queue, 64 KiB of locked memory), then seccomp. Returns the seccomp filter's
// listener descriptor (-1 without seccomp), which the worker hands to the broker, and only
// then lowers its open files (LowerOpenFiles). Fails with the step that failed; the worker
// must then exit without serving.
absl::StatusOr<int> ApplyWorkerJail(const internal::WorkerJail& jail);

// Lowers RLIMIT_NOFILE to the jail's open files, once the listener is handed over: the
// kernel refuses to pass a descriptor while its user has more in flight than the sender's
// RLIMIT_NOFILE, and every worker shares that user with others, so the handover is made
// under the broker's limit.
absl::Status LowerOpenFiles(const internal::WorkerJail& jail);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_WORKER_JAIL_H_

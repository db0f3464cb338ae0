// The part of the jail ffibox-worker applies to itself after exec: rlimits, then the
// seccomp policy (server/jail/seccomp_policy.h). The launcher has already applied the
// namespaces, the filesystem view, the ids, no_new_privs and the capability drop
// (server/jail/spawn.h).
//
// The broker passes the settings on the worker's command line (WorkerJailFlags); the
// worker parses them (ParseWorkerJailFlags) and applies them (ApplyWorkerJail) before it
// loads any library or starts any thread. Encoding, one flag each, absent = not applied:
//   --jail_seccomp=<policy>            strict | permissive
//   --jail_extra_syscalls=<a,b,...>    syscall names added to the policy
//   --jail_rlimits=as:<bytes>,cpu:<seconds>,nofile:<n>,nproc:<n>,fsize:<bytes>
//                                      (a 0 or missing entry leaves that limit as is;
//                                      RLIMIT_CORE is always 0)
//   --jail_self_test                   after the jail, call execve (ffiboxd --check-sandbox
//                                      expects the worker to die of SIGSYS)
#ifndef FFIBOX_SERVER_JAIL_WORKER_JAIL_H_
#define FFIBOX_SERVER_JAIL_WORKER_JAIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/jail/jail_options.h"

namespace ffibox {

struct WorkerJail {
  bool seccomp = false;
  std::string seccomp_policy;
  std::vector<std::string> extra_syscalls;
  uint64_t address_space_bytes = 0;
  uint64_t cpu_seconds = 0;
  uint64_t open_files = 0;
  uint64_t processes = 0;
  uint64_t file_bytes = 0;
  bool self_test = false;
};

// The worker flags for `options` (none when the jail is disabled).
std::vector<std::string> WorkerJailFlags(const JailOptions& options);

// The settings in the worker's arguments. INVALID_ARGUMENT on a malformed --jail_ flag.
absl::StatusOr<WorkerJail> ParseWorkerJailFlags(int argc, char** argv);

// Applies `jail` to the calling (single-threaded) process: rlimits (core 0 always; CPU with
// a hard limit 2 s above the soft one, so the worker first gets SIGXCPU), then seccomp.
// Returns the seccomp filter's listener descriptor (-1 without seccomp), which the worker
// hands to the broker. Fails with the step that failed; the worker must then exit without
// serving.
absl::StatusOr<int> ApplyWorkerJail(const WorkerJail& jail);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_WORKER_JAIL_H_

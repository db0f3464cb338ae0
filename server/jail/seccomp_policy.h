// The worker's seccomp-bpf allowlists, by name, and syscall names for error messages.
//
// ffibox-worker installs its policy (InstallSeccompPolicy) as the last step of its jail,
// after its rlimits and before it reads its first request. The broker validates a policy
// and its extra syscalls before it starts any worker (ValidateSeccompPolicy), and names the
// syscall that killed a worker (SyscallName). A denied syscall traps: the kernel sends
// SIGSYS, the worker's crash reporter records the syscall number and the worker dies, which
// the broker reports as SANDBOX_VIOLATION.
//
//   strict      threads (clone with CLONE_THREAD), memory, files on existing descriptors
//               and the filesystem the jail shows, time, signals to itself. No process
//               creation, no socket creation, no execve, no ptrace, no mount, no signals to
//               other processes, no bpf, no keyctl, no unshare/setns, no io_uring.
//   permissive  strict, plus fork/vfork/clone of processes (never of namespaces), wait4,
//               unix-domain sockets (socket(AF_UNIX), socketpair, connect, bind, ...),
//               memfd_create, chmod/chown/link/symlink/xattr/inotify and any ioctl.
#ifndef FFIBOX_SERVER_JAIL_SECCOMP_POLICY_H_
#define FFIBOX_SERVER_JAIL_SECCOMP_POLICY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// The policy names ValidateSeccompPolicy accepts.
inline constexpr absl::string_view kStrictSeccompPolicy = "strict";
inline constexpr absl::string_view kPermissiveSeccompPolicy = "permissive";

// OK when `policy` names a policy and every entry of `extra_syscalls` names a syscall of
// this architecture; INVALID_ARGUMENT naming the first bad one otherwise.
absl::Status ValidateSeccompPolicy(absl::string_view policy,
                                   const std::vector<std::string>& extra_syscalls);

// Installs `policy` plus `extra_syscalls` on the calling process (all threads). Requires
// PR_SET_NO_NEW_PRIVS (or CAP_SYS_ADMIN) and a single-threaded process, so that no thread
// escapes the filter. Irreversible. Fails with the reason when libseccomp or the kernel
// refuse.
absl::Status InstallSeccompPolicy(absl::string_view policy,
                                  const std::vector<std::string>& extra_syscalls);

// The name of syscall `number` on this architecture ("connect"), or "syscall <number>".
std::string SyscallName(int number);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_SECCOMP_POLICY_H_

// The worker's seccomp-bpf allowlists, by name, and syscall names for error messages.
//
// ffibox-worker installs its policy (InstallSeccompPolicy) as the last step of its jail,
// after its rlimits and before it reads its first request, and hands the filter's listener
// to the broker. The broker validates a policy and its extra syscalls before it starts any
// worker (ValidateSeccompPolicy), and names the syscall that killed a worker (SyscallName).
// A denied syscall is a seccomp user notification: the offending thread stops in the
// kernel, the broker reads the syscall number from the listener (ReceiveSeccompViolation),
// kills the worker and reports SANDBOX_VIOLATION. The evidence is the kernel's, never the
// worker's: a library's own SIGSYS handler, or a crash report it forges, changes nothing.
//
//   strict      threads (clone with CLONE_THREAD), memory, files on existing descriptors
//               and the filesystem the jail shows, time, signals to itself, the reads
//               library constructors make (prctl PR_CAPBSET_READ and friends), pinning
//               its own threads, netlink sockets (nothing to reach in its own network
//               namespace). socket(AF_UNIX) fails with EACCES without killing the worker
//               (glibc's NSS tries nscd first, then reads its files). No process creation,
//               no other socket, no execve, no ptrace, no mount, no signals to other
//               processes, no bpf, no keyctl, no unshare/setns, no io_uring.
//   permissive  strict, plus fork/vfork/clone of processes (never of namespaces), wait4,
//               unix-domain sockets (socket(AF_UNIX), socketpair, connect, listen, ...),
//               memfd_create, chmod/chown/link/symlink/xattr and any ioctl (hard links fail
//               with EPERM under strict). inotify_init and inotify_init1 fail with ENOSYS
//               under both (their instances count against the host user that owns the
//               workers' namespaces).
#ifndef FFIBOX_SERVER_JAIL_SECCOMP_POLICY_H_
#define FFIBOX_SERVER_JAIL_SECCOMP_POLICY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// The policy names ValidateSeccompPolicy accepts.
inline constexpr absl::string_view kStrictSeccompPolicy = "strict";
inline constexpr absl::string_view kPermissiveSeccompPolicy = "permissive";

// OK when `policy` names a policy and every entry of `extra_syscalls` names a syscall of
// this architecture; INVALID_ARGUMENT naming the first bad one otherwise.
absl::Status ValidateSeccompPolicy(absl::string_view policy,
                                   const std::vector<std::string>& extra_syscalls);

// Installs `policy` plus `extra_syscalls` on the calling process and returns the filter's
// listener descriptor (the caller passes it to the broker and closes its copy). Requires
// PR_SET_NO_NEW_PRIVS (or CAP_SYS_ADMIN) and a single-threaded process, so that no thread
// escapes the filter. Irreversible. Fails with the reason when libseccomp or the kernel
// refuse.
absl::StatusOr<int> InstallSeccompPolicy(absl::string_view policy,
                                         const std::vector<std::string>& extra_syscalls);

// A forbidden syscall as the kernel reported it.
struct SeccompViolation {
  int syscall = -1;
  uint64_t args[6] = {};
};

// In the broker: reads one pending notification from a worker's `listener`. Blocks if none
// is pending. UNAVAILABLE when the worker is gone.
absl::StatusOr<SeccompViolation> ReceiveSeccompViolation(int listener);

// "ioctl" plus what identifies the call further, e.g. "ioctl 0x541c" (the request).
std::string DescribeSeccompViolation(const SeccompViolation& violation);

// The name of syscall `number` on this architecture ("connect"), or "syscall <number>".
std::string SyscallName(int number);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_SECCOMP_POLICY_H_

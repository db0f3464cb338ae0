#include "server/jail/seccomp_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/kd.h>
#include <linux/sched.h>
#include <sched.h>
#include <seccomp.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#endif

namespace ffibox {
namespace {

// Allowed without conditions by both policies. Everything a worker does on its own: the
// dynamic loader, threads, memory, the channel, files in the jail's view, time, signals.
constexpr const char* kStrictSyscalls[] = {
    // I/O on descriptors the worker already has or opens in its view of the filesystem.
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "recvmmsg",
    "sendmmsg",
    "shutdown",
    "bind",
    "setsockopt",
    "getsockname",
    "getpeername",
    "getsockopt",
    "close",
    "dup",
    "dup2",
    "dup3",
    "lseek",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "eventfd2",
    "pipe",
    "pipe2",
    "timerfd_create",
    "timerfd_settime",
    "timerfd_gettime",
    "flock",
    "fsync",
    "fdatasync",
    "ftruncate",
    "fallocate",
    "readahead",
    // The filesystem the jail shows (read-only except /tmp).
    "open",
    "openat",
    "stat",
    "fstat",
    "lstat",
    "newfstatat",
    "statx",
    "statfs",
    "fstatfs",
    "access",
    "faccessat",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents",
    "getdents64",
    "getcwd",
    "chdir",
    "fchdir",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "truncate",
    "umask",
    "utimensat",
    // Memory.
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "msync",
    "mincore",
    "mlock",
    "mlock2",
    "munlock",
    "membarrier",
    // Threads and synchronisation (clone is allowed below for threads only).
    "futex",
    "futex_waitv",  // the broker channel's waits (core/shm_channel.h)
    "set_robust_list",
    "get_robust_list",
    "rseq",
    "set_tid_address",
    "sched_yield",
    "sched_getaffinity",
    "sched_getparam",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "getcpu",
    "arch_prctl",
    "restart_syscall",
    // Scheduling, of any of the worker's threads by tid (Mesa pins its threads, EPICS libCom
    // probes real-time priorities on its own): the pid namespace holds only the worker and
    // its jail's init (which it can slow, as setpriority always could: its own session's
    // exit reports), and a real-time or raised priority needs RLIMIT_RTPRIO or RLIMIT_NICE
    // (0) or a capability the worker lacks, so the kernel refuses it with EPERM.
    "sched_setaffinity",
    "sched_setscheduler",
    "sched_setparam",
    // Audio threads renice themselves; PRIO_USER and PRIO_PGRP reach only processes of the
    // worker's own pid namespace, and raising a priority needs a capability it lacks.
    "setpriority",
    // Signals delivered to the worker itself.
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigsuspend",
    "sigaltstack",
    "pause",
    "alarm",
    "getitimer",
    "setitimer",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    // Time, identity, limits, randomness.
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "nanosleep",
    "gettimeofday",
    "time",
    "getpid",
    "gettid",
    "getppid",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getresuid",
    "getresgid",
    "getgroups",
    "getpgrp",
    "getrusage",
    "times",  // ImageMagick's MagickWandGenesis
    "getrlimit",
    "setrlimit",
    "getpriority",
    "uname",
    "sysinfo",
    "getrandom",
    // NUMA policy of the worker's own memory: libnuma asks at init (ImageMagick's coders).
    "get_mempolicy",
    "set_mempolicy",
    "mbind",
    "exit",
    "exit_group",
};

// Added by the permissive policy.
constexpr const char* kPermissiveSyscalls[] = {
    // Processes (clone of a process is a conditional rule).
    "fork",
    "vfork",
    "wait4",
    "waitid",
    // Unix-domain sockets (socket(AF_UNIX) is a conditional rule).
    "socketpair",
    "connect",
    "listen",
    "accept",
    "accept4",
    // Memory files, modes and owners, hard and symbolic links, extended attributes.
    "memfd_create",
    "chmod",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "chown",
    "fchown",
    "fchownat",
    "lchown",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    // Locked memory, sessions and process groups, any ioctl.
    "mlockall",
    "munlockall",
    "setsid",
    "setpgid",
    "getpgid",
    "getsid",
    "ioctl",
};

// prctl options a library may use on itself.
constexpr int kAllowedPrctls[] = {
    PR_SET_NAME, PR_GET_NAME, PR_SET_VMA, PR_GET_DUMPABLE, PR_GET_SECCOMP, PR_GET_NO_NEW_PRIVS,
    PR_GET_TIMERSLACK, PR_SET_TIMERSLACK,
    // Reads that libcap-linked libraries (libsystemd, SDL) make in their constructors.
    PR_CAPBSET_READ, PR_GET_KEEPCAPS, PR_GET_SECUREBITS, PR_GET_PDEATHSIG, PR_GET_CHILD_SUBREAPER};

// ioctls the strict policy allows: terminal probes (isatty) and descriptor flags. Not
// TIOCSTI, which could type into the broker's terminal through an inherited stdout.
// Also the console probes SDL's video drivers and SDL_Init make (TIOCLINUX, KDGKBTYPE,
// KDGKBMODE, KDGETMODE, KDGKBLED, KDGKBDIACR; all reads): the jail has no virtual
// terminal, so they fail with EBADF or ENOTTY.
constexpr unsigned long kAllowedIoctls[] = {TCGETS,    TIOCGWINSZ, FIONREAD,  FIONBIO,
                                            FIOCLEX,   FIONCLEX,   TIOCLINUX, KDGKBTYPE,
                                            KDGKBMODE, KDGETMODE,  KDGKBLED,  KDGKBDIACR};

constexpr uint64_t kNamespaceCloneFlags = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID |
                                          CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                                          CLONE_NEWCGROUP;

struct ContextDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using SeccompContext = std::unique_ptr<void, ContextDeleter>;

absl::Status Check(int rc, absl::string_view what) {
  if (rc == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("seccomp: ", what, ": ", strerror(-rc)));
}

// Whether the configuration adds syscall `name` to the policy: its unconditional rule
// replaces the policy's own conditions on it (a refusal among them too).
bool IsExtra(absl::string_view name, const std::vector<std::string>& extra_syscalls) {
  return std::find(extra_syscalls.begin(), extra_syscalls.end(), name) != extra_syscalls.end();
}

absl::Status Allow(scmp_filter_ctx ctx, const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return absl::OkStatus();  // not on this architecture
  return Check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0), name);
}

// One rule of an ArgumentRule: `action` when argument `arg` (compared as 64 bits) is
// `op` `value`.
struct ArgumentCase {
  uint32_t action;
  scmp_compare op;
  scmp_datum_t value;
};

// A syscall allowed for some values of one 32-bit argument and refused with an errno for
// others. The cases must not overlap and must leave no value whose low 32 bits the kernel
// would take for a refused one allowed: a value with high bits set is never allowed (the
// kernel drops them), so it falls under a refusing case or the policy's default.
struct ArgumentRule {
  const char* name;
  unsigned arg;
  ArgumentCase cases[6];
};

// What a worker may do to resources the kernel shares between users: grow a pipe's buffer
// (pipe-user-pages are counted per user, and every worker shares one: F_SETPIPE_SZ), or drop
// the host's page cache of a file it can open (POSIX_FADV_DONTNEED evicts what every process
// on the host shares, and with a timed read tells which files others read). Other advice
// (libmpv's posix_fadvise) and every other fcntl command are allowed.
constexpr ArgumentRule kArgumentRules[] = {
    {"fcntl",
     1,
     {{SCMP_ACT_ALLOW, SCMP_CMP_LT, F_SETPIPE_SZ},
      {SCMP_ACT_ERRNO(EPERM), SCMP_CMP_EQ, F_SETPIPE_SZ},
      {SCMP_ACT_ALLOW, SCMP_CMP_EQ, F_GETPIPE_SZ},
      {SCMP_ACT_ALLOW, SCMP_CMP_EQ, F_ADD_SEALS},
      {SCMP_ACT_ALLOW, SCMP_CMP_EQ, F_GET_SEALS},
      // Write-life hints (F_GET_RW_HINT .. F_SET_FILE_RW_HINT) and anything the kernel does
      // not know: EINVAL, as from the kernel.
      {SCMP_ACT_ERRNO(EINVAL), SCMP_CMP_GT, F_GET_SEALS}}},
    {"fadvise64",
     3,
     {{SCMP_ACT_ALLOW, SCMP_CMP_LT, POSIX_FADV_DONTNEED},
      {SCMP_ACT_ERRNO(EPERM), SCMP_CMP_EQ, POSIX_FADV_DONTNEED},
      {SCMP_ACT_ALLOW, SCMP_CMP_EQ, POSIX_FADV_NOREUSE},
      {SCMP_ACT_ERRNO(EINVAL), SCMP_CMP_GT, POSIX_FADV_NOREUSE}}},
};

absl::Status AddArgumentRules(scmp_filter_ctx ctx) {
  for (const ArgumentRule& rule : kArgumentRules) {
    const int nr = seccomp_syscall_resolve_name(rule.name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    for (const ArgumentCase& one : rule.cases) {
      if (one.action == 0) break;  // SCMP_ACT_KILL_THREAD: the end of the cases
      absl::Status status =
          Check(seccomp_rule_add(ctx, one.action, nr, 1, SCMP_CMP64(rule.arg, one.op, one.value)),
                rule.name);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

// Modes (chmod, fchmod, fchmodat, fchmodat2) within 0600, owner read and write: ImageMagick makes
// the temporary file of a blob private so. Any other mode (executable, set-id, sticky, or open to
// the group or others: a scratch directory is the host's) fails with EPERM, and the worker lives:
// SQLite gives a journal the database's mode (0666 for a database the caller made writable by
// others) and goes on without it. Permissive allows any chmod.
absl::Status AddModeRules(scmp_filter_ctx ctx, const std::vector<std::string>& extra_syscalls) {
  constexpr scmp_datum_t kRefusedBits = 07177;
  // A worker that owns its own executable (its host uid is ffiboxd's: an unprivileged
  // ffiboxd whose user has no subordinate ids) could make it mode 0 through /proc/self/exe,
  // and every worker launched after it would fail to exec: it may change no mode at all.
  // Unknown (no /proc) counts as owned.
  struct stat exe;
  const bool owns_executable = stat("/proc/self/exe", &exe) != 0 || exe.st_uid == geteuid();
  const struct {
    const char* name;
    unsigned mode_arg;
  } calls[] = {{"chmod", 1}, {"fchmod", 1}, {"fchmodat", 2}, {"fchmodat2", 2}};
  for (const auto& call : calls) {
    // fchmodat2 (Linux 6.6) by name: Debian 12's libseccomp knows it, its headers do not.
    const int nr = seccomp_syscall_resolve_name(call.name);
    if (nr == __NR_SCMP_ERROR || IsExtra(call.name, extra_syscalls)) continue;  // allowed
    if (owns_executable) {
      absl::Status refused = Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0), call.name);
      if (!refused.ok()) return refused;
      continue;
    }
    absl::Status allowed =
        Check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                               SCMP_CMP64(call.mode_arg, SCMP_CMP_MASKED_EQ, kRefusedBits, 0)),
              call.name);
    if (!allowed.ok()) return allowed;
    // A rule a refused bit: libseccomp has no "masked, not equal".
    for (scmp_datum_t bit = 1; bit <= kRefusedBits; bit <<= 1) {
      if ((kRefusedBits & bit) == 0) continue;
      absl::Status refused =
          Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1,
                                 SCMP_CMP64(call.mode_arg, SCMP_CMP_MASKED_EQ, bit, bit)),
                call.name);
      if (!refused.ok()) return refused;
    }
  }
  return absl::OkStatus();
}

// A thread shares its process's descriptor table: one with a table of its own would have
// RLIMIT_NOFILE descriptors more, and kernel budgets counted per host user (epoll watches,
// pipe buffers), which every worker's uid shares, would no longer be bounded by the worker's.
constexpr scmp_datum_t kThreadCloneFlags = CLONE_THREAD | CLONE_FILES;

// Rules whose arguments matter: signals, process memory access and rlimits only on the
// worker itself, clone only for threads sharing the descriptor table (or, permissive, for
// processes without new namespaces).
absl::Status AddConditionalRules(scmp_filter_ctx ctx, bool permissive,
                                 const std::vector<std::string>& extra_syscalls) {
  const scmp_datum_t self = static_cast<scmp_datum_t>(getpid());
  struct OwnPidRule {
    int nr;
    unsigned arg;
  };
  const OwnPidRule own_pid_rules[] = {{SCMP_SYS(kill), 0},
                                      {SCMP_SYS(tgkill), 0},
                                      {SCMP_SYS(rt_tgsigqueueinfo), 0},
                                      {SCMP_SYS(rt_sigqueueinfo), 0},
                                      {SCMP_SYS(process_vm_readv), 0},
                                      {SCMP_SYS(process_vm_writev), 0}};
  for (const OwnPidRule& rule : own_pid_rules) {
    absl::Status status = Check(
        seccomp_rule_add(ctx, SCMP_ACT_ALLOW, rule.nr, 1, SCMP_CMP(rule.arg, SCMP_CMP_EQ, self)),
        "own-pid rule");
    if (!status.ok()) return status;
  }
  // pid 0 means "the caller".
  absl::Status own_limits =
      Check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, SCMP_A0(SCMP_CMP_EQ, 0)),
            "pid 0 rule");
  if (!own_limits.ok()) return own_limits;
  for (int option : kAllowedPrctls) {
    absl::Status status =
        Check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                               SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(option))),
              "prctl rule");
    if (!status.ok()) return status;
  }
  // Whether an ambient capability is set, a read libcap-ng's constructor makes (so
  // libaudit and libpam, which link it, load); the other ambient operations stay refused.
  absl::Status ambient = Check(
      seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 2,
                       SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(PR_CAP_AMBIENT)),
                       SCMP_A1(SCMP_CMP_EQ, static_cast<scmp_datum_t>(PR_CAP_AMBIENT_IS_SET))),
      "ambient capability read rule");
  if (!ambient.ok()) return ambient;
  if (!permissive) {
    absl::Status modes = AddModeRules(ctx, extra_syscalls);
    if (!modes.ok()) return modes;
    for (unsigned long request : kAllowedIoctls) {
      absl::Status status =
          Check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
                                 SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, request)),
                "ioctl rule");
      if (!status.ok()) return status;
    }
  }
  // close_range, but not with CLOSE_RANGE_UNSHARE: it gives the calling thread a descriptor
  // table of its own, as a clone without CLONE_FILES would.
  if (const int close_range = seccomp_syscall_resolve_name("close_range");
      close_range != __NR_SCMP_ERROR) {
    for (const auto& [action, flag] : {std::pair<uint32_t, scmp_datum_t>{SCMP_ACT_ALLOW, 0},
                                       {SCMP_ACT_ERRNO(EPERM), CLOSE_RANGE_UNSHARE}}) {
      absl::Status status =
          Check(seccomp_rule_add(ctx, action, close_range, 1,
                                 SCMP_CMP64(2, SCMP_CMP_MASKED_EQ, CLOSE_RANGE_UNSHARE, flag)),
                "close_range rule");
      if (!status.ok()) return status;
    }
  }
  absl::Status clone = Check(
      permissive
          ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, kNamespaceCloneFlags, 0))
          : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, kThreadCloneFlags, kThreadCloneFlags)),
      "clone rule");
  if (!clone.ok()) return clone;
  // Netlink sockets: udev and libusb open them at init; in the worker's own network
  // namespace there is nothing to reach through them.
  absl::Status netlink =
      Check(seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(AF_NETLINK))),
            "netlink socket rule");
  if (!netlink.ok()) return netlink;
  // Unix sockets: permissive allows them. Strict fails socket(AF_UNIX) with EACCES instead
  // of killing the worker: glibc's NSS (getpwuid, getpwnam, getgrgid, ...) first asks nscd
  // or systemd-userdb over one and falls back to its files when that fails, and syslog()
  // drops its message. The worker gets no unix socket at all, so none of the host's is
  // reachable whatever the other layers show (docs/security.md, "Unix sockets").
  absl::Status unix_socket = Check(
      seccomp_rule_add(ctx, permissive ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket),
                       1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(AF_UNIX))),
      "unix socket rule");
  if (!unix_socket.ok()) return unix_socket;
  // Every other family fails with EACCES too, without a socket made: libcurl probes for
  // IPv6 as it starts (curl_version) and goes on without it, and a library that would reach
  // the network gets its own error for it instead of killing the worker. Strict refuses
  // socketpair so, which libcurl's multi interface falls back from.
  for (scmp_datum_t family = 0; family < AF_MAX; ++family) {
    if (family == AF_UNIX || family == AF_NETLINK) continue;
    absl::Status refused = Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                                                  SCMP_A0(SCMP_CMP_EQ, family)),
                                 "socket family rule");
    if (!refused.ok()) return refused;
  }
  absl::Status unknown_families =
      Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_GE, static_cast<scmp_datum_t>(AF_MAX))),
            "socket family rule");
  if (!unknown_families.ok() || permissive || IsExtra("socketpair", extra_syscalls)) {
    return unknown_families;
  }
  return Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socketpair), 0),
               "socketpair rule");
}

// Syscalls refused with an errno instead of a violation, where libraries have a fallback;
// a syscall the configuration adds to the policy is allowed instead.
struct RefusedSyscall {
  const char* name;
  int error;
  bool strict_only;
};
constexpr RefusedSyscall kRefusedSyscalls[] = {
    // glibc falls back to clone, which the clone rule filters (never an extra syscall).
    {"clone3", ENOSYS, false},
    // PulseAudio's memory pool (SDL_Init's audio), Wayland's shared buffers and systemd's
    // helpers fall back to other memory, as on kernels before 3.17. Permissive allows it.
    {"memfd_create", ENOSYS, true},
    // inotify instances and watches are counted against the host user that owns the
    // workers' user namespaces (root under a root ffiboxd), whatever user the worker runs
    // as: one worker could take the whole host's (systemd's, udev's) and no per-worker
    // bound exists. glib and the others watch files by polling when it is missing.
    {"inotify_init", ENOSYS, false},
    {"inotify_init1", ENOSYS, false},
    // So are a binding's watches on the instance it did not get (aionotify does not look
    // at inotify_init's result), and fanotify, for the same reasons.
    {"inotify_add_watch", ENOSYS, false},
    {"inotify_rm_watch", ENOSYS, false},
    {"fanotify_init", ENOSYS, false},
    {"fanotify_mark", ENOSYS, false},
    // Owners: the worker may give files no owner it does not have already. SQLite, which
    // believes itself root in the worker's user namespace, gives a journal the database's
    // owner and goes on without it. Permissive allows them (the kernel decides).
    {"chown", EPERM, true},
    {"fchown", EPERM, true},
    {"fchownat", EPERM, true},
    {"lchown", EPERM, true},
    // Hard links: in a scratch directory, on a host with fs.protected_hardlinks off, one
    // could give a file of the caller's a name the caller then opens as the library's
    // output. sem_open (which links its semaphore into /dev/shm) fails with EPERM and the
    // worker lives; permissive allows them.
    {"link", EPERM, true},
    {"linkat", EPERM, true},
};

absl::Status AddRefusedSyscalls(scmp_filter_ctx ctx, bool permissive,
                                const std::vector<std::string>& extra_syscalls) {
  for (const RefusedSyscall& refused : kRefusedSyscalls) {
    if (permissive && refused.strict_only) continue;
    if (IsExtra(refused.name, extra_syscalls)) continue;
    int nr = seccomp_syscall_resolve_name(refused.name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture
    absl::Status status =
        Check(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(refused.error), nr, 0), refused.name);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateSeccompPolicy(absl::string_view policy,
                                   const std::vector<std::string>& extra_syscalls) {
  if (policy != kStrictSeccompPolicy && policy != kPermissiveSeccompPolicy) {
    return absl::InvalidArgumentError(absl::StrCat("unknown seccomp policy \"", policy,
                                                   "\"; the policies are strict and permissive"));
  }
  for (const std::string& name : extra_syscalls) {
    if (seccomp_syscall_resolve_name(name.c_str()) == __NR_SCMP_ERROR) {
      return absl::InvalidArgumentError(absl::StrCat("unknown syscall \"", name,
                                                     "\" in the extra syscalls of the ", policy,
                                                     " seccomp policy"));
    }
    if (name == "clone3") {
      // Its flags are in memory, where no filter reaches: allowed, it would make processes
      // and namespaces that the clone rule refuses.
      return absl::InvalidArgumentError(
          "clone3 cannot be an extra syscall: seccomp cannot filter its flags (glibc falls "
          "back to clone, which the policy filters)");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> InstallSeccompPolicy(absl::string_view policy,
                                         const std::vector<std::string>& extra_syscalls) {
  absl::Status valid = ValidateSeccompPolicy(policy, extra_syscalls);
  if (!valid.ok()) return valid;
  const bool permissive = policy == kPermissiveSeccompPolicy;
  // Every syscall outside the policy becomes a notification to the broker, which kills the
  // worker and reports what the kernel told it: the verdict never rests on the worker's
  // own word, and no signal handler inside the worker can hide it.
  SeccompContext ctx(seccomp_init(SCMP_ACT_NOTIFY));
  if (ctx == nullptr) return absl::InternalError("seccomp_init(SCMP_ACT_NOTIFY) failed");
  for (const char* name : kStrictSyscalls) {
    absl::Status status = Allow(ctx.get(), name);
    if (!status.ok()) return status;
  }
  if (permissive) {
    for (const char* name : kPermissiveSyscalls) {
      absl::Status status = Allow(ctx.get(), name);
      if (!status.ok()) return status;
    }
  }
  absl::Status conditional = AddConditionalRules(ctx.get(), permissive, extra_syscalls);
  if (!conditional.ok()) return conditional;
  absl::Status by_argument = AddArgumentRules(ctx.get());
  if (!by_argument.ok()) return by_argument;
  for (const std::string& name : extra_syscalls) {
    // An unconditional rule supersedes the conditional ones a syscall may already have.
    int nr = seccomp_syscall_resolve_name(name.c_str());
    int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0);
    if (rc != 0 && rc != -EEXIST) {
      return absl::InvalidArgumentError(absl::StrCat(
          "extra syscall ", name, " cannot be added to the ", policy, " policy: ", strerror(-rc)));
    }
  }
  absl::Status refused = AddRefusedSyscalls(ctx.get(), permissive, extra_syscalls);
  if (!refused.ok()) return refused;
  // No TSYNC: the kernel refuses it together with a listener, and the caller is
  // single-threaded (see the header).
  absl::Status loaded = Check(seccomp_load(ctx.get()), "load");
  if (!loaded.ok()) return loaded;
  int listener = seccomp_notify_fd(ctx.get());
  if (listener < 0) return absl::InternalError("seccomp_notify_fd: the filter has no listener");
  return listener;
}

absl::StatusOr<SeccompViolation> ReceiveSeccompViolation(int listener) {
  struct seccomp_notif* request = nullptr;
  struct seccomp_notif_resp* response = nullptr;
  if (seccomp_notify_alloc(&request, &response) != 0) {
    return absl::ResourceExhaustedError("seccomp_notify_alloc failed");
  }
  int rc = seccomp_notify_receive(listener, request);
  SeccompViolation violation;
  violation.syscall = request->data.nr;
  for (int i = 0; i < 6; ++i) violation.args[i] = request->data.args[i];
  seccomp_notify_free(request, response);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("seccomp_notify_receive: ", strerror(-rc)));
  }
  return violation;
}

std::string DescribeSeccompViolation(const SeccompViolation& violation) {
  std::string name = SyscallName(violation.syscall);
  if (name == "ioctl") {
    return absl::StrCat(name, " 0x", absl::Hex(violation.args[1] & 0xffffffffu));
  }
  if (name == "socket") return absl::StrCat(name, " (family ", violation.args[0], ")");
  if (name == "prctl") return absl::StrCat(name, " (option ", violation.args[0], ")");
  return name;
}

std::string SyscallName(int number) {
  char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);
  if (name == nullptr) return absl::StrCat("syscall ", number);
  std::string result(name);
  free(name);
  return result;
}

}  // namespace ffibox

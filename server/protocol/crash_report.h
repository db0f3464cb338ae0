// The crash report ffibox-worker writes when a fatal signal hits it, or when it exits with a
// status other than 0 (a library's exit(1)): a fixed-size record on its own pipe (fd 4 at
// exec, moved up by the worker: server/worker/own_descriptors.h), written by an
// async-signal-safe handler just before the worker dies. The broker reads it after reaping
// the worker. It comes from a process running untrusted code, so the broker uses it only to
// add detail (fault address, blocked syscall, how much address space was mapped) to what
// waitpid already proved, and only when its signal (or exit status) matches the real one.
#ifndef FFIBOX_SERVER_PROTOCOL_CRASH_REPORT_H_
#define FFIBOX_SERVER_PROTOCOL_CRASH_REPORT_H_

#include <cstdint>

namespace ffibox {

inline constexpr int kCrashReportFd = 4;
// The status ffibox-worker exits with when it cannot start its own thread (the task limit of
// ffiboxd's user or cgroup, or its memory), before it has said it started
// (WorkerReply.started): ffiboxd takes it for that only then.
inline constexpr int kWorkerExitNoThread = 3;
inline constexpr uint32_t kCrashReportMagic = 0xffb0c7a5;

struct CrashReport {
  uint32_t magic = 0;    // kCrashReportMagic
  int32_t signal = 0;    // the fatal signal, or 0 for an exit
  int32_t code = 0;      // siginfo si_code, or the exit status
  int32_t syscall = -1;  // for SIGSYS: the syscall number the filter refused
  uint64_t address = 0;  // siginfo si_addr: the faulting address for SIGSEGV / SIGBUS
  // The worker's address space then (VmSize) and its cap (RLIMIT_AS; 0: none), in bytes: a
  // death close to the cap may be a mapping it refused.
  uint64_t address_space = 0;
  uint64_t address_space_cap = 0;
};

// Installs the handler in the worker: fatal signals write a CrashReport to kCrashReportFd (or
// where SetCrashReportFd moved it), then die with the same signal; an exit with a status
// other than 0 writes one too (on_exit). Sets up an alternate signal stack for the calling
// thread so a stack overflow is reported too. Call once, early in the worker's main.
void InstallCrashReporter();

// Makes the handler write to `fd` from now on (the crash pipe's new number).
void SetCrashReportFd(int fd);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_PROTOCOL_CRASH_REPORT_H_

#include "server/broker/worker_death.h"

#include <signal.h>
#include <string.h>

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/jail/seccomp_policy.h"
#include "server/protocol/crash_report.h"

namespace ffibox {
namespace {

std::string WhileRunning(absl::string_view function) {
  return function.empty() ? " while idle" : absl::StrCat(" while running ", function);
}

// What the worker's report says of its address space when it had mapped at least half of
// its cap: a mapping past the cap fails (the library may then exit or crash), whatever its
// size, so a large reservation (a JIT's, an emulator's) can fail well below it. The
// worker's own numbers, labelled as such; "" otherwise.
std::string AddressSpaceNote(const std::optional<CrashReport>& report) {
  if (!report.has_value() || report->address_space_cap == 0 ||
      report->address_space < report->address_space_cap / 2) {
    return "";
  }
  return absl::StrCat("; the worker reported ", report->address_space >> 20,
                      " MiB of address space mapped, of its cap of ",
                      report->address_space_cap >> 20,
                      " MiB (the session's memory limit: the server's "
                      "limits.session_memory_bytes, or the session's own memory_limit_bytes): "
                      "a mapping past the cap fails inside the library");
}

}  // namespace

std::string SignalName(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat("signal ", signal);
}

v1::Error DescribeWorkerDeath(const WorkerExit& exit, DeathCause cause, absl::string_view function,
                              absl::Duration deadline, absl::string_view detail) {
  v1::Error error;
  error.set_function(std::string(function));
  error.set_signal(exit.signal);
  error.set_exit_code(exit.exit_code);
  switch (cause) {
    case DeathCause::kDeadline:
      error.set_code(v1::CALL_TIMEOUT);
      error.set_message(absl::StrCat(function, " did not return within ",
                                     absl::FormatDuration(deadline), "; its worker was killed"));
      return error;
    case DeathCause::kProtocolViolation:
      error.set_code(v1::WORKER_CRASHED);
      error.set_message(absl::StrCat("worker broke the channel protocol", WhileRunning(function),
                                     " (", detail, "); it was killed"));
      return error;
    case DeathCause::kBeforeStart:
      if (exit.signal == 0 && exit.exit_code == kWorkerExitNoThread) {
        error.set_code(v1::RESOURCE_EXHAUSTED);
        error.set_message(
            "the worker could not start its own thread (the task limit of ffiboxd's user or "
            "cgroup, or its memory)");
        return error;
      }
      break;
    case DeathCause::kUnexpected:
      break;
  }
  // The jail's verdict, on the kernel's word: the seccomp listener reported a forbidden
  // syscall and ffiboxd killed the worker for it.
  if (exit.seccomp_violation >= 0) {
    std::string name = SyscallName(exit.seccomp_violation);
    error.set_code(v1::SANDBOX_VIOLATION);
    error.set_syscall(name);
    const std::string& called =
        exit.seccomp_violation_detail.empty() ? name : exit.seccomp_violation_detail;
    error.set_message(absl::StrCat("the worker", WhileRunning(function), " called ", called,
                                   ", which the ", exit.seccomp_policy,
                                   " seccomp policy forbids; ffiboxd killed it"));
    return error;
  }
  // A worker ffiboxd killed after it closed its channel, unless its cgroup counted an
  // out-of-memory kill: then memory ran out first (the kernel killed a process of the worker,
  // or the worker itself, whose init ffiboxd then killed), which is what the caller can act on.
  if (exit.signal == SIGKILL && exit.killed_by_broker && exit.oom_kills.value_or(0) == 0) {
    error.set_code(v1::WORKER_CRASHED);
    error.set_message(absl::StrCat("worker closed its channel but kept running",
                                   WhileRunning(function), "; ffiboxd killed it"));
    return error;
  }
  // A SIGKILL ffiboxd did not send: the CPU-time hard limit's (past the SIGXCPU soft limit,
  // which the library ignored), the out-of-memory killer's, or the library's own (or another
  // process's of the worker). The CPU time it used and its cgroup's count of OOM kills tell
  // them apart; without a cgroup, only the CPU time does.
  if (exit.signal == SIGKILL) {
    const bool past_cpu_limit = exit.cpu_seconds > 0 && exit.cpu_used_seconds >= exit.cpu_seconds;
    if (past_cpu_limit) {
      error.set_code(v1::RESOURCE_EXHAUSTED);
      error.set_message(absl::StrCat("CPU time limit of ", exit.cpu_seconds, " s exceeded",
                                     WhileRunning(function),
                                     " (SIGXCPU ignored: the kernel killed the worker at the "
                                     "hard limit)"));
    } else if (exit.oom_kills.value_or(0) > 0) {
      error.set_code(v1::RESOURCE_EXHAUSTED);
      error.set_message(absl::StrCat("worker killed by the kernel's out-of-memory killer",
                                     WhileRunning(function),
                                     " (the session's memory limit, limits.session_memory_bytes, "
                                     "or the host's memory ran out)"));
    } else if (exit.oom_kills.has_value() && exit.cpu_used_seconds >= 0) {
      error.set_code(v1::WORKER_CRASHED);
      error.set_message(absl::StrCat("worker killed by SIGKILL", WhileRunning(function),
                                     ", which neither ffiboxd nor a limit sent (the library "
                                     "killed itself, or a process of the worker did)"));
    } else {
      error.set_code(v1::RESOURCE_EXHAUSTED);
      error.set_message(absl::StrCat(
          "worker killed by SIGKILL", WhileRunning(function),
          ", which ffiboxd did not send: the kernel's out-of-memory killer chose it, or the "
          "library killed itself (the worker has no cgroup to tell which)"));
    }
    return error;
  }
  if (exit.signal == SIGXCPU && exit.cpu_seconds > 0) {
    error.set_code(v1::RESOURCE_EXHAUSTED);
    error.set_message(absl::StrCat("CPU time limit of ", exit.cpu_seconds, " s exceeded",
                                   WhileRunning(function), "; its worker was killed"));
    return error;
  }
  if (exit.signal == SIGXFSZ && exit.file_bytes > 0) {
    error.set_code(v1::RESOURCE_EXHAUSTED);
    error.set_message(absl::StrCat("file size limit of ", exit.file_bytes, " bytes exceeded",
                                   WhileRunning(function), "; its worker was killed"));
    return error;
  }
  error.set_code(v1::WORKER_CRASHED);
  if (exit.signal != 0) {
    std::string where;
    if (exit.report.has_value() && (exit.signal == SIGSEGV || exit.signal == SIGBUS)) {
      error.set_fault_address(exit.report->address);
      where = absl::StrCat(" at address 0x", absl::Hex(exit.report->address));
    }
    // A SIGSYS is never the jail's: the jail reports violations through the listener. A
    // syscall the worker's own report names is its claim and is labelled so.
    std::string claim;
    if (exit.signal == SIGSYS && exit.report.has_value() && exit.report->syscall >= 0) {
      claim = absl::StrCat("; the worker's own crash report claims a forbidden ",
                           SyscallName(exit.report->syscall),
                           ", which the jail did not see (unverified)");
    }
    error.set_message(absl::StrCat("worker killed by ", SignalName(exit.signal), " (",
                                   strsignal(exit.signal), ")", where, WhileRunning(function),
                                   claim, AddressSpaceNote(exit.report)));
  } else if (exit.exit_code >= 0) {
    error.set_message(absl::StrCat("worker exited with status ", exit.exit_code,
                                   WhileRunning(function), AddressSpaceNote(exit.report)));
  } else {
    error.set_message(absl::StrCat("worker ended", WhileRunning(function)));
  }
  return error;
}

}  // namespace ffibox

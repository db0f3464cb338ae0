#include "server/protocol/crash_report.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace ffibox {
namespace {

// Read by the signal handler: a lock-free atomic is async-signal-safe.
std::atomic<int> crash_report_fd{kCrashReportFd};
static_assert(std::atomic<int>::is_always_lock_free);

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};

void OnFatalSignal(int signal_number, siginfo_t* info, void*) {
  CrashReport report;
  report.magic = kCrashReportMagic;
  report.signal = signal_number;
  report.code = info->si_code;
#ifdef SIGSYS
  if (signal_number == SIGSYS) report.syscall = info->si_syscall;
#endif
  report.address = reinterpret_cast<uintptr_t>(info->si_addr);
  (void)!write(crash_report_fd.load(std::memory_order_relaxed), &report, sizeof(report));
  // Die of the same signal, so the broker's waitpid sees it.
  struct sigaction default_action = {};
  default_action.sa_handler = SIG_DFL;
  sigaction(signal_number, &default_action, nullptr);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, signal_number);
  sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
  raise(signal_number);
  _exit(128 + signal_number);
}

}  // namespace

void InstallCrashReporter() {
  static constexpr size_t kAltStackBytes = 64 * 1024;
  stack_t alt = {};
  alt.ss_sp = std::malloc(kAltStackBytes);  // lives as long as the process
  alt.ss_size = kAltStackBytes;
  if (alt.ss_sp != nullptr) sigaltstack(&alt, nullptr);
  struct sigaction action = {};
  action.sa_sigaction = OnFatalSignal;
  action.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  for (int signal_number : kFatalSignals) sigaction(signal_number, &action, nullptr);
}

void SetCrashReportFd(int fd) { crash_report_fd.store(fd, std::memory_order_relaxed); }

}  // namespace ffibox

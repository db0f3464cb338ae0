#include "server/protocol/crash_report.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>

namespace ffibox {
namespace {

// Read by the signal handler: a lock-free atomic is async-signal-safe.
std::atomic<int> crash_report_fd{kCrashReportFd};
static_assert(std::atomic<int>::is_always_lock_free);

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS};

// The "VmSize:" line of /proc/self/status, in bytes; 0 when it cannot be read. Async-signal-
// safe: open, read and close, and no library parsing.
uint64_t AddressSpaceNow() {
  const int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[4096];
  const ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  if (n <= 0) return 0;
  text[n] = '\0';
  static constexpr char kKey[] = "VmSize:";
  for (ssize_t i = 0; i + 7 < n; ++i) {
    if ((i != 0 && text[i - 1] != '\n') || memcmp(text + i, kKey, 7) != 0) continue;
    uint64_t kib = 0;
    for (ssize_t j = i + 7; j < n && text[j] != '\n'; ++j) {
      if (text[j] >= '0' && text[j] <= '9') kib = kib * 10 + static_cast<uint64_t>(text[j] - '0');
    }
    return kib << 10;
  }
  return 0;
}

// The worker's pid: a process the library forked inherits the handlers and the pipe, and
// its report would be taken for the worker's (the broker believes the first).
std::atomic<pid_t> worker_pid{0};

void Write(CrashReport report) {
  if (getpid() != worker_pid.load(std::memory_order_relaxed)) return;
  report.magic = kCrashReportMagic;
  report.address_space = AddressSpaceNow();
  struct rlimit limit;
  if (getrlimit(RLIMIT_AS, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    report.address_space_cap = limit.rlim_cur;
  }
  (void)!write(crash_report_fd.load(std::memory_order_relaxed), &report, sizeof(report));
}

void OnExit(int status, void*) {
  if (status == 0) return;
  CrashReport report;
  report.code = status & 0xff;  // as the broker's waitpid sees it
  Write(report);
}

void OnFatalSignal(int signal_number, siginfo_t* info, void*) {
  CrashReport report;
  report.signal = signal_number;
  report.code = info->si_code;
#ifdef SIGSYS
  if (signal_number == SIGSYS) report.syscall = info->si_syscall;
#endif
  report.address = reinterpret_cast<uintptr_t>(info->si_addr);
  Write(report);
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
  worker_pid.store(getpid(), std::memory_order_relaxed);
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
  on_exit(OnExit, nullptr);
}

void SetCrashReportFd(int fd) { crash_report_fd.store(fd, std::memory_order_relaxed); }

}  // namespace ffibox

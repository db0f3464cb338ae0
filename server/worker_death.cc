#include "server/worker_death.h"

#include <signal.h>
#include <string.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace ffibox {
namespace {

std::string SignalName(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat("signal ", signal);
}

std::string WhileRunning(absl::string_view function) {
  return function.empty() ? " while idle" : absl::StrCat(" while running ", function);
}

}  // namespace

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
    case DeathCause::kUnexpected:
      break;
  }
  error.set_code(v1::WORKER_CRASHED);
  if (exit.signal != 0) {
    std::string where;
    if (exit.report.has_value() && (exit.signal == SIGSEGV || exit.signal == SIGBUS)) {
      error.set_fault_address(exit.report->address);
      where = absl::StrCat(" at address 0x", absl::Hex(exit.report->address));
    }
    error.set_message(absl::StrCat("worker killed by ", SignalName(exit.signal), " (",
                                   strsignal(exit.signal), ")", where, WhileRunning(function)));
  } else if (exit.exit_code >= 0) {
    error.set_message(
        absl::StrCat("worker exited with status ", exit.exit_code, WhileRunning(function)));
  } else {
    error.set_message(absl::StrCat("worker ended", WhileRunning(function)));
  }
  return error;
}

}  // namespace ffibox

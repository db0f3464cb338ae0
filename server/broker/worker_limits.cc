#include "server/broker/worker_limits.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/jail/sanitizers.h"

namespace ffibox {
namespace {

// Lowers `resource` of `pid` to (soft, hard), never raising either.
absl::Status Lower(pid_t pid, int resource, const char* name, rlim_t soft, rlim_t hard) {
  struct rlimit current;
  if (prlimit(pid, static_cast<__rlimit_resource>(resource), nullptr, &current) != 0) {
    return absl::InternalError(
        absl::StrCat("prlimit(", name, ") of worker ", pid, ": ", strerror(errno)));
  }
  struct rlimit lowered;
  lowered.rlim_max = std::min(current.rlim_max, hard);
  lowered.rlim_cur = std::min({current.rlim_cur, soft, lowered.rlim_max});
  if (prlimit(pid, static_cast<__rlimit_resource>(resource), &lowered, nullptr) != 0) {
    return absl::InternalError(
        absl::StrCat("prlimit(", name, ") of worker ", pid, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

// The "Threads:" count of /proc/<pid>/status; 0 when it cannot be read (the process ended).
uint64_t CountThreads(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    absl::string_view rest = line;
    uint64_t threads = 0;
    if (absl::ConsumePrefix(&rest, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &threads)) {
      return threads;
    }
  }
  return 0;
}

}  // namespace

std::vector<std::string> ProcessCapWatch::NewLimitHits() {
  const uint64_t tasks = CountThreads(worker_pid_) + other_tasks_;
  const bool was_at_cap = at_cap_;
  at_cap_ = tasks >= cap_;
  if (!at_cap_ || was_at_cap) return {};
  return {absl::StrCat("threads and processes: the worker is at its cap of ", cap_,
                       " (its own RLIMIT_NPROC; creating more fails)")};
}

absl::Status ApplyWorkerLimits(pid_t pid, const WorkerLimits& limits) {
  if (limits.address_space_bytes != 0 && kAddressSpaceLimitApplies) {
    absl::Status status =
        Lower(pid, RLIMIT_AS, "RLIMIT_AS", limits.address_space_bytes, limits.address_space_bytes);
    if (!status.ok()) return status;
  }
  if (limits.cpu_seconds != 0) {
    absl::Status status =
        Lower(pid, RLIMIT_CPU, "RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + 1);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace ffibox

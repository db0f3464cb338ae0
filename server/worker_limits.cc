#include "server/worker_limits.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

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

}  // namespace

absl::Status ApplyWorkerLimits(pid_t pid, const WorkerLimits& limits) {
  if (limits.address_space_bytes != 0) {
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

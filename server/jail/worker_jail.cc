#include "server/jail/worker_jail.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "absl/strings/str_cat.h"
#include "server/jail/sanitizers.h"
#include "server/jail/seccomp_policy.h"

namespace ffibox {
namespace {

absl::Status SetLimit(int resource, const char* name, uint64_t soft, uint64_t hard) {
  struct rlimit limit;
  limit.rlim_cur = soft;
  limit.rlim_max = hard;
  struct rlimit current;
  if (getrlimit(resource, &current) == 0 && current.rlim_max != RLIM_INFINITY) {
    limit.rlim_max = std::min<rlim_t>(limit.rlim_max, current.rlim_max);
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_cur, limit.rlim_max);
  }
  if (setrlimit(resource, &limit) != 0) {
    return absl::InternalError(absl::StrCat("setrlimit(", name, "): ", strerror(errno)));
  }
  return absl::OkStatus();
}

struct FixedLimit {
  int resource;
  const char* name;
  uint64_t most;
};

// Signals queued to the worker (sigqueue, real-time signals, POSIX timers) are charged to its
// user up to the host's root: without a cap of its own, one worker could take the budget of
// every process of the broker's user. Real-time priority and a raised nice value, POSIX
// message queues: none. Locked memory: the kernel's own default.
constexpr FixedLimit kFixedLimits[] = {
    {RLIMIT_SIGPENDING, "sigpending", kWorkerPendingSignals},
    {RLIMIT_RTPRIO, "rtprio", 0},
    {RLIMIT_NICE, "nice", 0},
    {RLIMIT_MSGQUEUE, "msgqueue", 0},
    {RLIMIT_MEMLOCK, "memlock", 64 << 10},
};

}  // namespace

absl::Status LowerOpenFiles(const internal::WorkerJail& jail) {
  if (jail.open_files() == 0) return absl::OkStatus();
  return SetLimit(RLIMIT_NOFILE, "nofile", jail.open_files(), jail.open_files());
}

internal::WorkerJail WorkerJailFor(const JailOptions& options, bool self_test) {
  internal::WorkerJail jail;
  jail.set_seccomp_policy(options.seccomp_policy);
  for (const std::string& name : options.extra_syscalls) jail.add_extra_syscalls(name);
  jail.set_address_space_bytes(options.address_space_bytes);
  jail.set_cpu_seconds(options.cpu_seconds);
  jail.set_open_files(options.open_files);
  jail.set_processes(options.processes);
  jail.set_file_bytes(options.file_bytes);
  jail.set_self_test(self_test);
  return jail;
}

absl::StatusOr<int> ApplyWorkerJail(const internal::WorkerJail& jail) {
  absl::Status status = SetLimit(RLIMIT_CORE, "core", 0, 0);
  if (status.ok() && jail.address_space_bytes() > 0 && kAddressSpaceLimitApplies) {
    status = SetLimit(RLIMIT_AS, "as", jail.address_space_bytes(), jail.address_space_bytes());
  }
  if (status.ok() && jail.cpu_seconds() > 0) {
    status = SetLimit(RLIMIT_CPU, "cpu", jail.cpu_seconds(), jail.cpu_seconds() + 2);
  }
  if (status.ok() && jail.processes() > 0) {
    status = SetLimit(RLIMIT_NPROC, "nproc", jail.processes(), jail.processes());
  }
  if (status.ok() && jail.file_bytes() > 0) {
    status = SetLimit(RLIMIT_FSIZE, "fsize", jail.file_bytes(), jail.file_bytes());
  }
  // Budgets the kernel keeps per user of the host (or of the namespace's owner), which every
  // worker shares with the others and with the broker's user: a worker gets a small share
  // of each, or none.
  for (const FixedLimit& fixed : kFixedLimits) {
    if (status.ok()) status = SetLimit(fixed.resource, fixed.name, fixed.most, fixed.most);
  }
  if (!status.ok()) return status;
  if (jail.seccomp_policy().empty()) return -1;  // the empty jail: no jail configured
  return InstallSeccompPolicy(
      jail.seccomp_policy(),
      std::vector<std::string>(jail.extra_syscalls().begin(), jail.extra_syscalls().end()));
}

}  // namespace ffibox

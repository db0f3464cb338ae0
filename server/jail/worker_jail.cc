#include "server/jail/worker_jail.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "server/jail/sanitizers.h"
#include "server/jail/seccomp_policy.h"

namespace ffibox {
namespace {

constexpr absl::string_view kSeccompFlag = "--jail_seccomp=";
constexpr absl::string_view kExtraFlag = "--jail_extra_syscalls=";
constexpr absl::string_view kRlimitsFlag = "--jail_rlimits=";
constexpr absl::string_view kSelfTestFlag = "--jail_self_test";

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

}  // namespace

std::vector<std::string> WorkerJailFlags(const JailOptions& options) {
  if (!options.enabled) return {};
  std::vector<std::string> flags = {absl::StrCat(kSeccompFlag, options.seccomp_policy)};
  if (!options.extra_syscalls.empty()) {
    flags.push_back(absl::StrCat(kExtraFlag, absl::StrJoin(options.extra_syscalls, ",")));
  }
  flags.push_back(absl::StrCat(kRlimitsFlag, "as:", options.address_space_bytes,
                               ",cpu:", options.cpu_seconds, ",nofile:", options.open_files,
                               ",nproc:", options.processes, ",fsize:", options.file_bytes));
  return flags;
}

absl::StatusOr<WorkerJail> ParseWorkerJailFlags(int argc, char** argv) {
  WorkerJail jail;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, kSeccompFlag)) {
      jail.seccomp = true;
      jail.seccomp_policy = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, kExtraFlag)) {
      jail.extra_syscalls = absl::StrSplit(arg, ',', absl::SkipEmpty());
    } else if (absl::ConsumePrefix(&arg, kRlimitsFlag)) {
      for (absl::string_view entry : absl::StrSplit(arg, ',', absl::SkipEmpty())) {
        std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(entry, ':');
        uint64_t value = 0;
        if (!absl::SimpleAtoi(kv.second, &value)) {
          return absl::InvalidArgumentError(absl::StrCat("bad rlimit entry \"", entry, "\""));
        }
        if (kv.first == "as") {
          jail.address_space_bytes = value;
        } else if (kv.first == "cpu") {
          jail.cpu_seconds = value;
        } else if (kv.first == "nofile") {
          jail.open_files = value;
        } else if (kv.first == "nproc") {
          jail.processes = value;
        } else if (kv.first == "fsize") {
          jail.file_bytes = value;
        } else {
          return absl::InvalidArgumentError(absl::StrCat("unknown rlimit \"", kv.first, "\""));
        }
      }
    } else if (arg == kSelfTestFlag) {
      jail.self_test = true;
    } else if (absl::StartsWith(arg, "--jail_")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown jail flag ", arg));
    }
  }
  return jail;
}

absl::StatusOr<int> ApplyWorkerJail(const WorkerJail& jail) {
  absl::Status status = SetLimit(RLIMIT_CORE, "core", 0, 0);
  if (status.ok() && jail.address_space_bytes > 0 && kAddressSpaceLimitApplies) {
    status = SetLimit(RLIMIT_AS, "as", jail.address_space_bytes, jail.address_space_bytes);
  }
  if (status.ok() && jail.cpu_seconds > 0) {
    status = SetLimit(RLIMIT_CPU, "cpu", jail.cpu_seconds, jail.cpu_seconds + 2);
  }
  if (status.ok() && jail.open_files > 0) {
    status = SetLimit(RLIMIT_NOFILE, "nofile", jail.open_files, jail.open_files);
  }
  if (status.ok() && jail.processes > 0) {
    status = SetLimit(RLIMIT_NPROC, "nproc", jail.processes, jail.processes);
  }
  if (status.ok() && jail.file_bytes > 0) {
    status = SetLimit(RLIMIT_FSIZE, "fsize", jail.file_bytes, jail.file_bytes);
  }
  if (!status.ok()) return status;
  if (!jail.seccomp) return -1;
  return InstallSeccompPolicy(jail.seccomp_policy, jail.extra_syscalls);
}

}  // namespace ffibox

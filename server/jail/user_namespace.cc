#include "server/jail/user_namespace.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ffibox {
namespace {

absl::Status WriteProcFile(pid_t pid, const char* name, const std::string& content) {
  std::string path = absl::StrCat("/proc/", pid, "/", name);
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return absl::PermissionDeniedError(absl::StrCat(path, ": ", strerror(errno)));
  ssize_t n = write(fd, content.data(), content.size());
  int saved = errno;
  close(fd);
  if (n != static_cast<ssize_t>(content.size())) {
    return absl::PermissionDeniedError(
        absl::StrCat("writing \"", content.substr(0, content.size() - 1), "\" to ", path, ": ",
                     n < 0 ? strerror(saved) : "short write"));
  }
  return absl::OkStatus();
}

constexpr const char* kNewUidMap = "/usr/bin/newuidmap";
constexpr const char* kNewGidMap = "/usr/bin/newgidmap";

// The first id of the user's first range in /etc/subuid or /etc/subgid ("name:start:count"
// or "uid:start:count"), or -1.
long FirstSubordinateId(const char* file, const std::string& name, uid_t uid) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields = absl::StrSplit(line, ':');
    long start = 0, count = 0;
    if (fields.size() != 3 || (fields[0] != name && fields[0] != std::to_string(uid)) ||
        !absl::SimpleAtoi(fields[1], &start) || !absl::SimpleAtoi(fields[2], &count) || count < 1 ||
        start <= 0) {
      continue;
    }
    return start;
  }
  return -1;
}

HostIds DecideWorkerIds() {
  if (geteuid() == 0) return UnprivilegedWorkerIds();
  struct passwd* pw = getpwuid(geteuid());
  std::string name = pw != nullptr ? pw->pw_name : "";
  long uid = FirstSubordinateId("/etc/subuid", name, geteuid());
  long gid = FirstSubordinateId("/etc/subgid", name, geteuid());
  if (uid > 0 && gid > 0 && access(kNewUidMap, X_OK) == 0 && access(kNewGidMap, X_OK) == 0) {
    return {static_cast<uid_t>(uid), static_cast<gid_t>(gid), true};
  }
  return BrokerIds();
}

// Runs `helper pid 0 id 1` and waits for it. The reason on failure.
absl::Status RunMapHelper(const char* helper, pid_t pid, unsigned id) {
  std::vector<std::string> args = {helper, std::to_string(pid), "0", std::to_string(id), "1"};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  char* const empty_env[] = {nullptr};
  pid_t child = -1;
  int rc = posix_spawn(&child, helper, &actions, nullptr, argv.data(), empty_env);
  posix_spawn_file_actions_destroy(&actions);
  if (rc == EAGAIN || rc == ENOMEM) {  // out of processes or memory: not the layer's fault
    return absl::ResourceExhaustedError(absl::StrCat(helper, ": ", strerror(rc)));
  }
  if (rc != 0) return absl::PermissionDeniedError(absl::StrCat(helper, ": ", strerror(rc)));
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(helper, " ", pid, " 0 ", id, " 1 failed (status ", status, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

HostIds BrokerIds() { return {geteuid(), getegid(), false}; }

HostIds WorkerHostIds() {
  static const HostIds ids = DecideWorkerIds();
  return ids;
}

bool WorkerIsAnotherUser() { return WorkerHostIds().uid != geteuid(); }

std::string DescribeWorkerIds() {
  HostIds ids = WorkerHostIds();
  if (geteuid() == 0) return absl::StrCat(ids.uid, " (nobody)");
  if (ids.subordinate) return absl::StrCat(ids.uid, " (a subordinate uid of yours)");
  return absl::StrCat(ids.uid,
                      " (yours: no subordinate ids or no newuidmap; no capabilities outside "
                      "its namespace)");
}

absl::Status WriteUserNamespaceMaps(pid_t pid, HostIds ids) {
  if (ids.subordinate) {
    absl::Status uid = RunMapHelper(kNewUidMap, pid, ids.uid);
    if (!uid.ok()) return uid;
    return RunMapHelper(kNewGidMap, pid, ids.gid);
  }
  if (geteuid() != 0) {
    absl::Status denied = WriteProcFile(pid, "setgroups", "deny\n");
    if (!denied.ok()) return denied;
  }
  absl::Status uid = WriteProcFile(pid, "uid_map", absl::StrCat("0 ", ids.uid, " 1\n"));
  if (!uid.ok()) return uid;
  return WriteProcFile(pid, "gid_map", absl::StrCat("0 ", ids.gid, " 1\n"));
}

}  // namespace ffibox

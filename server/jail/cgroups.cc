#include "server/jail/cgroups.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace ffibox {
namespace {

constexpr const char* kV1Controllers[] = {"pids", "memory", "cpu"};
constexpr uint64_t kCpuPeriodMicros = 100000;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

absl::Status WriteFile(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  }
  ssize_t written = write(fd, value.data(), value.size());
  int error = errno;
  close(fd);
  if (written != static_cast<ssize_t>(value.size())) {
    return absl::InternalError(
        absl::StrCat("write \"", value, "\" to ", path, ": ", strerror(error)));
  }
  return absl::OkStatus();
}

// Where this process's cgroup of each hierarchy lives: from /proc/self/cgroup
// ("hierarchy-id:controllers:path") and /proc/self/mountinfo (the mount points).
struct Hierarchies {
  std::string v2;               // the unified cgroup directory, or ""
  std::vector<std::string> v1;  // per kV1Controllers, or "" when missing
};

Hierarchies FindHierarchies() {
  Hierarchies found;
  found.v1.assign(3, "");
  std::string v2_path;
  std::vector<std::pair<std::vector<std::string>, std::string>> v1_paths;  // controllers, path
  for (absl::string_view line : absl::StrSplit(ReadFile("/proc/self/cgroup"), '\n')) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) {
      v2_path = parts[2];
    } else {
      v1_paths.emplace_back(absl::StrSplit(parts[1], ','), parts[2]);
    }
  }
  for (absl::string_view line : absl::StrSplit(ReadFile("/proc/self/mountinfo"), '\n')) {
    // "id parent major:minor root mountpoint options ... - fstype source superoptions"
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || dash + 3 > fields.end()) continue;
    const std::string& root = fields[3];
    const std::string& mount_point = fields[4];
    const std::string& fstype = *(dash + 1);
    // The mount shows the hierarchy from `root`; this process's path is relative to it.
    auto below_root = [&root](const std::string& path) -> std::optional<std::string> {
      if (root == "/") return path;
      if (path == root) return std::string("/");
      if (absl::StartsWith(path, root + "/")) return path.substr(root.size());
      return std::nullopt;
    };
    if (fstype == "cgroup2" && !v2_path.empty() && found.v2.empty()) {
      std::optional<std::string> relative = below_root(v2_path);
      if (relative.has_value()) found.v2 = mount_point + (*relative == "/" ? "" : *relative);
    } else if (fstype == "cgroup") {
      std::vector<std::string> options = absl::StrSplit(*(dash + 3), ',');
      for (int i = 0; i < 3; ++i) {
        if (!found.v1[i].empty() ||
            std::find(options.begin(), options.end(), kV1Controllers[i]) == options.end()) {
          continue;
        }
        for (const auto& [controllers, path] : v1_paths) {
          if (std::find(controllers.begin(), controllers.end(), kV1Controllers[i]) ==
              controllers.end()) {
            continue;
          }
          std::optional<std::string> relative = below_root(path);
          if (relative.has_value()) {
            found.v1[i] = mount_point + (*relative == "/" ? "" : *relative);
          }
        }
      }
    }
  }
  return found;
}

bool HasV2Controllers(const std::string& dir) {
  std::vector<std::string> controllers =
      absl::StrSplit(absl::StripAsciiWhitespace(ReadFile(dir + "/cgroup.controllers")), ' ');
  for (const char* wanted : kV1Controllers) {
    if (std::find(controllers.begin(), controllers.end(), wanted) == controllers.end()) {
      return false;
    }
  }
  return true;
}

// rmdir that waits briefly for a reaped process's group to empty.
void RemoveGroup(const std::string& dir) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (errno != EBUSY) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  fprintf(stderr, "ffiboxd: cannot remove cgroup %s: %s\n", dir.c_str(), strerror(errno));
}

// Removes ffibox-<pid> trees under `parent` whose ffiboxd is gone (it was killed).
void RemoveStaleTrees(const std::string& parent) {
  DIR* dir = opendir(parent.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (struct dirent* entry = readdir(dir)) {
    absl::string_view name = entry->d_name;
    int pid = 0;
    if (!absl::ConsumePrefix(&name, "ffibox-") || !absl::SimpleAtoi(name, &pid)) continue;
    if (pid == getpid() || (kill(pid, 0) == 0 || errno == EPERM)) continue;
    stale.push_back(absl::StrCat(parent, "/", entry->d_name));
  }
  closedir(dir);
  for (const std::string& tree : stale) {
    DIR* workers = opendir(tree.c_str());
    if (workers != nullptr) {
      while (struct dirent* entry = readdir(workers)) {
        if (absl::StartsWith(entry->d_name, "worker-")) {
          rmdir(absl::StrCat(tree, "/", entry->d_name).c_str());
        }
      }
      closedir(workers);
    }
    rmdir(tree.c_str());
  }
}

absl::Status MakeGroup(const std::string& dir) {
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CgroupTree>> CgroupTree::Create(uint64_t total_memory_bytes) {
  const std::string name = absl::StrCat("ffibox-", getpid());
  Hierarchies found = FindHierarchies();
  std::string v2_reason = "no cgroup v2 hierarchy";
  if (!found.v2.empty()) {
    if (!HasV2Controllers(found.v2)) {
      v2_reason =
          absl::StrCat("cgroup v2 at ", found.v2, " lacks the pids, memory or cpu controller");
    } else {
      // Controllers for the children of our cgroup; this fails (EBUSY) when the broker's own
      // cgroup holds processes and is not the root: then v2 is not delegated to us.
      absl::Status enabled = WriteFile(found.v2 + "/cgroup.subtree_control", "+pids +memory +cpu");
      std::string tree = found.v2 + "/" + name;
      if (enabled.ok()) enabled = MakeGroup(tree);
      if (enabled.ok()) enabled = WriteFile(tree + "/cgroup.subtree_control", "+pids +memory +cpu");
      if (enabled.ok() && total_memory_bytes != 0) {
        enabled = WriteFile(tree + "/memory.max", absl::StrCat(total_memory_bytes));
      }
      if (enabled.ok()) {
        RemoveStaleTrees(found.v2);
        return std::unique_ptr<CgroupTree>(new CgroupTree(true, {tree}));
      }
      rmdir(tree.c_str());
      v2_reason = std::string(enabled.message());
    }
  }
  std::vector<std::string> parents;
  for (int i = 0; i < 3; ++i) {
    if (found.v1[i].empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          v2_reason, "; no cgroup v1 hierarchy with the ", kV1Controllers[i], " controller"));
    }
    RemoveStaleTrees(found.v1[i]);
    std::string tree = found.v1[i] + "/" + name;
    absl::Status made = MakeGroup(tree);
    if (!made.ok()) {
      for (const std::string& parent : parents) rmdir(parent.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat(v2_reason, "; cgroup v1: ", made.message()));
    }
    parents.push_back(tree);
  }
  if (total_memory_bytes != 0) {
    absl::Status limited =
        WriteFile(parents[1] + "/memory.limit_in_bytes", absl::StrCat(total_memory_bytes));
    if (!limited.ok()) {
      for (const std::string& parent : parents) rmdir(parent.c_str());
      return absl::FailedPreconditionError(limited.message());
    }
  }
  return std::unique_ptr<CgroupTree>(new CgroupTree(false, std::move(parents)));
}

CgroupTree::~CgroupTree() {
  for (const std::string& parent : parents_) RemoveGroup(parent);
}

std::string CgroupTree::Describe() const {
  return v2_ ? absl::StrCat("cgroup v2 at ", parents_[0])
             : absl::StrCat("cgroup v1 (pids, memory, cpu) at ", parents_[0], ", ...");
}

absl::StatusOr<std::unique_ptr<WorkerCgroup>> CgroupTree::Attach(pid_t pid,
                                                                 const WorkerCgroupLimits& limits) {
  const std::string name = absl::StrCat("worker-", next_worker_.fetch_add(1));
  std::vector<std::string> dirs;
  for (const std::string& parent : parents_) {
    std::string dir = parent + "/" + name;
    if (mkdir(dir.c_str(), 0755) != 0) {
      for (const std::string& made : dirs) rmdir(made.c_str());
      return absl::InternalError(absl::StrCat("mkdir ", dir, ": ", strerror(errno)));
    }
    dirs.push_back(dir);
  }
  // Made with no limits; SetLimits writes them.
  std::unique_ptr<WorkerCgroup> group(new WorkerCgroup(v2_, std::move(dirs)));
  absl::Status status = group->SetLimits(limits);
  // Last: the worker (every thread) moves in only once its limits are in place.
  for (const std::string& dir : group->dirs_) {
    if (status.ok()) status = WriteFile(dir + "/cgroup.procs", absl::StrCat(pid));
  }
  if (!status.ok()) return status;
  return group;
}

WorkerCgroup::~WorkerCgroup() {
  absl::MutexLock lock(&mu_);
  for (int fd : fds_) close(fd);
  for (const std::string& dir : dirs_) RemoveGroup(dir);
}

int WorkerCgroup::Open(const std::string& path, int flags) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd >= 0) fds_.push_back(fd);
  return fd;
}

absl::Status WorkerCgroup::SetLimits(const WorkerCgroupLimits& limits) {
  absl::MutexLock lock(&mu_);
  absl::Status status = absl::OkStatus();
  auto write = [&status](const std::string& path, const std::string& value) {
    if (status.ok()) status = WriteFile(path, value);
  };
  if (limits.pids_max != limits_.pids_max) {
    write(pids_dir() + "/pids.max",
          limits.pids_max == 0 ? std::string("max") : absl::StrCat(limits.pids_max));
  }
  if (limits.memory_bytes != limits_.memory_bytes) {
    const std::string bytes = limits.memory_bytes != 0 ? absl::StrCat(limits.memory_bytes)
                              : v2_                    ? std::string("max")
                                                       : std::string("-1");
    if (v2_) {
      write(memory_dir() + "/memory.max", bytes);
      write(memory_dir() + "/memory.swap.max", "0");
    } else {
      // Where swap accounting is on, swap counts against the same limit. v1 refuses a
      // memory+swap limit below the memory limit: raise it first, lower it last.
      const std::string memsw = memory_dir() + "/memory.memsw.limit_in_bytes";
      const bool has_memsw = access(memsw.c_str(), W_OK) == 0;
      const bool raising = limits.memory_bytes == 0 || (limits_.memory_bytes != 0 &&
                                                        limits.memory_bytes > limits_.memory_bytes);
      if (has_memsw && raising) write(memsw, bytes);
      write(memory_dir() + "/memory.limit_in_bytes", bytes);
      if (has_memsw && !raising) write(memsw, bytes);
    }
  }
  if (limits.idle_cpu_percent != limits_.idle_cpu_percent) {
    if (!v2_ && limits.idle_cpu_percent != 0) {
      write(cpu_dir() + "/cpu.cfs_period_us", absl::StrCat(kCpuPeriodMicros));
    }
    if (status.ok()) status = WriteQuota(limits.idle_cpu_percent, /*busy=*/false);
  }
  // On a failed write the group is left half changed: the caller discards the worker.
  if (status.ok()) limits_ = limits;
  return status;
}

absl::Status WorkerCgroup::SetBusy(bool busy) {
  absl::MutexLock lock(&mu_);
  if (limits_.idle_cpu_percent == 0) return absl::OkStatus();
  return WriteQuota(limits_.idle_cpu_percent, busy);
}

absl::Status WorkerCgroup::WriteQuota(uint32_t idle_cpu_percent, bool busy) {
  // Every request's start and end land here: the file stays open, one write each.
  if (quota_fd_ < 0) {
    quota_fd_ = Open(cpu_dir() + (v2_ ? "/cpu.max" : "/cpu.cfs_quota_us"), O_WRONLY);
    if (quota_fd_ < 0) {
      return absl::InternalError(
          absl::StrCat("open the CPU quota of ", cpu_dir(), ": ", strerror(errno)));
    }
  }
  // Without an idle share (0) the quota is lifted for good.
  const bool unlimited = busy || idle_cpu_percent == 0;
  const uint64_t quota = std::max<uint64_t>(kCpuPeriodMicros * idle_cpu_percent / 100, 1000);
  const std::string value = v2_ ? (unlimited ? absl::StrCat("max ", kCpuPeriodMicros)
                                             : absl::StrCat(quota, " ", kCpuPeriodMicros))
                                : (unlimited ? std::string("-1") : absl::StrCat(quota));
  if (pwrite(quota_fd_, value.data(), value.size(), 0) != static_cast<ssize_t>(value.size())) {
    return absl::InternalError(
        absl::StrCat("set the CPU quota of ", cpu_dir(), " to ", value, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

uint64_t WorkerCgroup::Counter(int* fd, const std::string& path, absl::string_view key) {
  if (*fd < 0) *fd = Open(path, O_RDONLY);
  if (*fd < 0) return 0;
  char buffer[4096];
  ssize_t n = pread(*fd, buffer, sizeof(buffer) - 1, 0);
  if (n <= 0) return 0;
  absl::string_view text(buffer, static_cast<size_t>(n));
  if (key.empty()) {
    uint64_t value = 0;
    return absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &value) ? value : 0;
  }
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::pair<absl::string_view, absl::string_view> parts = absl::StrSplit(line, ' ');
    uint64_t value = 0;
    if (parts.first == key && absl::SimpleAtoi(parts.second, &value)) return value;
  }
  return 0;
}

std::vector<std::string> WorkerCgroup::NewLimitHits() {
  absl::MutexLock lock(&mu_);
  const uint64_t pids = Counter(&pids_events_fd_, pids_dir() + "/pids.events", "max");
  const uint64_t memory = v2_ ? Counter(&memory_events_fd_, memory_dir() + "/memory.events", "max")
                              : Counter(&memory_events_fd_, memory_dir() + "/memory.failcnt", "");
  const uint64_t oom = Counter(
      &oom_fd_, memory_dir() + (v2_ ? "/memory.events" : "/memory.oom_control"), "oom_kill");
  std::vector<std::string> hits;
  if (pids > pids_hits_) {
    const uint64_t refused = pids - pids_hits_;
    hits.push_back(absl::StrCat("threads and processes: the worker hit its cap of ",
                                limits_.pids_max, " (", refused,
                                refused == 1 ? " creation" : " creations", " refused)"));
  }
  if (memory > memory_hits_) {
    hits.push_back(absl::StrCat("memory: the worker reached its cap of ", limits_.memory_bytes,
                                " bytes (the kernel reclaimed or refused memory)"));
  }
  if (oom > oom_kills_) {
    hits.push_back("memory: the kernel's out-of-memory killer ended a process of the worker");
  }
  pids_hits_ = pids;
  memory_hits_ = memory;
  oom_kills_ = oom;
  return hits;
}

std::string CgroupUnavailableReason() {
  // The probe is the real thing: a tree made and removed at once.
  absl::StatusOr<std::unique_ptr<CgroupTree>> probe = CgroupTree::Create(0);
  if (!probe.ok()) return std::string(probe.status().message());
  return "";
}

}  // namespace ffibox

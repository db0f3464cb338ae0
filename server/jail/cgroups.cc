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
#include "server/jail/cgroup_placement.h"

namespace ffibox {
namespace {

constexpr uint64_t kCpuPeriodMicros = 100000;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Writes `value` to `path` in one write: 0, or the errno of the open or the write.
int Write(const std::string& path, const std::string& value) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t written = write(fd, value.data(), value.size());
  int error = written == static_cast<ssize_t>(value.size()) ? 0 : errno;
  close(fd);
  return error;
}

absl::Status WriteFile(const std::string& path, const std::string& value) {
  if (int error = Write(path, value); error != 0) {
    return absl::InternalError(
        absl::StrCat("write \"", value, "\" to ", path, ": ", strerror(error)));
  }
  return absl::OkStatus();
}

bool HasV2Controllers(const std::string& dir) {
  std::vector<std::string> controllers =
      absl::StrSplit(absl::StripAsciiWhitespace(ReadFile(dir + "/cgroup.controllers")), ' ');
  for (const char* wanted : kCgroupControllers) {
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

// Removes the groups under `parent` of ffiboxd processes that are gone (killed): their
// workers' trees (ffibox-<pid>) and, on cgroup v2, their leaves (ffibox-<pid>-broker).
void RemoveStaleTrees(const std::string& parent) {
  DIR* dir = opendir(parent.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (struct dirent* entry = readdir(dir)) {
    std::optional<pid_t> pid = OwnerOfGroup(entry->d_name);
    if (!pid.has_value()) continue;
    if (*pid == getpid() || (kill(*pid, 0) == 0 || errno == EPERM)) continue;
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

constexpr const char* kEnableControllers = "+pids +memory +cpu";

// Puts ffiboxd back into the delegated v2 cgroup `dir` it left for `leaf`, and removes the
// leaf; without the controllers for its children, `dir` may hold a process again. Best
// effort: a leaf left behind is reported, and removed as stale by the next ffiboxd.
void LeaveBrokerLeaf(const std::string& dir, const std::string& leaf) {
  Write(dir + "/cgroup.subtree_control", "-pids -memory -cpu");
  absl::Status back = WriteFile(dir + "/cgroup.procs", absl::StrCat(getpid()));
  if (!back.ok()) {
    fprintf(stderr, "ffiboxd: cannot leave cgroup %s: %s\n", leaf.c_str(),
            std::string(back.message()).c_str());
    return;
  }
  RemoveGroup(leaf);
}

// Where ffiboxd's tree goes on cgroup v2 (server/jail/cgroup_placement.h).
struct V2Parent {
  std::string dir;          // the delegated cgroup, with the controllers for its children
  std::string broker_leaf;  // the leaf ffiboxd moved into for this tree, or ""
};

// Enables the controllers for the children of the cgroup delegated to ffiboxd, whose own
// cgroup is `own`; when that cgroup holds ffiboxd, ffiboxd (every thread) first moves into
// a leaf of its own. FAILED_PRECONDITION naming the file and saying why when it cannot.
absl::StatusOr<V2Parent> PrepareV2Parent(const std::string& own) {
  const pid_t pid = getpid();
  V2Parent parent{DelegatedV2Cgroup(own, pid), ""};
  if (!HasV2Controllers(parent.dir)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cgroup v2 at ", parent.dir, " lacks the pids, memory or cpu controller"));
  }
  const std::string subtree_control = parent.dir + "/cgroup.subtree_control";
  const std::string leaf = absl::StrCat(parent.dir, "/", BrokerLeafName(pid));
  int error = Write(subtree_control, kEnableControllers);
  if (error != 0 &&
      AfterControllersRefused(error, own == leaf) == ControllersRefused::kMoveBrokerToLeaf) {
    absl::Status moved = MakeGroup(leaf);
    if (moved.ok()) moved = WriteFile(leaf + "/cgroup.procs", absl::StrCat(pid));
    if (!moved.ok()) {
      rmdir(leaf.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("cgroup v2: ", parent.dir,
                       " holds ffiboxd, which cannot move into a leaf: ", moved.message()));
    }
    parent.broker_leaf = leaf;
    error = Write(subtree_control, kEnableControllers);
  }
  if (error != 0) {
    std::string message = ControllersRefusedMessage(
        parent.dir, error, OtherProcesses(ReadFile(parent.dir + "/cgroup.procs"), pid));
    if (!parent.broker_leaf.empty()) LeaveBrokerLeaf(parent.dir, parent.broker_leaf);
    return absl::FailedPreconditionError(message);
  }
  return parent;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CgroupTree>> CgroupTree::Create(uint64_t total_memory_bytes) {
  const std::string name = WorkerTreeName(getpid());
  const CgroupHierarchies found =
      ParseCgroupHierarchies(ReadFile("/proc/self/cgroup"), ReadFile("/proc/self/mountinfo"));
  std::string v2_reason = "no cgroup v2 hierarchy";
  if (!found.v2.empty()) {
    absl::StatusOr<V2Parent> parent = PrepareV2Parent(found.v2);
    absl::Status made = parent.status();
    std::string tree;
    if (made.ok()) {
      tree = parent->dir + "/" + name;
      made = MakeGroup(tree);
    }
    if (made.ok()) made = WriteFile(tree + "/cgroup.subtree_control", kEnableControllers);
    if (made.ok() && total_memory_bytes != 0) {
      made = WriteFile(tree + "/memory.max", absl::StrCat(total_memory_bytes));
    }
    if (made.ok()) {
      RemoveStaleTrees(parent->dir);
      return std::unique_ptr<CgroupTree>(new CgroupTree(true, {tree}, parent->broker_leaf));
    }
    if (parent.ok()) {
      rmdir(tree.c_str());
      if (!parent->broker_leaf.empty()) LeaveBrokerLeaf(parent->dir, parent->broker_leaf);
    }
    v2_reason = std::string(made.message());
  }
  std::vector<std::string> parents;
  for (int i = 0; i < 3; ++i) {
    if (found.v1[i].empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          v2_reason, "; no cgroup v1 hierarchy with the ", kCgroupControllers[i], " controller"));
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
  if (!broker_leaf_.empty()) {
    LeaveBrokerLeaf(broker_leaf_.substr(0, broker_leaf_.rfind('/')), broker_leaf_);
  }
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
  {
    // Opens the counter files now, as the worker starts (a pooled one before any session),
    // rather than when its first request ends. Reading changes nothing: NewLimitHits
    // reports what grew since it last looked.
    absl::MutexLock lock(&group->mu_);
    group->ReadHitCounts();
  }
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
  if (limits_.idle_cpu_percent == 0 || busy == quota_lifted_) return absl::OkStatus();
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
  quota_lifted_ = busy;
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

WorkerCgroup::HitCounts WorkerCgroup::ReadHitCounts() {
  HitCounts counts;
  counts.pids = Counter(&pids_events_fd_, pids_dir() + "/pids.events", "max");
  counts.memory = v2_ ? Counter(&memory_events_fd_, memory_dir() + "/memory.events", "max")
                      : Counter(&memory_events_fd_, memory_dir() + "/memory.failcnt", "");
  counts.oom = Counter(&oom_fd_, memory_dir() + (v2_ ? "/memory.events" : "/memory.oom_control"),
                       "oom_kill");
  return counts;
}

uint64_t WorkerCgroup::OomKills() {
  absl::MutexLock lock(&mu_);
  return ReadHitCounts().oom;
}

std::vector<std::string> WorkerCgroup::NewLimitHits() {
  absl::MutexLock lock(&mu_);
  const auto [pids, memory, oom] = ReadHitCounts();
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

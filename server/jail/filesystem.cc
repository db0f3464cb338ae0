#include "server/jail/filesystem.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#define MOUNT_ATTR_NOSUID 0x00000002
#define MOUNT_ATTR_NODEV 0x00000004
#define MOUNT_ATTR_NOEXEC 0x00000008
struct mount_attr {
  __u64 attr_set;
  __u64 attr_clr;
  __u64 propagation;
  __u64 userns_fd;
};
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

namespace ffibox {
namespace {

// Read-only system directories every worker needs for the dynamic loader and libc, the
// system data libraries read (locales, time zones, databases such as libmagic's; the C
// headers a parser such as libclang reads for `#include <stdio.h>`), and the configuration
// of libraries that apply it at init: fontconfig's (and its cache), ImageMagick's security
// policy (without it ImageMagick lifts its resource limits and coder restrictions), and
// OpenSSL's with the public CA certificates; and Debian's alternatives, the symbolic links
// through which libraries such as libblas.so.3 and liblapack.so.3 are found (links only,
// into paths the jail shows or not); and the compiled word lists Debian keeps under
// /var/lib/aspell, which /usr/lib/aspell links to (without them enchant silently takes
// another speller). Nothing of /etc beyond these is shown.
constexpr const char* kSystemPaths[] = {"/lib",
                                        "/lib64",
                                        "/lib32",
                                        "/usr/lib",
                                        "/usr/lib64",
                                        "/usr/lib32",
                                        "/usr/local/lib",
                                        "/etc/ld.so.cache",
                                        "/etc/localtime",
                                        "/usr/share",
                                        "/usr/include",
                                        "/etc/fonts",
                                        "/var/cache/fontconfig",
                                        "/etc/ImageMagick-6",
                                        "/etc/ImageMagick-7",
                                        "/etc/ssl/certs",
                                        "/etc/ssl/openssl.cnf",
                                        "/etc/alternatives",
                                        "/var/lib/aspell"};
constexpr const char* kDevices[] = {"null", "zero", "full", "random", "urandom"};

// True when `path` is `prefix` or below it.
bool IsUnder(const std::string& path, const std::string& prefix) {
  return path == prefix || (absl::StartsWith(path, prefix) && path[prefix.size()] == '/') ||
         prefix == "/";
}

class PlanBuilder {
 public:
  explicit PlanBuilder(FilesystemPlan* plan) : plan_(*plan) {}

  // mkdir -p of `path` (below the new root) and its parents.
  void MakeDirs(const std::string& path) {
    std::string partial = plan_.new_root;
    size_t start = 1;
    while (start <= path.size()) {
      size_t end = path.find('/', start);
      if (end == std::string::npos) end = path.size();
      if (end > start) {
        partial += path.substr(start - 1, end - start + 1);
        if (made_.insert(partial).second) Add(FilesystemStep::kMkdir, partial, "", -1, false);
      }
      start = end + 1;
    }
  }

  void Add(FilesystemStep::Kind kind, std::string path, std::string arg, int source,
           bool optional) {
    plan_.steps.push_back(FilesystemStep{kind, std::move(path), std::move(arg), source, optional});
  }

  int Source(const std::string& path) {
    plan_.sources.push_back(path);
    return static_cast<int>(plan_.sources.size()) - 1;
  }

  // Shows host `path` at the same place, read-only; symlinks are reproduced.
  void Show(const std::string& path, bool optional) {
    for (const std::string& shown : shown_) {
      if (IsUnder(path, shown)) return;  // already visible through an earlier bind
    }
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) return;
    std::string parent = path.substr(0, path.rfind('/'));
    if (!parent.empty()) MakeDirs(parent);
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
      if (n <= 0) return;
      Add(FilesystemStep::kSymlink, plan_.new_root + path, std::string(target, n), -1, optional);
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      MakeDirs(path);
    } else {
      Add(FilesystemStep::kFile, plan_.new_root + path, "", -1, optional);
    }
    Add(FilesystemStep::kBind, plan_.new_root + path, "", Source(path), optional);
    shown_.push_back(path);
  }

 private:
  FilesystemPlan& plan_;
  std::set<std::string> made_;
  std::vector<std::string> shown_;
};

// The mount options of a worker's tmpfs of `bytes` (at least a page). Its files are capped
// too, at one per page of its size: a tmpfs's inodes and their dentries are kernel memory
// that `size` does not count, and without a cap (the kernel's default is half the host's
// pages) a library could pin gigabytes of it with empty files, outside every limit but a
// cgroup's. One per page is as many files as the size could hold with a byte in each.
std::string TmpfsOptions(uint64_t bytes) {
  constexpr uint64_t kPage = 4096;
  bytes = std::max(bytes, kPage);
  return absl::StrCat("mode=1777,size=", bytes,
                      ",nr_inodes=", std::max<uint64_t>(bytes / kPage, 16));
}

void PlanDevicesTmpAndProc(const JailOptions& options, bool with_proc, PlanBuilder& builder,
                           FilesystemPlan& plan) {
  const std::string& root = plan.new_root;
  builder.MakeDirs("/tmp");
  builder.Add(FilesystemStep::kTmpfs, root + "/tmp", TmpfsOptions(options.tmp_bytes), -1, false);
  builder.MakeDirs("/dev");
  // POSIX shared memory (shm_open: LLVM's OpenMP runtime registers itself there at its first
  // call, and aborts without it): a small tmpfs of its own, a sixteenth of /tmp's size (1
  // MiB by default), so a worker pins little more host memory than /tmp already lets it.
  builder.MakeDirs("/dev/shm");
  builder.Add(FilesystemStep::kTmpfs, root + "/dev/shm", TmpfsOptions(options.tmp_bytes / 16), -1,
              false);
  for (const char* device : kDevices) {
    std::string path = absl::StrCat(root, "/dev/", device);
    builder.Add(FilesystemStep::kFile, path, "", -1, true);
    builder.Add(FilesystemStep::kDeviceBind, path, "",
                builder.Source(absl::StrCat("/dev/", device)), true);
  }
  if (with_proc) {
    builder.MakeDirs("/proc");
    builder.Add(FilesystemStep::kProc, root + "/proc", "", -1, false);
  }
}

bool Fail(FilesystemFailure* failure, int step) {
  failure->step = step;
  failure->error = errno;
  return false;
}

// "/proc/self/fd/<fd>" into `buffer`, without snprintf (not async-signal-safe).
const char* FdPath(int fd, char (&buffer)[32]) {
  const char prefix[] = "/proc/self/fd/";
  char digits[12];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0);
  size_t at = 0;
  for (; prefix[at] != '\0'; ++at) buffer[at] = prefix[at];
  while (n > 0) buffer[at++] = digits[--n];
  buffer[at] = '\0';
  return buffer;
}

// Makes the mount at `path` (and, with `recursive`, the ones below) carry `attributes`.
bool SetMountAttributes(const char* path, uint64_t attributes, bool recursive) {
  struct mount_attr attr = {};
  attr.attr_set = attributes;
  if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr,
              sizeof(attr)) == 0) {
    return true;
  }
  if (errno != ENOSYS) return false;
  // Kernels before 5.12: remount the top mount, keeping the flags a user namespace may not
  // clear (they are locked).
  struct statfs fs;
  if (statfs(path, &fs) != 0) return false;
  unsigned long flags = MS_REMOUNT | MS_BIND;
  if (attributes & MOUNT_ATTR_RDONLY) flags |= MS_RDONLY;
  if (attributes & MOUNT_ATTR_NOSUID) flags |= MS_NOSUID;
  if (attributes & MOUNT_ATTR_NODEV) flags |= MS_NODEV;
  if (attributes & MOUNT_ATTR_NOEXEC) flags |= MS_NOEXEC;
  flags |= fs.f_flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME |
                         MS_RELATIME);
  return mount(nullptr, path, nullptr, flags, nullptr) == 0;
}

bool RunStep(const FilesystemPlan& plan, const FilesystemStep& step) {
  char fd_path[32];
  const char* path = step.path.c_str();
  switch (step.kind) {
    case FilesystemStep::kMkdir:
      return mkdir(path, 0755) == 0 || errno == EEXIST;
    case FilesystemStep::kFile: {
      int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0444);
      if (fd < 0) return errno == EEXIST;
      close(fd);
      return true;
    }
    case FilesystemStep::kSymlink:
      return symlink(step.arg.c_str(), path) == 0;
    case FilesystemStep::kBind:
    case FilesystemStep::kDeviceBind:
    case FilesystemStep::kWritableBind: {
      const char* source = FdPath(plan.source_fds[step.source], fd_path);
      if (mount(source, path, nullptr, MS_BIND | MS_REC, nullptr) != 0) return false;
      uint64_t attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC;  // a device
      if (step.kind == FilesystemStep::kBind) {
        attributes = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
      } else if (step.kind == FilesystemStep::kWritableBind) {
        attributes = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
      }
      return SetMountAttributes(path, attributes, true);
    }
    case FilesystemStep::kTmpfs:
      return mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, step.arg.c_str()) == 0;
    case FilesystemStep::kProc:
      return mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0;
  }
  return false;
}

}  // namespace

absl::StatusOr<FilesystemPlan> PlanFilesystem(const JailOptions& options, bool with_proc) {
  FilesystemPlan plan;
  plan.staging_options = "mode=0755,size=1m";
  plan.new_root = plan.staging;
  plan.cwd = "/empty";
  PlanBuilder builder(&plan);
  std::vector<std::pair<std::string, bool>> shown;  // path, optional (an alias)
  for (const std::string& path : options.visible_paths) {
    if (path.empty() || path[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("visible path \"", path, "\" is not an absolute path"));
    }
    char resolved[PATH_MAX];
    struct stat st;
    if (realpath(path.c_str(), resolved) == nullptr || stat(resolved, &st) != 0 ||
        !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("visible path ", path, " is not an existing directory"));
    }
    if (std::string(resolved) == "/") {
      return absl::InvalidArgumentError("visible path / would show the whole host filesystem");
    }
    shown.emplace_back(resolved, false);
    if (path != resolved) shown.emplace_back(path, true);
  }
  // System directories first (symlinks such as /lib -> usr/lib need their targets), then
  // the visible paths, shortest first so a path below another is already visible; those
  // below /tmp after the worker's own /tmp is mounted, which would hide them.
  for (const char* path : kSystemPaths) builder.Show(path, false);
  std::stable_sort(shown.begin(), shown.end(),
                   [](const auto& a, const auto& b) { return a.first.size() < b.first.size(); });
  for (const auto& [path, optional] : shown) {
    if (!IsUnder(path, "/tmp")) builder.Show(path, optional);
  }
  builder.MakeDirs("/empty");
  PlanDevicesTmpAndProc(options, with_proc, builder, plan);
  for (const auto& [path, optional] : shown) {
    if (IsUnder(path, "/tmp")) builder.Show(path, optional);
  }
  if (!options.scratch_directory.empty()) {
    // Last: it may lie below /tmp, whose tmpfs would hide it.
    char resolved[PATH_MAX];
    struct stat st;
    if (options.scratch_directory[0] != '/' ||
        realpath(options.scratch_directory.c_str(), resolved) == nullptr ||
        stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode) || std::string(resolved) == "/") {
      return absl::InvalidArgumentError(absl::StrCat(
          "scratch directory ", options.scratch_directory, " is not an existing directory"));
    }
    builder.MakeDirs(resolved);
    builder.Add(FilesystemStep::kWritableBind, plan.new_root + resolved, "",
                builder.Source(resolved), false);
  }
  plan.source_fds.assign(plan.sources.size(), -1);
  return plan;
}

bool OpenFilesystemSources(FilesystemPlan& plan, FilesystemFailure* failure) {
  for (size_t i = 0; i < plan.sources.size(); ++i) {
    plan.source_fds[i] = open(plan.sources[i].c_str(), O_PATH | O_CLOEXEC);
    if (plan.source_fds[i] < 0) {
      // A missing device is tolerated (its bind is optional); anything else is not.
      if (absl::StartsWith(plan.sources[i], "/dev/")) continue;
      return Fail(failure, kStageOpenSources);
    }
  }
  return true;
}

bool IsProcStep(const FilesystemPlan& plan, int step) {
  return step >= 0 && step < static_cast<int>(plan.steps.size()) &&
         plan.steps[step].kind == FilesystemStep::kProc;
}

bool BuildFilesystem(FilesystemPlan& plan, FilesystemFailure* failure) {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return Fail(failure, kStageMakePrivate);
  }
  if (mount("tmpfs", plan.staging.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
            plan.staging_options.c_str()) != 0) {
    return Fail(failure, kStageStaging);
  }
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    const FilesystemStep& step = plan.steps[i];
    bool has_source = step.source < 0 || plan.source_fds[step.source] >= 0;
    errno = 0;
    bool ok = has_source && RunStep(plan, step);
    if (!ok && !step.optional) return Fail(failure, static_cast<int>(i));
  }
  for (int& fd : plan.source_fds) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
  if (chdir(plan.new_root.c_str()) != 0 || syscall(SYS_pivot_root, ".", ".") != 0 ||
      umount2(".", MNT_DETACH) != 0 || chdir("/") != 0) {
    return Fail(failure, kStagePivot);
  }
  if (mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
            nullptr) != 0) {
    return Fail(failure, kStageRemountRoot);
  }
  if (chdir(plan.cwd.c_str()) != 0) return Fail(failure, kStagePivot);
  return true;
}

std::string DescribeFilesystemFailure(const FilesystemPlan& plan,
                                      const FilesystemFailure& failure) {
  std::string what;
  switch (failure.step) {
    case kStageMakePrivate:
      what = "making mounts private";
      break;
    case kStageOpenSources:
      what = "opening the directories to show";
      break;
    case kStageStaging:
      what = absl::StrCat("mounting a tmpfs on ", plan.staging);
      break;
    case kStagePivot:
      what = "pivot_root";
      break;
    case kStageRemountRoot:
      what = "remounting the new root read-only";
      break;
    default:
      if (failure.step >= 0 && failure.step < static_cast<int>(plan.steps.size())) {
        const FilesystemStep& step = plan.steps[failure.step];
        static constexpr const char* kKinds[] = {"mkdir",          "create",       "symlink",
                                                 "bind",           "bind",         "bind",
                                                 "mount tmpfs on", "mount proc on"};
        std::string shown = step.path;
        if (absl::StartsWith(shown, plan.new_root)) shown = shown.substr(plan.new_root.size());
        what = absl::StrCat(kKinds[step.kind], " ", shown.empty() ? "/" : shown);
      } else {
        what = "setup";
      }
  }
  return absl::StrCat(what, ": ", strerror(failure.error));
}

}  // namespace ffibox

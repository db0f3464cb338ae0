#include "server/broker/scratch_directory.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "absl/base/attributes.h"
#include "absl/base/const_init.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/errors.h"
#include "server/jail/user_namespace.h"

namespace ffibox {
namespace {

// nftw's callback has no context argument: one walk at a time counts its failures here.
ABSL_CONST_INIT absl::Mutex walk_lock(absl::kConstInit);
int failures ABSL_GUARDED_BY(walk_lock) = 0;

// Whether RemoveEntry reports what it cannot remove (the last walk does).
bool report_failures ABSL_GUARDED_BY(walk_lock) = false;

int RemoveEntry(const char* path, const struct stat*, int,
                struct FTW*) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // runs inside nftw, under walk_lock
  if (remove(path) != 0 && errno != ENOENT) {
    if (report_failures) {
      fprintf(stderr, "ffiboxd: cannot remove %s from a scratch directory: %s\n", path,
              strerror(errno));
    }
    ++failures;
  }
  return 0;  // keep going: remove what can be removed
}

// Removes `directory` and everything below it, depth first, following no symlink and not
// crossing into other filesystems. Returns how many entries it could not remove, each
// reported on stderr when `report`.
int RemoveTree(const std::string& directory, bool report) ABSL_EXCLUSIVE_LOCKS_REQUIRED(walk_lock) {
  failures = 0;
  report_failures = report;
  nftw(directory.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  return failures;
}

constexpr const char* kFind = "/usr/bin/find";

// Empties `scratch` (the directory the workers write) as the workers' own ids, where this
// process cannot: a worker can make a directory that no one else may list or enter (mode 0,
// or 0700 under another uid: an unprivileged server's workers run as a subordinate uid), and
// a tree deeper than a path can name (created relative to its own directories). A child
// process does it: for an unprivileged server in a user namespace mapped as the workers' are
// (WriteUserNamespaceMaps), as root there, which may enter any directory those ids own; then
// find(1), which walks trees of any depth, deletes everything below the directory (not
// crossing into other filesystems, following no symlink). What it leaves, the caller's last
// walk reports.
void EmptyAsWorkers(const std::string& scratch) {
  const int directory = open(scratch.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (directory < 0) return;
  const bool in_namespace = geteuid() != 0;
  int ready[2] = {-1, -1};  // the child is in its namespace
  int go[2] = {-1, -1};     // its maps are written
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
    for (int fd : {ready[0], ready[1], go[0], go[1], directory}) {
      if (fd >= 0) close(fd);
    }
    return;
  }
  // Not fork(): no atfork handler of the broker's runs. The child is a copy and makes only
  // system calls until it execs.
  const long pid = syscall(SYS_clone, SIGCHLD | (in_namespace ? CLONE_NEWUSER : 0), nullptr,
                           nullptr, nullptr, nullptr);
  if (pid == 0) {
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    char byte = 0;
    if (in_namespace) {
      // The helpers that write the maps open this process's files: it must be dumpable (it
      // becomes undumpable again when its ids change below).
      syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
      if (syscall(SYS_write, ready[1], &byte, 1) != 1 || syscall(SYS_read, go[0], &byte, 1) != 1 ||
          syscall(SYS_setresgid, 0, 0, 0) != 0 || syscall(SYS_setresuid, 0, 0, 0) != 0) {
        syscall(SYS_exit_group, 2);
      }
    }
    // find's own messages go nowhere: the broker reports what is left.
    const int null = static_cast<int>(syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR));
    if (syscall(SYS_fchdir, directory) != 0 || null < 3) syscall(SYS_exit_group, 2);
    for (int standard = 0; standard < 3; ++standard) {
      if (syscall(SYS_dup3, null, standard, 0) != standard) syscall(SYS_exit_group, 2);
    }
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) syscall(SYS_exit_group, 2);
    const char* const argv[] = {"find", ".", "-mindepth", "1", "-xdev", "-delete", nullptr};
    const char* const environment[] = {nullptr};
    syscall(SYS_execve, kFind, argv, environment);
    syscall(SYS_exit_group, 127);
  }
  close(directory);
  close(ready[1]);
  close(go[0]);
  if (pid > 0 && in_namespace) {
    char byte = 0;
    ssize_t got;
    while ((got = read(ready[0], &byte, 1)) < 0 && errno == EINTR) {
    }
    if (got == 1) {
      absl::Status maps = WriteUserNamespaceMaps(static_cast<pid_t>(pid), WorkerHostIds());
      if (!maps.ok()) {
        fprintf(stderr, "ffiboxd: cannot empty a scratch directory as the workers' ids: %s\n",
                std::string(maps.message()).c_str());
      } else if (write(go[1], &byte, 1) != 1) {
        fprintf(stderr, "ffiboxd: cannot empty a scratch directory as the workers' ids: %s\n",
                strerror(errno));
      }
    }
  }
  close(ready[0]);
  close(go[1]);  // a child still waiting for its maps ends
  if (pid < 0) return;
  int status = 0;
  while (waitpid(static_cast<pid_t>(pid), &status, 0) < 0 && errno == EINTR) {
  }
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> ScratchDirectory::PrepareRoot(const std::string& root) {
  if (root.empty() || root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("scratch root \"", root, "\" is not an absolute path"));
  }
  if (mkdir(root.c_str(), 0711) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create the scratch root ", root, ": ", strerror(errno)));
  }
  struct stat st;
  if (lstat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scratch root ", root, " is not a directory (symlinks are refused)"));
  }
  if (st.st_uid != geteuid()) {
    return absl::InvalidArgumentError(absl::StrCat("scratch root ", root, " belongs to uid ",
                                                   st.st_uid, ", not to this server's user"));
  }
  if ((st.st_mode & 07777) != 0711 && chmod(root.c_str(), 0711) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot set the mode of the scratch root ", root, ": ", strerror(errno)));
  }
  char resolved[PATH_MAX];
  if (realpath(root.c_str(), resolved) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve the scratch root ", root, ": ", strerror(errno)));
  }
  return std::string(resolved);
}

absl::StatusOr<std::unique_ptr<ScratchDirectory>> ScratchDirectory::Create(
    const std::string& root, const std::string& name) {
  if (!ValidName(name)) {
    return ErrorStatus(v1::INTERNAL, absl::StrCat("bad scratch directory name \"", name, "\""));
  }
  std::string session_directory = absl::StrCat(root, "/", name);
  std::string path = session_directory + "/scratch";
  auto failed = [&](const std::string& what) {
    v1::ErrorCode code =
        (errno == ENOSPC || errno == EDQUOT) ? v1::RESOURCE_EXHAUSTED : v1::INTERNAL;
    return ErrorStatus(code, absl::StrCat("cannot create the scratch directory (", what, " ",
                                          session_directory, "): ", strerror(errno)));
  };
  if (mkdir(session_directory.c_str(), 0700) != 0) return failed("mkdir");
  // From here on the destructor cleans up.
  std::unique_ptr<ScratchDirectory> directory(new ScratchDirectory(session_directory, path));
  if (mkdir(path.c_str(), 0777) != 0) return failed("mkdir scratch in");
  if (chmod(path.c_str(), 0777) != 0) return failed("chmod scratch in");  // past the umask
  return directory;
}

ScratchDirectory::~ScratchDirectory() {
  absl::MutexLock lock(&walk_lock);
  // Depth first, without following symlinks or crossing into other filesystems. What a
  // worker made that this process may not remove goes as the workers' ids, then the rest.
  if (RemoveTree(session_directory_, /*report=*/false) == 0) return;
  EmptyAsWorkers(path_);
  const int left = RemoveTree(session_directory_, /*report=*/true);
  if (left != 0) {
    fprintf(stderr, "ffiboxd: %d entries of %s were left behind\n", left,
            session_directory_.c_str());
  }
}

}  // namespace ffibox

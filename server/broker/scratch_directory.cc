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

#include <cstdint>
#include <utility>

#include "absl/base/attributes.h"
#include "absl/base/const_init.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/errors.h"
#include "server/jail/jail_process.h"
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
// How EmptyingChild ends when it cannot run find; find's own status otherwise (127: it could
// not be executed).
constexpr int kChildSetupFailed = 120;
constexpr int kFindNotRun = 127;

// The child of EmptyAsWorkers: a copy of the broker, which has other threads, so only
// async-signal-safe calls until it execs find in `directory`. In its user namespace it waits
// for its maps (`ready` says it is there, `go` that they are written), then becomes that
// namespace's root.
[[noreturn]] void EmptyingChild(int directory, const int ready[2], const int go[2],
                                bool in_namespace, bool may_setgroups) {
  close(ready[0]);
  close(go[1]);  // so that the broker's closing its end, when it gives up, ends the wait
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (in_namespace) {
    // The helpers that write the maps open this process's files: dumpable until then, and
    // not after (the broker's memory is in this copy until exec).
    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    char byte = 0;
    if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) != 1) _exit(kChildSetupFailed);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (!BecomeIds(0, 0, may_setgroups)) _exit(kChildSetupFailed);
  }
  // Signals as a new process has them: none blocked, none ignored.
  struct sigaction default_action = {};
  default_action.sa_handler = SIG_DFL;
  for (int signal_number = 1; signal_number < NSIG; ++signal_number) {
    if (signal_number != SIGKILL && signal_number != SIGSTOP) {
      sigaction(signal_number, &default_action, nullptr);
    }
  }
  const uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
  // find's messages go nowhere: the broker reports what is left.
  const int opened = open("/dev/null", O_RDWR | O_CLOEXEC);
  const int null = opened < 0 ? -1 : fcntl(opened, F_DUPFD_CLOEXEC, 3);
  if (null < 0 || fchdir(directory) != 0) _exit(kChildSetupFailed);
  for (int standard = 0; standard < 3; ++standard) {
    if (dup2(null, standard) != standard) _exit(kChildSetupFailed);
  }
  CloseDescriptorsFrom(3, -1);
  const char* const argv[] = {"find", ".", "-mindepth", "1", "-xdev", "-delete", nullptr};
  const char* const environment[] = {nullptr};
  execve(kFind, const_cast<char* const*>(argv), const_cast<char* const*>(environment));
  _exit(kFindNotRun);
}

// Empties `scratch` (the directory the workers write) as the workers' own ids (`workers`),
// where this process cannot: a worker can make a directory that no one else may list or
// enter (mode 0300, or 0700 under another uid: an unprivileged server's workers run as a
// subordinate uid), and a tree deeper than a path can name (made relative to its own
// directories). A child process in a user namespace mapped as the workers' are
// (WriteUserNamespaceMaps), as root there (it may enter any directory those ids own, and no
// other), runs find(1), which walks trees of any depth, to delete everything below the
// directory, following no symlink and not crossing into other filesystems. Only a root
// server on a host without user namespaces runs it as root itself. Waits for it; the workers
// must be gone.
absl::Status EmptyAsWorkers(const std::string& scratch, HostIds workers) {
  int directory = open(scratch.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int ready[2] = {-1, -1};
  int go[2] = {-1, -1};
  absl::Cleanup close_all = [&] {
    for (int fd : {directory, ready[0], ready[1], go[0], go[1]}) {
      if (fd >= 0) close(fd);
    }
  };
  if (directory < 0) return absl::InternalError(absl::StrCat("open: ", strerror(errno)));
  if (pipe2(ready, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe2: ", strerror(errno)));
  }
  const bool root = geteuid() == 0;
  const bool may_setgroups = root || workers.subordinate;
  // No signal reaches the child before it has reset them all.
  sigset_t all;
  sigset_t previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  bool in_namespace = true;
  long pid = syscall(SYS_clone, SIGCHLD | CLONE_NEWUSER, nullptr, nullptr, nullptr, nullptr);
  if (pid < 0 && root) {
    in_namespace = false;
    pid = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  }
  if (pid == 0) EmptyingChild(directory, ready, go, in_namespace, may_setgroups);
  const int clone_error = errno;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) return absl::InternalError(absl::StrCat("clone: ", strerror(clone_error)));
  close(std::exchange(ready[1], -1));
  close(std::exchange(go[0], -1));
  absl::Status status;
  if (in_namespace) {
    char byte = 0;
    ssize_t got;
    while ((got = read(ready[0], &byte, 1)) < 0 && errno == EINTR) {
    }
    if (got != 1) {
      status = absl::InternalError("the child ended before its user namespace was made");
    } else {
      status = WriteUserNamespaceMaps(static_cast<pid_t>(pid), workers);
      if (status.ok() && write(go[1], &byte, 1) != 1) {
        status = absl::InternalError(absl::StrCat("write: ", strerror(errno)));
      }
    }
  }
  if (!status.ok()) kill(static_cast<pid_t>(pid), SIGKILL);
  int wait_status = 0;
  while (waitpid(static_cast<pid_t>(pid), &wait_status, 0) < 0 && errno == EINTR) {
  }
  if (!status.ok()) return status;
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) return absl::OkStatus();
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == kFindNotRun) {
    return absl::FailedPreconditionError(absl::StrCat(kFind, " cannot be run"));
  }
  if (WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == kChildSetupFailed) {
    return absl::InternalError("the child could not become the workers' ids");
  }
  return absl::InternalError(absl::StrCat("find ended with wait status ", wait_status));
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

HostIds ScratchDirectory::WorkerIds(const JailOptions& jail) {
  if (jail.enabled && jail.user_namespace) return WorkerHostIds();
  if (jail.enabled && geteuid() == 0) return UnprivilegedWorkerIds();
  return BrokerIds();
}

absl::StatusOr<std::unique_ptr<ScratchDirectory>> ScratchDirectory::Create(const std::string& root,
                                                                           const std::string& name,
                                                                           HostIds workers) {
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
  std::unique_ptr<ScratchDirectory> directory(
      new ScratchDirectory(session_directory, path, workers));
  if (mkdir(path.c_str(), 0777) != 0) return failed("mkdir scratch in");
  if (chmod(path.c_str(), 0777) != 0) return failed("chmod scratch in");  // past the umask
  return directory;
}

ScratchDirectory::~ScratchDirectory() {
  absl::MutexLock lock(&walk_lock);
  // Depth first, without following symlinks or crossing into other filesystems. What a
  // worker made that this process may not remove goes as the workers' ids, then the rest.
  if (RemoveTree(session_directory_, /*report=*/false) == 0) return;
  absl::Status emptied = EmptyAsWorkers(path_, workers_);
  if (!emptied.ok()) {
    fprintf(stderr, "ffiboxd: cannot empty %s as the workers' ids: %s\n", path_.c_str(),
            std::string(emptied.message()).c_str());
  }
  const int left = RemoveTree(session_directory_, /*report=*/true);
  if (left != 0) {
    fprintf(stderr, "ffiboxd: %d entries of %s were left behind\n", left,
            session_directory_.c_str());
  }
}

}  // namespace ffibox

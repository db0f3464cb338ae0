#include "server/jail/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sanitizer/asan_interface.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/jail/filesystem.h"
#include "server/jail/jail_process.h"
#include "server/jail/user_namespace.h"

namespace ffibox {
namespace {

// The descriptors of the child once arranged: the worker's at 0..7 and the status pipe at
// 8 (jail_process.h), ffibox-init's binary at 9.
constexpr int kInitExecutableFd = 9;
constexpr int kFirstUnarrangedFd = 10;
// Where the child moves its sources first, so that no dup2 clobbers another source.
constexpr int kMovedSourcesFrom = 16;
// The child's stack: it runs the filesystem steps and little else.
constexpr size_t kChildStackBytes = 256 << 10;
constexpr size_t kGuardBytes = 4096;

// How many setup timeouts a clone may wait behind earlier ones on the launcher thread.
constexpr int kLauncherQueueTimeouts = 6;

// Everything the child needs, prepared before clone: after it, only async-signal-safe
// calls. With `share_memory` the child runs in the broker's memory (CLONE_VM) until it
// execs, so it writes nothing but its own stack and `plan`'s descriptor slots.
struct ChildSetup {
  const WorkerSpawnRequest* request;
  unsigned exec_flags;  // WorkerExecFlag bits
  int sync_read;
  int sync_write;
  int status_write;
  bool pid_namespace;
  bool uts_namespace;
  FilesystemPlan* plan;    // null: no filesystem view
  bool user_namespace;     // become the namespace's root (mapped to WorkerHostIds())
  bool may_setgroups;      // setgroups was not denied (root broker, or newgidmap wrote it)
  bool dumpable;           // an unprivileged broker writes the maps: a copy, made dumpable
  char* const* init_argv;  // with a pid namespace: ffibox-init's
};

[[noreturn]] void FailSetup(const ChildSetup& setup, int step, int error) {
  ReportStatus(setup.status_write, kSetupFailed, step, error);
  _exit(1);
}

// The kernel's sigaction and signal set, for the raw system calls below: glibc's wrappers
// leave out the two signals glibc keeps for itself.
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};
constexpr uint64_t kAllSignals = ~uint64_t{0};

// The broker's handlers must never run in the child, which may share its memory: every
// signal goes back to its default before the child unblocks any.
void ResetSignalHandlers() {
  KernelSigaction default_action = {SIG_DFL, 0, nullptr, 0};
  for (int signal_number = 1; signal_number <= 64; ++signal_number) {
    if (signal_number != SIGKILL && signal_number != SIGSTOP) {
      syscall(SYS_rt_sigaction, signal_number, &default_action, nullptr, sizeof(uint64_t));
    }
  }
}

// Puts the worker's descriptors at 0..7, the status pipe at 8 and ffibox-init's binary at 9
// (close-on-exec: it is exec'd through its descriptor), and closes every other.
void ArrangeDescriptors(const ChildSetup& setup) {
  const WorkerSpawnRequest& request = *setup.request;
  const int sources[kFirstUnarrangedFd] = {request.stdin_fd,          request.stdout_fd,
                                           request.stderr_fd,         request.channel_fd,
                                           request.crash_fd,          request.descriptor_fd,
                                           request.channel_memory_fd, request.executable_fd,
                                           setup.status_write,        request.init_executable_fd};
  int moved[kFirstUnarrangedFd];
  for (int target = 0; target < kFirstUnarrangedFd; ++target) {
    moved[target] = -1;
    // Only ffibox-init's may be absent (no pid namespace); its number is then closed.
    if (sources[target] < 0 && target == kInitExecutableFd) continue;
    moved[target] = fcntl(sources[target], F_DUPFD_CLOEXEC, kMovedSourcesFrom);
    if (moved[target] < 0) FailSetup(setup, kStageDescriptors, errno);
  }
  for (int target = 0; target < kFirstUnarrangedFd; ++target) {
    if (moved[target] < 0) {
      close(target);
      continue;
    }
    // dup2 clears close-on-exec: the worker's descriptors and the status pipe survive exec.
    int placed = target == kInitExecutableFd ? dup3(moved[target], target, O_CLOEXEC)
                                             : dup2(moved[target], target);
    if (placed != target) {
      ReportStatus(moved[kInitStatusFd], kSetupFailed, kStageDescriptors, errno);
      _exit(1);
    }
  }
  CloseDescriptorsFrom(kFirstUnarrangedFd, -1);
}

[[noreturn]] void RunChild(const ChildSetup& setup) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The broker is not dumpable, and neither is a copy of it: an unprivileged broker could
  // not open our uid_map. The copy holds no secret the broker's uid may not see. A child in
  // the broker's memory is never made dumpable (that would make the broker dumpable).
  if (setup.dumpable) prctl(PR_SET_DUMPABLE, 1);
  ReportStatus(setup.status_write, kCloned, 0, 0);
  // Wait for the broker (it writes the user namespace's maps first). End of file means it
  // died before PDEATHSIG was armed, or gave up on this child.
  close(setup.sync_write);
  char go = 0;
  ssize_t got;
  while ((got = read(setup.sync_read, &go, 1)) < 0 && errno == EINTR) {
  }
  if (got != 1) _exit(1);
  close(setup.sync_read);

  // The view's directories must be traversable by the worker whatever umask the broker had
  // when it cloned.
  umask(022);
  ResetSignalHandlers();
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);

  FilesystemFailure failure;
  if (setup.plan != nullptr && !OpenFilesystemSources(*setup.plan, &failure)) {
    FailSetup(setup, failure.step, failure.error);
  }
  if (setup.user_namespace && !BecomeIds(0, 0, setup.may_setgroups)) {
    FailSetup(setup, kStageIds, errno);
  }
  if (setup.plan != nullptr && !BuildFilesystem(*setup.plan, &failure)) {
    FailSetup(setup, failure.step, failure.error);
  }
  if (setup.uts_namespace) (void)!sethostname("ffibox", 6);
  ArrangeDescriptors(setup);
  char* const empty_env[] = {nullptr};
  if (setup.pid_namespace) {
    // The init runs as its own small program: nothing of the broker lives on in the jail.
    syscall(SYS_execveat, kInitExecutableFd, "", setup.init_argv, empty_env, AT_EMPTY_PATH);
    ReportStatus(kInitStatusFd, kSetupFailed, kStageExecInit, errno);
    _exit(1);
  }
  if (const int error = DropWorkerPrivileges(setup.exec_flags); error != 0) {
    ReportStatus(kInitStatusFd, kSetupFailed, kStagePrivileges, error);
    _exit(1);
  }
  // Written once the parent-death signal is armed for good: a broker that died before is
  // seen here (SIGPIPE, back at its default, ends the child).
  if (!ReportStatus(kInitStatusFd, kReady, 0, 0)) _exit(1);
  ExecArrangedWorker(setup.request->argv, -1);
}

int ChildMain(void* setup) { RunChild(*static_cast<const ChildSetup*>(setup)); }

// Reads one status record, waiting until `deadline`. nullopt on end of file or timeout.
std::optional<StatusRecord> ReadStatus(int fd, absl::Time deadline) {
  StatusRecord record;
  size_t have = 0;
  while (have < sizeof(record)) {
    int64_t wait_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (wait_ms < 0) return std::nullopt;
    struct pollfd pfd = {fd, POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(std::min<int64_t>(wait_ms, 1000)));
    if (ready < 0 && errno != EINTR) return std::nullopt;
    if (ready <= 0) continue;
    ssize_t n = read(fd, reinterpret_cast<char*>(&record) + have, sizeof(record) - have);
    if (n == 0) return std::nullopt;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return std::nullopt;
    }
    have += static_cast<size_t>(n);
  }
  if (record.magic != kStatusMagic) return std::nullopt;
  return record;
}

// The host pid of the only child of `init` (the init forked the worker before it reported
// ready), or -1 if /proc does not tell.
pid_t InitsChild(pid_t init) {
  std::string path = absl::StrCat("/proc/", init, "/task/", init, "/children");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buffer[32] = {};
  ssize_t n = read(fd, buffer, sizeof(buffer) - 1);
  close(fd);
  int pid = 0;
  for (ssize_t i = 0; i < n && buffer[i] >= '0' && buffer[i] <= '9'; ++i) {
    pid = pid * 10 + (buffer[i] - '0');
  }
  return pid > 0 ? pid : -1;
}

void KillAndReap(pid_t pid) {
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

struct Pipes {
  int sync[2] = {-1, -1};
  int status[2] = {-1, -1};
  ~Pipes() {
    for (int fd : {sync[0], sync[1], status[0], status[1]}) {
      if (fd >= 0) close(fd);
    }
  }
};

// Whether `error` means the host ran out of something (descriptors, memory, processes)
// rather than refusing a layer: such a worker start fails with RESOURCE_EXHAUSTED.
bool IsExhaustion(int error) {
  return error == EMFILE || error == ENFILE || error == ENOMEM || error == EAGAIN ||
         error == ENOSPC;
}

// The error for a child whose setup reported `record`.
absl::Status SetupFailure(const FilesystemPlan* plan, const StatusRecord& record) {
  if (IsExhaustion(record.error)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the worker's jail setup ran out of resources (stage ", record.step,
                     "): ", strerror(record.error)));
  }
  if (record.step == kStageIds) {
    return JailLayerError(JailLayer::kUserNamespace,
                          absl::StrCat("becoming the namespace's root: ", strerror(record.error)));
  }
  if (record.step == kStageForkWorker) {
    return JailLayerError(JailLayer::kPidNamespace,
                          absl::StrCat("forking the worker: ", strerror(record.error)));
  }
  // Not the host's layers: the installation's init, or the broker's descriptors.
  if (record.step == kStageExecInit) {
    return absl::FailedPreconditionError(
        absl::StrCat("executing ffibox-init: ", strerror(record.error)));
  }
  if (record.step == kStageDescriptors) {
    return absl::InternalError(
        absl::StrCat("arranging the worker's descriptors: ", strerror(record.error)));
  }
  if (record.step == kStagePrivileges) {
    return absl::FailedPreconditionError(
        absl::StrCat("dropping the worker's privileges (capabilities, securebits, no_new_privs): ",
                     strerror(record.error)));
  }
  if (plan == nullptr) {
    return absl::InternalError(absl::StrCat("the worker's jail setup failed (stage ", record.step,
                                            "): ", strerror(record.error)));
  }
  FilesystemFailure failure{record.step, record.error};
  return JailLayerError(IsProcStep(*plan, record.step) ? JailLayer::kProc : JailLayer::kFilesystem,
                        DescribeFilesystemFailure(*plan, failure));
}

// One child's clone, run on the launcher thread (see spawn.h). With CLONE_VFORK the launcher
// stays in clone until the child execs or exits, while the caller writes the child's maps
// and reads its reports; so the caller only starts the clone, and waits for it at the end.
// The job owns the parent's copies of the child's pipe ends and closes them once clone
// returns: a clone that failed shows as end of file on the status pipe.
class CloneJob {
 public:
  CloneJob(int flags, const ChildSetup* setup) : flags_(flags), setup_(setup) {}
  CloneJob(const CloneJob&) = delete;
  CloneJob& operator=(const CloneJob&) = delete;
  // Callers kill the child first when they give up on it: the clone then returns.
  ~CloneJob() {
    if (started_) Wait();
  }

  void Start(const LauncherRun& run_on_launcher, int child_sync_read, int child_status_write) {
    started_ = true;
    run_on_launcher([this, child_sync_read, child_status_write] {
      long pid = -1;
      int error = ECANCELED;
      if (cancelled_.load()) {  // given up on while it waited for earlier ones
        close(child_sync_read);
        close(child_status_write);
        absl::MutexLock lock(&mu_);
        error_ = error;
        done_ = true;
        return;
      }
      error = 0;
      // The child's stack, above a guard page: an overflow faults instead of writing into
      // whatever the broker mapped below it.
      void* mapped = mmap(nullptr, kGuardBytes + kChildStackBytes, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
      if (mapped == MAP_FAILED || mprotect(mapped, kGuardBytes, PROT_NONE) != 0) {
        error = errno;
      } else {
        // A sanitizer build shares its shadow memory with the child, and an earlier child
        // left its frames poisoned at the same addresses (it never returned from them).
        ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(mapped) + kGuardBytes, kChildStackBytes);
        // No signal at all, not even glibc's own, until the child has reset every handler.
        uint64_t previous = 0;
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &kAllSignals, &previous, sizeof(uint64_t));
        const int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
        pid = clone(ChildMain, static_cast<char*>(mapped) + kGuardBytes + kChildStackBytes,
                    flags_ | SIGCHLD | CLONE_PARENT_SETTID, const_cast<ChildSetup*>(setup_),
                    &child_pid_);
        if (pid < 0) error = errno;
        // The child's id changes reset the dumpability of memory it shared; it put it back,
        // and so does this (for the broker: never dumpable).
        if (dumpable >= 0 && prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != dumpable) {
          prctl(PR_SET_DUMPABLE, dumpable, 0, 0, 0);
        }
        syscall(SYS_rt_sigprocmask, SIG_SETMASK, &previous, nullptr, sizeof(uint64_t));
        ASAN_UNPOISON_MEMORY_REGION(static_cast<char*>(mapped) + kGuardBytes, kChildStackBytes);
      }
      // The child has exec'd, ended, or has its own copy.
      if (mapped != MAP_FAILED) munmap(mapped, kGuardBytes + kChildStackBytes);
      close(child_sync_read);
      close(child_status_write);
      absl::MutexLock lock(&mu_);
      result_ = pid;
      error_ = error;
      done_ = true;
    });
  }

  // The child's pid, which the kernel writes before the child runs; 0 before that.
  pid_t child() const { return __atomic_load_n(&child_pid_, __ATOMIC_SEQ_CST); }

  // Waits until clone has returned: the child's pid, or -1 with error() set.
  long Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return result_;
  }
  // Whether clone returned by `deadline`.
  bool WaitUntil(absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
  }
  // A clone not yet started will not be.
  void Cancel() { cancelled_.store(true); }
  int error() {
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  const int flags_;
  const ChildSetup* const setup_;
  bool started_ = false;
  pid_t child_pid_ = 0;  // CLONE_PARENT_SETTID
  std::atomic<bool> cancelled_{false};
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  long result_ ABSL_GUARDED_BY(mu_) = -1;
  int error_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<SpawnedWorker> SpawnJailedWorker(const JailOptions& jail,
                                                const WorkerSpawnRequest& request,
                                                const LauncherRun& run_on_launcher,
                                                absl::Duration setup_timeout) {
  SpawnedWorker spawned;
  SpawnedLayers& layers = spawned.layers;
  int clone_flags = 0;
  for (int i = 0; i < kJailLayerCount; ++i) {
    JailLayer layer = static_cast<JailLayer>(i);
    layers.active[i] = JailLayerRequested(jail, layer);
    if (layers.active[i]) {
      clone_flags |= JailLayerCloneFlag(layer);
    } else {
      layers.reasons[i] = jail.enabled ? "off in the configuration or waived" : "jail disabled";
    }
  }
  auto active = [&](JailLayer layer) { return layers.active[static_cast<int>(layer)]; };
  if (active(JailLayer::kFilesystem) && !active(JailLayer::kMountNamespace)) {
    return JailLayerError(JailLayer::kFilesystem, "it needs the mount namespace");
  }
  if (active(JailLayer::kProc) &&
      !(active(JailLayer::kFilesystem) && active(JailLayer::kPidNamespace))) {
    return JailLayerError(JailLayer::kProc, "it needs the filesystem view and the pid namespace");
  }
  const bool user_ns = active(JailLayer::kUserNamespace);
  const bool root = geteuid() == 0;
  std::unique_ptr<FilesystemPlan> plan;
  if (active(JailLayer::kFilesystem)) {
    absl::StatusOr<FilesystemPlan> planned = PlanFilesystem(jail, active(JailLayer::kProc));
    if (!planned.ok()) return JailLayerError(JailLayer::kFilesystem, planned.status().message());
    plan = std::make_unique<FilesystemPlan>(std::move(*planned));
  }
  // As root, the worker never keeps uid 0: nobody through the user namespace's map, or by
  // setresuid when that namespace is off.
  // The worker never keeps the broker's uid when a user namespace maps it elsewhere (root:
  // nobody; an ordinary user: a subordinate uid when it has one).
  const HostIds worker_ids = WorkerHostIds();
  layers.unprivileged_ids = jail.enabled && (root || (user_ns && worker_ids.uid != geteuid()));

  Pipes pipes;
  if (pipe2(pipes.sync, O_CLOEXEC) != 0 || pipe2(pipes.status, O_CLOEXEC) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", strerror(errno)));
  }
  const bool pid_ns = active(JailLayer::kPidNamespace);
  // A missing init is an installation's fault, not the host's: no layer is named (a layer
  // named here could be waived, and the host can give it).
  if (pid_ns && request.init_executable_fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no ffibox-init beside the worker binary (the init of its pid namespace): ",
                     request.init_unavailable_reason));
  }
  unsigned exec_flags = 0;
  if (jail.enabled) exec_flags |= kExecJailed;
  if (jail.enabled && (user_ns || root)) exec_flags |= kExecDropCapabilities;
  if (jail.enabled && root && !user_ns) exec_flags |= kExecNobodyAfterMount;
  // ffibox-init's command line: its name, the flags, then the worker's.
  const std::string exec_flags_text = absl::StrCat(exec_flags);
  std::vector<char*> init_argv = {const_cast<char*>("ffibox-init"),
                                  const_cast<char*>(exec_flags_text.c_str())};
  for (char* const* arg = request.argv; *arg != nullptr; ++arg) init_argv.push_back(*arg);
  init_argv.push_back(nullptr);
  // Only an unprivileged broker's child must be dumpable (the broker's uid writes its maps
  // from outside); any other child runs in the broker's memory until it execs
  // (CLONE_VM | CLONE_VFORK, as posix_spawn does), so no launch copies or write-protects the
  // broker's pages.
  const bool dumpable = user_ns && !root;
  ChildSetup setup{&request,
                   exec_flags,
                   pipes.sync[0],
                   pipes.sync[1],
                   pipes.status[1],
                   pid_ns,
                   active(JailLayer::kUtsNamespace),
                   plan.get(),
                   user_ns,
                   root || worker_ids.subordinate,
                   dumpable,
                   init_argv.data()};
  CloneJob clone(clone_flags | (dumpable ? 0 : CLONE_VM | CLONE_VFORK), &setup);
  clone.Start(run_on_launcher, std::exchange(pipes.sync[0], -1),
              std::exchange(pipes.status[1], -1));
  // The clone may wait for earlier children on the launcher thread (each holds it until it
  // execs): that wait has its own, longer, limit, and the setup's starts with the child.
  absl::Time deadline = absl::Now() + kLauncherQueueTimeouts * setup_timeout;
  // Gives up on the child: unblocks it if it waits for the go, kills it wherever it is, and
  // reaps it once clone has returned.
  auto fail = [&](absl::Status status) {
    clone.Cancel();
    if (pipes.sync[1] >= 0) close(std::exchange(pipes.sync[1], -1));
    if (clone.child() > 0) kill(clone.child(), SIGKILL);
    long pid = clone.Wait();
    if (pid > 0) KillAndReap(static_cast<pid_t>(pid));
    return status;
  };
  std::optional<StatusRecord> cloned = ReadStatus(pipes.status[0], deadline);
  if (!cloned.has_value() || cloned->kind != kCloned) {
    absl::Status failed = fail(absl::InternalError(
        "the worker's jail setup ended before it began, or did not begin in time"));
    if (clone.Wait() >= 0 || clone.error() == ECANCELED) return failed;
    std::string reason = absl::StrCat("clone (namespaces 0x", absl::Hex(clone_flags),
                                      "): ", strerror(clone.error()));
    if (IsExhaustion(clone.error())) return absl::ResourceExhaustedError(reason);
    return JailLayerError(user_ns ? JailLayer::kUserNamespace : JailLayer::kMountNamespace, reason);
  }
  const pid_t child = clone.child();
  deadline = absl::Now() + setup_timeout;
  if (user_ns) {
    absl::Status mapped = WriteUserNamespaceMaps(child, worker_ids);
    if (absl::IsResourceExhausted(mapped)) return fail(mapped);
    if (!mapped.ok()) return fail(JailLayerError(JailLayer::kUserNamespace, mapped.message()));
  }
  (void)!write(pipes.sync[1], "g", 1);
  close(std::exchange(pipes.sync[1], -1));

  std::optional<StatusRecord> record = ReadStatus(pipes.status[0], deadline);
  if (!record.has_value()) {
    return fail(absl::InternalError("the worker's jail setup ended without a report"));
  }
  if (record->kind != kReady) return fail(SetupFailure(plan.get(), *record));
  // The child has exec'd (the init, or the worker right after its report): clone returns,
  // unless something stopped the child on its way.
  if (!clone.WaitUntil(deadline)) {
    return fail(absl::InternalError("the worker's jail setup did not reach its exec in time"));
  }
  if (clone.Wait() != child) return fail(absl::InternalError("clone returned another child"));
  fcntl(pipes.status[0], F_SETFL, O_NONBLOCK);  // ReadRelayedWaitStatus must not block
  spawned.pid = child;
  spawned.status_fd = std::exchange(pipes.status[0], -1);
  spawned.relays_exit = pid_ns;
  spawned.worker_pid = spawned.relays_exit ? InitsChild(child) : child;
  return spawned;
}

std::optional<int> ReadRelayedWaitStatus(int status_fd) {
  StatusRecord record;
  for (;;) {
    ssize_t n = read(status_fd, &record, sizeof(record));
    if (n != static_cast<ssize_t>(sizeof(record)) || record.magic != kStatusMagic) {
      return std::nullopt;
    }
    if (record.kind == kWorkerExited) return record.wait_status;
  }
}

}  // namespace ffibox

#include "server/jail/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/jail/filesystem.h"
#include "server/jail/user_namespace.h"

namespace ffibox {
namespace {

constexpr uint32_t kStatusMagic = 0xffb0a11c;
// fds 0..6: stdin, stdout, stderr, the channel's socket, crash pipe, descriptor socket, the
// channel's memfd.
constexpr int kFirstFreeFd = 7;

enum StatusKind : uint32_t {
  kReady = 1,         // setup done
  kSetupFailed = 2,   // `step` failed with `error`
  kWorkerExited = 3,  // the init relays the worker's `wait_status`
  kCloned = 4         // the child runs and is dumpable: the broker may write its maps
};

// Setup stages outside the filesystem plan (negative, below FilesystemStage's).
enum SetupStage { kStageIds = -20, kStageForkWorker = -21 };

struct StatusRecord {
  uint32_t magic;
  uint32_t kind;
  int32_t step;
  int32_t error;
  int32_t wait_status;
};

// Everything the child needs, prepared before clone: after it, only async-signal-safe calls.
struct ChildSetup {
  const WorkerSpawnRequest* request;
  bool jailed;
  int sync_read;
  int sync_write;
  int status_write;
  bool pid_namespace;
  bool uts_namespace;
  FilesystemPlan* plan;      // null: no filesystem view
  bool user_namespace;       // become the namespace's root (mapped to WorkerHostIds())
  bool may_setgroups;        // setgroups was not denied (root broker, or newgidmap wrote it)
  bool unprivileged_broker;  // the child must be dumpable for its maps to be written
  bool nobody_after_mount;   // root without a user namespace: setresuid(65534) at exec
  bool drop_capabilities;    // securebits, bounding set, capset
  int max_fds;               // RLIMIT_NOFILE at clone: the bound of descriptor loops
};

// The broker's command line and environment strings (one contiguous area), which a pid
// namespace's init (a fork of the broker) blanks so that /proc/1 shows nothing of them.
char* broker_arguments_start = nullptr;
size_t broker_arguments_size = 0;

void Report(int fd, uint32_t kind, int step, int error, int wait_status = 0) {
  StatusRecord record{kStatusMagic, kind, step, error, wait_status};
  (void)!write(fd, &record, sizeof(record));
}

[[noreturn]] void FailSetup(const ChildSetup& setup, int step, int error) {
  Report(setup.status_write, kSetupFailed, step, error);
  _exit(1);
}

// Raw syscalls: glibc's wrappers broadcast the change to every thread the broker had, under
// a lock another broker thread may have held at clone time; the child has one thread.
bool BecomeIds(uid_t uid, gid_t gid, bool may_setgroups) {
  return (!may_setgroups || syscall(SYS_setgroups, 0, nullptr) == 0) &&
         syscall(SYS_setresgid, gid, gid, gid) == 0 && syscall(SYS_setresuid, uid, uid, uid) == 0;
}

// Before exec: no capability survives it, none can come back (no_new_privs), ids as planned.
void DropPrivileges(const ChildSetup& setup) {
  if (!setup.jailed) return;
  if (setup.drop_capabilities) {
    prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                 SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED);
    for (int cap = 0; cap <= 63; ++cap) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  }
  if (setup.nobody_after_mount && !BecomeIds(kNobodyId, kNobodyId, true)) _exit(126);
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  syscall(SYS_capset, &header, data);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(126);
}

[[noreturn]] void ExecWorker(const ChildSetup& setup) {
  const WorkerSpawnRequest& request = *setup.request;
  DropPrivileges(setup);
  // Move the sources above the target numbers first, so no dup2 clobbers another source.
  const int sources[kFirstFreeFd] = {
      request.stdin_fd, request.stdout_fd,     request.stderr_fd,        request.channel_fd,
      request.crash_fd, request.descriptor_fd, request.channel_memory_fd};
  int moved[kFirstFreeFd];
  for (int target = 0; target < kFirstFreeFd; ++target) {
    moved[target] = fcntl(sources[target], F_DUPFD_CLOEXEC, 16);
    if (moved[target] < 0) _exit(127);
  }
  int executable = fcntl(request.executable_fd, F_DUPFD_CLOEXEC, 16);
  if (executable < 0) _exit(127);
  // dup2 clears close-on-exec on the targets.
  for (int target = 0; target < kFirstFreeFd; ++target) {
    if (dup2(moved[target], target) != target) _exit(127);
  }
  if (dup3(executable, kFirstFreeFd, O_CLOEXEC) != kFirstFreeFd) _exit(127);
  if (syscall(SYS_close_range, kFirstFreeFd + 1, ~0U, 0) != 0) {
    for (int fd = kFirstFreeFd + 1; fd < setup.max_fds; ++fd) close(fd);
  }
  char* const empty_env[] = {nullptr};
  syscall(SYS_execveat, kFirstFreeFd, "", request.argv, empty_env, AT_EMPTY_PATH);
  _exit(127);
}

// The pid namespace's init: relays the worker's end, then ends (taking the namespace along).
[[noreturn]] void RunInit(const ChildSetup& setup, pid_t worker) {
  prctl(PR_SET_DUMPABLE, 0);
  // What /proc/1/cmdline and environ show: "ffibox-init", nothing of the broker.
  if (broker_arguments_start != nullptr && broker_arguments_size > 0) {
    memset(broker_arguments_start, 0, broker_arguments_size);
    const char title[] = "ffibox-init";
    if (broker_arguments_size > sizeof(title)) memcpy(broker_arguments_start, title, sizeof(title));
  }
  Report(setup.status_write, kReady, 0, 0);
  // Keep only the status pipe: the channel's end of stream must follow the worker's death.
  int keep = setup.status_write;
  if ((keep > 0 && syscall(SYS_close_range, 0, keep - 1, 0) != 0) ||
      syscall(SYS_close_range, keep + 1, ~0U, 0) != 0) {
    for (int fd = 0; fd < setup.max_fds; ++fd) {  // kernels before 5.9
      if (fd != keep) close(fd);
    }
  }
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {};
  syscall(SYS_capset, &header, data);
  for (;;) {
    int status = 0;
    pid_t ended = waitpid(-1, &status, 0);
    if (ended == worker) {
      Report(keep, kWorkerExited, 0, 0, status);
      _exit(0);
    }
    if (ended < 0 && errno != EINTR) _exit(0);
  }
}

[[noreturn]] void RunChild(ChildSetup& setup) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The broker is not dumpable, and neither is this copy of it: an unprivileged broker
  // could not open our uid_map. The child holds no secret the broker's uid may not see.
  if (setup.user_namespace && setup.unprivileged_broker) prctl(PR_SET_DUMPABLE, 1);
  Report(setup.status_write, kCloned, 0, 0);
  // Wait for the broker (it writes the user namespace's maps first). End of file means it
  // died before PDEATHSIG was armed.
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
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  struct sigaction default_action = {};
  default_action.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &default_action, nullptr);

  FilesystemFailure failure;
  if (setup.plan != nullptr && !OpenFilesystemSources(*setup.plan, &failure)) {
    FailSetup(setup, failure.step, failure.error);
  }
  if (setup.user_namespace) {
    if (!BecomeIds(0, 0, setup.may_setgroups)) FailSetup(setup, kStageIds, errno);
    prctl(PR_SET_DUMPABLE, 1);  // changing ids cleared it; /proc/self must stay ours
  }
  if (setup.plan != nullptr && !BuildFilesystem(*setup.plan, &failure)) {
    FailSetup(setup, failure.step, failure.error);
  }
  if (setup.uts_namespace) (void)!sethostname("ffibox", 6);
  if (setup.pid_namespace) {
    long worker = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (worker == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      ExecWorker(setup);
    }
    if (worker < 0) FailSetup(setup, kStageForkWorker, errno);
    RunInit(setup, static_cast<pid_t>(worker));
  }
  Report(setup.status_write, kReady, 0, 0);
  ExecWorker(setup);
}

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

// The soft RLIMIT_NOFILE (ffiboxd raises it to the hard limit), capped for the loops that
// close descriptors one by one on kernels without close_range.
int MaxDescriptors() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 1 << 20;
  return static_cast<int>(std::min<rlim_t>(limit.rlim_cur, 1 << 20));
}

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
  if (plan == nullptr) {
    return absl::InternalError(absl::StrCat("the worker's jail setup failed (stage ", record.step,
                                            "): ", strerror(record.error)));
  }
  FilesystemFailure failure{record.step, record.error};
  return JailLayerError(IsProcStep(*plan, record.step) ? JailLayer::kProc : JailLayer::kFilesystem,
                        DescribeFilesystemFailure(*plan, failure));
}

}  // namespace

void HideBrokerCommandLineInJail(int argc, char** argv, char** envp) {
  if (argc <= 0 || argv[0] == nullptr) return;
  char* start = argv[0];
  char* end = start;
  // The kernel lays argv and then environ strings out contiguously; stop at any gap.
  for (int i = 0; i < argc && argv[i] == end; ++i) end += strlen(argv[i]) + 1;
  for (char** env = envp; env != nullptr && *env != nullptr && *env == end; ++env) {
    end += strlen(*env) + 1;
  }
  broker_arguments_start = start;
  broker_arguments_size = static_cast<size_t>(end - start);
}

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
  ChildSetup setup{&request,
                   jail.enabled,
                   pipes.sync[0],
                   pipes.sync[1],
                   pipes.status[1],
                   active(JailLayer::kPidNamespace),
                   active(JailLayer::kUtsNamespace),
                   plan.get(),
                   user_ns,
                   root || worker_ids.subordinate,
                   !root,
                   jail.enabled && root && !user_ns,
                   jail.enabled && (user_ns || root),
                   MaxDescriptors()};
  long pid = -1;
  int clone_errno = 0;
  run_on_launcher([&] {
    pid = syscall(SYS_clone, clone_flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (pid == 0) RunChild(setup);
    if (pid < 0) clone_errno = errno;
  });
  if (pid < 0) {
    std::string reason =
        absl::StrCat("clone (namespaces 0x", absl::Hex(clone_flags), "): ", strerror(clone_errno));
    if (IsExhaustion(clone_errno)) return absl::ResourceExhaustedError(reason);
    return JailLayerError(user_ns ? JailLayer::kUserNamespace : JailLayer::kMountNamespace, reason);
  }
  close(pipes.sync[0]);
  pipes.sync[0] = -1;
  close(pipes.status[1]);
  pipes.status[1] = -1;
  const pid_t child = static_cast<pid_t>(pid);
  const absl::Time deadline = absl::Now() + setup_timeout;
  auto fail = [&](absl::Status status) {
    KillAndReap(child);  // ~Pipes closes the status pipe
    return status;
  };
  std::optional<StatusRecord> cloned = ReadStatus(pipes.status[0], deadline);
  if (!cloned.has_value() || cloned->kind != kCloned) {
    return fail(absl::InternalError("the worker's jail setup ended before it began"));
  }
  if (user_ns) {
    absl::Status mapped = WriteUserNamespaceMaps(child, worker_ids);
    if (!mapped.ok()) return fail(JailLayerError(JailLayer::kUserNamespace, mapped.message()));
  }
  (void)!write(pipes.sync[1], "g", 1);
  close(pipes.sync[1]);
  pipes.sync[1] = -1;

  std::optional<StatusRecord> record = ReadStatus(pipes.status[0], deadline);
  if (!record.has_value()) {
    return fail(absl::InternalError("the worker's jail setup ended without a report"));
  }
  if (record->kind != kReady) return fail(SetupFailure(plan.get(), *record));
  fcntl(pipes.status[0], F_SETFL, O_NONBLOCK);  // ReadRelayedWaitStatus must not block
  spawned.pid = child;
  spawned.status_fd = std::exchange(pipes.status[0], -1);
  spawned.relays_exit = active(JailLayer::kPidNamespace);
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

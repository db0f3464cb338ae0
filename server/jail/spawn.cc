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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/jail/filesystem.h"
#include "server/jail/user_namespace.h"

namespace ffibox {
namespace {

constexpr uint32_t kStatusMagic = 0xffb0a11c;
constexpr int kFirstFreeFd = 5;  // fds 0..4 are stdin, stdout, stderr, channel, crash pipe

enum StatusKind : uint32_t {
  kReady = 1,        // setup done; `error` is the /proc mount's errno (0 = mounted)
  kSetupFailed = 2,  // `step` failed with `error`
  kWorkerExited = 3  // the init relays the worker's `wait_status`
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
  FilesystemPlan* plan;       // null: no filesystem view
  bool ns_root_before_mount;  // become the user namespace's root (host nobody) first
  bool nobody_after_mount;    // no user namespace: setresuid(65534) after the view
  bool drop_capabilities;     // securebits, bounding set, capset
};

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
bool BecomeIds(uid_t uid, gid_t gid) {
  return syscall(SYS_setgroups, 0, nullptr) == 0 && syscall(SYS_setresgid, gid, gid, gid) == 0 &&
         syscall(SYS_setresuid, uid, uid, uid) == 0;
}

// Before exec: no capability survives it, none can come back (no_new_privs), ids as planned.
void DropPrivileges(const ChildSetup& setup) {
  if (!setup.jailed) return;
  if (setup.drop_capabilities) {
    prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                 SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED);
    for (int cap = 0; cap <= 63; ++cap) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  }
  if (setup.nobody_after_mount && !BecomeIds(kNobodyId, kNobodyId)) _exit(126);
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
  int channel = fcntl(request.channel_fd, F_DUPFD_CLOEXEC, 10);
  int crash = fcntl(request.crash_fd, F_DUPFD_CLOEXEC, 10);
  int stdin_fd = fcntl(request.stdin_fd, F_DUPFD_CLOEXEC, 10);
  int executable = fcntl(request.executable_fd, F_DUPFD_CLOEXEC, 10);
  if (channel < 0 || crash < 0 || stdin_fd < 0 || executable < 0) _exit(127);
  // dup2 clears close-on-exec on the targets.
  if (dup2(stdin_fd, STDIN_FILENO) < 0 || dup2(channel, 3) != 3 || dup2(crash, 4) != 4 ||
      dup3(executable, kFirstFreeFd, O_CLOEXEC) != kFirstFreeFd) {
    _exit(127);
  }
  if (syscall(SYS_close_range, kFirstFreeFd + 1, ~0U, 0) != 0) {
    for (int fd = kFirstFreeFd + 1; fd < 65536; ++fd) close(fd);
  }
  char* const empty_env[] = {nullptr};
  syscall(SYS_execveat, kFirstFreeFd, "", request.argv, empty_env, AT_EMPTY_PATH);
  _exit(127);
}

// The pid namespace's init: relays the worker's end, then ends (taking the namespace along).
[[noreturn]] void RunInit(const ChildSetup& setup, pid_t worker, int proc_error) {
  prctl(PR_SET_DUMPABLE, 0);
  Report(setup.status_write, kReady, 0, proc_error);
  // Keep only the status pipe: the channel's end of stream must follow the worker's death.
  int keep = setup.status_write;
  if (keep > 0) syscall(SYS_close_range, 0, keep - 1, 0);
  syscall(SYS_close_range, keep + 1, ~0U, 0);
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
  // Wait for the broker (it writes the user namespace's maps first). End of file means it
  // died before PDEATHSIG was armed.
  close(setup.sync_write);
  char go = 0;
  ssize_t got;
  while ((got = read(setup.sync_read, &go, 1)) < 0 && errno == EINTR) {
  }
  if (got != 1) _exit(1);
  close(setup.sync_read);

  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  struct sigaction default_action = {};
  default_action.sa_handler = SIG_DFL;
  sigaction(SIGPIPE, &default_action, nullptr);

  int proc_error = 0;
  if (setup.plan != nullptr) {
    FilesystemFailure failure;
    if (!OpenFilesystemSources(*setup.plan, &failure)) {
      FailSetup(setup, failure.step, failure.error);
    }
    if (setup.ns_root_before_mount) {
      if (!BecomeIds(0, 0)) FailSetup(setup, kStageIds, errno);
      prctl(PR_SET_DUMPABLE, 1);  // changing ids cleared it; /proc/self must stay ours
    }
    if (!BuildFilesystem(*setup.plan, &failure, &proc_error)) {
      FailSetup(setup, failure.step, failure.error);
    }
  }
  if (setup.uts_namespace) (void)!sethostname("ffibox", 6);
  if (setup.pid_namespace) {
    long worker = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (worker == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      ExecWorker(setup);
    }
    if (worker < 0) FailSetup(setup, kStageForkWorker, errno);
    RunInit(setup, static_cast<pid_t>(worker), proc_error);
  }
  Report(setup.status_write, kReady, 0, proc_error);
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
    for (int fd : {sync[0], sync[1], status[1]}) {
      if (fd >= 0) close(fd);
    }
  }
};

}  // namespace

absl::StatusOr<SpawnedWorker> SpawnJailedWorker(const JailOptions& jail,
                                                const WorkerSpawnRequest& request,
                                                const LauncherRun& run_on_launcher,
                                                absl::Duration setup_timeout) {
  // Each retry drops a layer that failed on this host (recorded for later workers too).
  for (int attempt = 0; attempt < 4; ++attempt) {
    SpawnedWorker spawned;
    SpawnedLayers& layers = spawned.layers;
    int clone_flags = 0;
    for (int i = 0; i < kJailLayerCount; ++i) {
      JailLayer layer = static_cast<JailLayer>(i);
      if (!JailLayerRequested(jail, layer)) {
        layers.reasons[i] = "disabled in the configuration";
        continue;
      }
      layers.reasons[i] = JailLayerUnavailableReason(layer);
      layers.active[i] = layers.reasons[i].empty();
      if (layers.active[i]) clone_flags |= JailLayerCloneFlag(layer);
    }
    auto active = [&](JailLayer layer) { return layers.active[static_cast<int>(layer)]; };
    auto deactivate = [&](JailLayer layer, std::string reason) {
      layers.active[static_cast<int>(layer)] = false;
      layers.reasons[static_cast<int>(layer)] = std::move(reason);
    };
    if (!active(JailLayer::kMountNamespace)) {
      deactivate(JailLayer::kFilesystem, "needs the mount namespace");
    }
    if (!active(JailLayer::kFilesystem) || !active(JailLayer::kPidNamespace)) {
      deactivate(JailLayer::kProc, "needs the filesystem view and the pid namespace");
    }
    const bool user_ns = active(JailLayer::kUserNamespace);
    std::unique_ptr<FilesystemPlan> plan;
    if (active(JailLayer::kFilesystem)) {
      absl::StatusOr<FilesystemPlan> planned = PlanFilesystem(jail, active(JailLayer::kProc));
      if (!planned.ok()) return planned.status();
      plan = std::make_unique<FilesystemPlan>(std::move(*planned));
      layers.whole_filesystem = plan->whole_filesystem;
    }
    const bool nobody =
        jail.enabled && plan != nullptr && !plan->whole_filesystem && (user_ns || geteuid() == 0);
    layers.unprivileged_ids = nobody;

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
                     nobody && user_ns,
                     nobody && !user_ns,
                     jail.enabled && (user_ns || geteuid() == 0)};
    long pid = -1;
    int clone_errno = 0;
    run_on_launcher([&] {
      pid = syscall(SYS_clone, clone_flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
      if (pid == 0) RunChild(setup);
      if (pid < 0) clone_errno = errno;
    });
    if (pid < 0) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "clone (namespaces 0x", absl::Hex(clone_flags), "): ", strerror(clone_errno)));
    }
    close(pipes.sync[0]);
    pipes.sync[0] = -1;
    close(pipes.status[1]);
    pipes.status[1] = -1;
    const pid_t child = static_cast<pid_t>(pid);
    if (user_ns) {
      absl::Status mapped =
          WriteUserNamespaceMaps(child, nobody ? UnprivilegedWorkerIds() : BrokerIds());
      if (!mapped.ok()) {
        KillAndReap(child);
        close(pipes.status[0]);
        MarkJailLayerUnavailable(JailLayer::kUserNamespace, mapped.message());
        continue;
      }
    }
    (void)!write(pipes.sync[1], "g", 1);
    close(pipes.sync[1]);
    pipes.sync[1] = -1;

    std::optional<StatusRecord> record = ReadStatus(pipes.status[0], absl::Now() + setup_timeout);
    if (record.has_value() && record->kind == kReady) {
      if (active(JailLayer::kProc) && record->error != 0) {
        std::string reason = absl::StrCat("mount proc: ", strerror(record->error));
        MarkJailLayerUnavailable(JailLayer::kProc, reason);
        deactivate(JailLayer::kProc, reason);
      }
      fcntl(pipes.status[0], F_SETFL, O_NONBLOCK);  // ReadRelayedWaitStatus must not block
      spawned.pid = child;
      spawned.status_fd = pipes.status[0];
      spawned.relays_exit = active(JailLayer::kPidNamespace);
      spawned.worker_pid = spawned.relays_exit ? InitsChild(child) : child;
      return spawned;
    }
    KillAndReap(child);
    close(pipes.status[0]);
    if (!record.has_value()) {
      return absl::InternalError("the worker's jail setup ended without a report");
    }
    if (record->kind == kSetupFailed && plan != nullptr && record->step > kStageIds) {
      FilesystemFailure failure{record->step, record->error};
      MarkJailLayerUnavailable(JailLayer::kFilesystem, DescribeFilesystemFailure(*plan, failure));
      continue;
    }
    return absl::InternalError(absl::StrCat("the worker's jail setup failed (stage ", record->step,
                                            "): ", strerror(record->error)));
  }
  return absl::InternalError("the worker's jail could not be set up");
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

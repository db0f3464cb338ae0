#include "server/broker/worker_process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/descriptor_passing.h"
#include "core/thread_name.h"
#include "server/broker/library_descriptor.h"
#include "server/jail/jail_layers.h"
#include "server/jail/seccomp_policy.h"
#include "server/jail/user_namespace.h"
#include "server/jail/worker_jail.h"
#include "server/protocol/worker_settings.h"

namespace ffibox {
namespace {

// Runs closures on one thread that lives as long as the process (see the header comment).
class LauncherThread {
 public:
  static LauncherThread& Get() {
    static LauncherThread* launcher = new LauncherThread();  // never destroyed
    return *launcher;
  }

  // Starts `job` on the launcher thread; jobs run one at a time, in order.
  void Post(std::function<void()> job) {
    absl::MutexLock lock(&mu_);
    jobs_.push_back(std::move(job));
  }

 private:
  LauncherThread() {
    std::thread([this] {
      NameThisThread("ffibox-launch");
      Loop();
    }).detach();
  }

  void Loop() {
    for (;;) {
      std::function<void()> job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](std::deque<std::function<void()>>* jobs) { return !jobs->empty(); }, &jobs_));
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  absl::Mutex mu_;
  std::deque<std::function<void()>> jobs_ ABSL_GUARDED_BY(mu_);
};

// Waits until `timeout` for the worker's seccomp listener on the descriptor socket. When
// the worker ends first, the error carries what it printed on stderr (`stderr_fd`).
absl::StatusOr<int> ReceiveSeccompListener(int descriptor_socket, int stderr_fd,
                                           absl::Duration timeout) {
  struct pollfd pfd = {descriptor_socket, POLLIN, 0};
  int ready;
  do {
    ready = poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  } while (ready < 0 && errno == EINTR);
  absl::StatusOr<TaggedDescriptor> received =
      ready > 0 ? ReceiveDescriptor(descriptor_socket)
                : absl::DeadlineExceededError("no seccomp listener from the worker in time");
  if (received.ok() && received->tag == kSeccompListenerTag) return received->fd;
  if (received.ok()) close(received->fd);
  char said[1024];
  ssize_t n = read(stderr_fd, said, sizeof(said));
  std::string output = n > 0 ? std::string(said, static_cast<size_t>(n)) : "";
  while (!output.empty() && output.back() == '\n') output.pop_back();
  return SeccompJailError(absl::StrCat("the worker did not hand over its seccomp listener (",
                                       received.ok() ? "wrong tag" : received.status().message(),
                                       ")", output.empty() ? "" : absl::StrCat(": ", output)));
}

}  // namespace

namespace {

// Whether the file or directory of status `st` could have been written by no one but root and
// this process's user: owned by one of them, writable by neither group nor others.
bool OnlyRootOrUsCouldWrite(const struct stat& st) {
  return (st.st_uid == 0 || st.st_uid == geteuid()) && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

absl::Status OpenFailure(const std::string& path, int error) {
  std::string message = absl::StrCat("cannot open ", path, ": ", strerror(error));
  if (error == EMFILE || error == ENFILE) return absl::ResourceExhaustedError(message);
  return absl::FailedPreconditionError(message);
}

// Why the executable `fd` (at `path`) may not be run now, or "": it runs before the jail is
// whole (ffibox-init with the jail's privileges; the worker before its own seccomp filter),
// so only a regular file that no one but root or this user could have written is.
std::string WhyNotRunnable(int fd, const std::string& path) {
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || !OnlyRootOrUsCouldWrite(st)) {
    return absl::StrCat(path,
                        ": not a regular file owned by root or this user and writable by no "
                        "one else");
  }
  if ((st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH)) == 0) {
    return absl::StrCat(path, ": not executable");
  }
  return "";
}

// The file open (O_PATH, checked by WhyNotRunnable) at `fd` as a sealed executable copy: a
// worker whose host uid owns the file could otherwise change its mode and times through
// /proc/self/exe. Read through that descriptor, not by name.
absl::StatusOr<int> CopyExecutable(int fd, const std::string& path, const char* name) {
  const int readable =
      open(absl::StrCat("/proc/self/fd/", fd).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (readable < 0) return OpenFailure(path, errno);
  absl::Cleanup close_readable = [readable] { close(readable); };
  struct stat st;
  if (fstat(readable, &st) != 0) return OpenFailure(path, errno);
  return CopyIntoSealedMemfd(readable, st.st_size, path, name, /*executable=*/true);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const WorkerExecutables>> WorkerExecutables::Open(
    const std::string& worker_path) {
  // The directory first, then both files in it by name: each is looked up once.
  const size_t slash = worker_path.rfind('/');
  const std::string directory =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : worker_path.substr(0, slash));
  const std::string worker_name =
      slash == std::string::npos ? worker_path : worker_path.substr(slash + 1);
  const int directory_fd = open(directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (directory_fd < 0) return OpenFailure(directory, errno);
  absl::Cleanup close_directory = [directory_fd] { close(directory_fd); };
  // Whoever may write the directory may put other files under these names before ffiboxd
  // opens them.
  struct stat directory_stat;
  if (fstat(directory_fd, &directory_stat) != 0 || !OnlyRootOrUsCouldWrite(directory_stat)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the directory of the worker binaries, ", directory,
                     ", is not owned by root or this user or is writable by others"));
  }
  int worker_fd = openat(directory_fd, worker_name.c_str(), O_PATH | O_CLOEXEC);
  if (worker_fd < 0) return OpenFailure(worker_path, errno);
  const std::string unrunnable = WhyNotRunnable(worker_fd, worker_path);
  if (!unrunnable.empty()) {
    close(worker_fd);
    return absl::FailedPreconditionError(absl::StrCat("worker binary ", unrunnable));
  }
  // The pid namespace's init, beside the worker binary (needed only with that layer).
  const std::string init_path = absl::StrCat(
      worker_path.substr(0, slash == std::string::npos ? 0 : slash + 1), "ffibox-init");
  int init_fd = openat(directory_fd, "ffibox-init", O_PATH | O_CLOEXEC);
  const int init_error = errno;
  if (init_fd < 0 && (init_error == EMFILE || init_error == ENFILE)) {
    close(worker_fd);
    return OpenFailure(init_path, init_error);
  }
  // Workers that run as the binaries' owner (an unprivileged ffiboxd whose user has no
  // subordinate ids) run sealed copies: through /proc/self/exe they could otherwise make
  // the binaries unrunnable on the host (chmod) or change their times. ffibox-init is
  // checked as the worker binary is before it is copied (afterwards, only its copy is run).
  std::string init_unavailable =
      init_fd < 0 ? absl::StrCat(init_path, ": ", strerror(init_error)) : "";
  struct stat worker_stat;
  const bool copies =
      fstat(worker_fd, &worker_stat) == 0 && worker_stat.st_uid == WorkerHostIds().uid;
  if (copies) {
    if (init_fd >= 0) init_unavailable = WhyNotRunnable(init_fd, init_path);
    absl::StatusOr<int> worker_copy = CopyExecutable(worker_fd, worker_path, "ffibox-worker");
    absl::StatusOr<int> init_copy = init_fd < 0 || !init_unavailable.empty()
                                        ? absl::StatusOr<int>(-1)
                                        : CopyExecutable(init_fd, init_path, "ffibox-init");
    close(worker_fd);
    if (init_fd >= 0) close(init_fd);
    if (!worker_copy.ok() || !init_copy.ok()) {
      if (worker_copy.ok()) close(*worker_copy);
      if (init_copy.ok() && *init_copy >= 0) close(*init_copy);
      return !worker_copy.ok() ? worker_copy.status() : init_copy.status();
    }
    worker_fd = *worker_copy;
    init_fd = *init_copy;
  }
  return std::shared_ptr<const WorkerExecutables>(new WorkerExecutables(
      worker_fd, worker_path, init_fd, init_path, std::move(init_unavailable), copies));
}

int WorkerExecutables::worker_fd(std::string* unavailable) const {
  return Runnable(worker_fd_, worker_path_, unavailable);
}

int WorkerExecutables::init_fd(std::string* unavailable) const {
  if (init_fd_ < 0) {
    *unavailable = init_unavailable_;
    return -1;
  }
  return Runnable(init_fd_, init_path_, unavailable);
}

int WorkerExecutables::Runnable(int fd, const std::string& path, std::string* unavailable) const {
  if (copies_) {
    // A sealed copy: its bytes cannot change; its mode is put back, where the kernel could
    // not seal its execute bits (before Linux 6.3) and a worker changed them.
    unavailable->clear();
    if (fchmod(fd, kExecutableCopyMode) != 0)
      *unavailable = absl::StrCat(path, ": ", strerror(errno));
  } else {
    // Looked at before each launch: the file stays the one opened, but its owner and mode
    // may change.
    *unavailable = WhyNotRunnable(fd, path);
  }
  return unavailable->empty() ? fd : -1;
}

WorkerExecutables::~WorkerExecutables() {
  close(worker_fd_);
  if (init_fd_ >= 0) close(init_fd_);
}

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(
    const WorkerLaunchOptions& options) {
  std::shared_ptr<const WorkerExecutables> executables = options.executables;
  if (executables == nullptr) {
    absl::StatusOr<std::shared_ptr<const WorkerExecutables>> opened =
        WorkerExecutables::Open(options.worker_path);
    if (!opened.ok()) return opened.status();
    executables = *std::move(opened);
  }
  if (options.jail.enabled) {
    absl::Status policy =
        ValidateSeccompPolicy(options.jail.seccomp_policy, options.jail.extra_syscalls);
    if (!policy.ok()) return absl::InvalidArgumentError(policy.message());
  }
  // Closed on every return; the child has its own copies.
  struct Descriptors {
    int channel[2] = {-1, -1};
    int crash[2] = {-1, -1};
    int descriptors[2] = {-1, -1};
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
    int null = -1;
    ~Descriptors() {
      for (int fd : {channel[0], channel[1], crash[0], crash[1], descriptors[0], descriptors[1],
                     out[0], out[1], err[0], err[1], null}) {
        if (fd >= 0) close(fd);
      }
    }
  } fds;
  // Keep a reserve of descriptors for the broker's own work (accepting, logging): a worker
  // start that would eat into it fails with RESOURCE_EXHAUSTED, never with a weaker jail.
  absl::Status reserve = CheckDescriptorReserve();
  if (!reserve.ok()) return reserve;
  // Requests and replies travel in shared memory; the channel's socket only tells each side
  // that the other has gone.
  absl::StatusOr<std::unique_ptr<ShmChannel>> channel = ShmChannel::Create(kWorkerChannelRingBytes);
  if (!channel.ok()) return channel.status();
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.channel) != 0 ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds.descriptors) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("socketpair: ", strerror(errno)));
  }
  if (pipe2(fds.crash, O_CLOEXEC | O_NONBLOCK) != 0 || pipe2(fds.out, O_CLOEXEC) != 0 ||
      pipe2(fds.err, O_CLOEXEC) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", strerror(errno)));
  }
  // The broker reads the output pipes without blocking; the worker's ends stay blocking.
  fcntl(fds.out[0], F_SETFL, O_NONBLOCK);
  fcntl(fds.err[0], F_SETFL, O_NONBLOCK);
  fds.null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fds.null < 0) {
    std::string message = absl::StrCat("cannot open /dev/null: ", strerror(errno));
    if (errno == EMFILE || errno == ENFILE) return absl::ResourceExhaustedError(message);
    return absl::FailedPreconditionError(message);
  }
  internal::WorkerSettings settings = options.worker;
  if (options.jail.enabled) {
    *settings.mutable_jail() = WorkerJailFor(options.jail, options.jail_self_test);
  }
  std::vector<std::string> args = {"ffibox-worker", WorkerSettingsArgument(settings)};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  WorkerSpawnRequest request;
  std::string worker_unavailable;
  request.executable_fd = executables->worker_fd(&worker_unavailable);
  if (request.executable_fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("worker binary ", worker_unavailable));
  }
  request.argv = argv.data();
  request.stdin_fd = fds.null;
  request.stdout_fd = fds.out[1];
  request.stderr_fd = fds.err[1];
  request.channel_fd = fds.channel[1];
  request.crash_fd = fds.crash[1];
  request.descriptor_fd = fds.descriptors[1];
  request.channel_memory_fd = (*channel)->memfd();
  request.init_executable_fd = executables->init_fd(&request.init_unavailable_reason);
  absl::StatusOr<SpawnedWorker> spawned = SpawnJailedWorker(
      options.jail, request,
      [](std::function<void()> job) { LauncherThread::Get().Post(std::move(job)); });
  if (!spawned.ok()) return spawned.status();
  // The worker has its copies: without ours, its death shows as a hangup at once.
  for (int* fd : {&fds.channel[1], &fds.crash[1], &fds.descriptors[1], &fds.out[1], &fds.err[1]}) {
    close(*fd);
    *fd = -1;
  }
  // Nothing is read from the hangup socket, ever: the worker may not queue anything there.
  // Descriptors queued in a socket nobody reads count against every process of the worker's
  // user (the kernel's in-flight count, per user of the host, bounded by the sender's
  // RLIMIT_NOFILE): a library could otherwise stop every other worker of that user from
  // handing over its seccomp listener. Its sends now fail with EPIPE.
  shutdown(fds.channel[0], SHUT_RD);
  (*channel)->CloseMemfd();

  absl::StatusOr<std::unique_ptr<WorkerConnection>> connection =
      MakeShmWorkerConnection(*std::move(channel), fds.channel[0], options.max_reply_bytes);
  fds.channel[0] = -1;  // owned by the connection now (or closed by its failure)
  if (!connection.ok()) {
    kill(spawned->pid, SIGKILL);
    waitpid(spawned->pid, nullptr, 0);
    close(spawned->status_fd);
    return connection.status();
  }
  // A jailed worker installs its seccomp filter before it reads any request and hands over
  // the filter's listener; without it the broker could not see violations, so the start
  // fails (the worker's stderr says why it could not).
  int listener = -1;
  if (options.jail.enabled) {
    absl::StatusOr<int> received =
        ReceiveSeccompListener(fds.descriptors[0], fds.err[0], absl::Seconds(10));
    if (!received.ok()) {
      kill(spawned->pid, SIGKILL);
      waitpid(spawned->pid, nullptr, 0);
      close(spawned->status_fd);
      return received.status();
    }
    listener = *received;
  }
  // The listener was the only thing the worker sends on the descriptor socket; the broker
  // still sends on it (a library's descriptor, the same-host channel's memory).
  shutdown(fds.descriptors[0], SHUT_RD);
  WorkerDescriptors owned;
  owned.crash = std::exchange(fds.crash[0], -1);
  owned.descriptors = std::exchange(fds.descriptors[0], -1);
  owned.stdout_read = std::exchange(fds.out[0], -1);
  owned.stderr_read = std::exchange(fds.err[0], -1);
  return std::unique_ptr<WorkerProcess>(
      new WorkerProcess(*spawned, options, std::move(*connection), owned, listener));
}

WorkerProcess::~WorkerProcess() {
  Kill();
  Reap(absl::ZeroDuration());
  // Its thread watches the descriptors closed below.
  connection_.reset();
  for (int fd : {fds_.crash, fds_.descriptors, fds_.stdout_read, fds_.stderr_read,
                 seccomp_listener_, status_fd_}) {
    if (fd >= 0) close(fd);
  }
}

absl::Status WorkerProcess::AwaitStart(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    // In slices: a worker the jail stopped at a forbidden syscall sends nothing more until
    // the notification is handled (which kills it).
    absl::StatusOr<internal::WorkerReply> first =
        connection_->Receive(std::min(deadline, absl::Now() + kStartLook));
    if (first.ok()) {
      return first->started() ? absl::OkStatus()
                              : absl::InternalError("the worker's first frame is not its start");
    }
    if (!absl::IsDeadlineExceeded(first.status()) || absl::Now() >= deadline) {
      return first.status();
    }
    struct pollfd notified = {seccomp_listener_, POLLIN, 0};
    if (seccomp_listener_ >= 0 && poll(&notified, 1, 0) == 1 && (notified.revents & POLLIN)) {
      HandleSeccompNotification();
    }
  }
}

absl::Status WorkerProcess::Begin(uint64_t generation, bool request_follows) {
  if (generation == 0 || generation_ != 0) {
    return absl::FailedPreconditionError("a worker begins once, with a generation of at least 1");
  }
  internal::WorkerRequest begin;
  begin.mutable_begin()->set_generation(generation);
  // The request the worker was started for comes right behind, unless it was taken ahead.
  begin.set_next_follows(request_follows);
  absl::Status sent = connection_->Send(begin);
  if (!sent.ok()) return sent;
  generation_ = generation;
  return absl::OkStatus();
}

absl::Status WorkerProcess::SendDescriptor(int fd, uint64_t tag) {
  absl::MutexLock lock(&descriptor_mu_);
  return ffibox::SendDescriptor(fds_.descriptors, fd, tag);
}

bool WorkerProcess::HandleSeccompNotification() {
  // A notification withdrawn before it was read (its thread was interrupted) is no verdict:
  // keep watching.
  absl::StatusOr<SeccompViolation> violation = ReceiveSeccompViolation(seccomp_listener_);
  if (!violation.ok()) return true;
  absl::MutexLock lock(&mu_);
  if (exit_.seccomp_violation < 0) {
    exit_.seccomp_violation = violation->syscall;
    exit_.seccomp_violation_detail = DescribeSeccompViolation(*violation);
  }
  if (!reaped_) {
    exit_.killed_by_broker = true;
    kill(pid_, SIGKILL);
  }
  return false;
}

bool WorkerProcess::WaitForSeccompViolation(absl::Duration timeout) {
  if (seccomp_listener_ < 0) return false;
  absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (exit_.seccomp_violation >= 0) return true;
    }
    int64_t left = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left <= 0) return false;
    struct pollfd pfd = {seccomp_listener_, POLLIN, 0};
    int ready = poll(&pfd, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0 || !(pfd.revents & POLLIN)) return false;
    HandleSeccompNotification();
  }
}

absl::Status CheckDescriptorReserve() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return absl::OkStatus();
  }
  // The lowest free descriptor number is not a count, so count what is open.
  size_t open_count = 0;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (readdir(dir) != nullptr) ++open_count;
    closedir(dir);
    open_count = open_count > 3 ? open_count - 3 : 0;  // ".", "..", the directory itself
  } else {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot count open descriptors: ", strerror(errno)));
  }
  if (open_count + kWorkerStartDescriptors + kDescriptorReserve > limit.rlim_cur) {
    return absl::ResourceExhaustedError(
        absl::StrCat("ffiboxd has ", open_count, " of its ", limit.rlim_cur,
                     " descriptors open; starting a worker would leave fewer than ",
                     kDescriptorReserve, " in reserve"));
  }
  return absl::OkStatus();
}

std::optional<CrashReport> WorkerProcess::ReadCrashReport() {
  CrashReport report;
  // The pipe is non-blocking and the worker is dead: whatever it wrote is there now.
  ssize_t n = read(fds_.crash, &report, sizeof(report));
  if (n != static_cast<ssize_t>(sizeof(report)) || report.magic != kCrashReportMagic) {
    return std::nullopt;
  }
  return report;
}

void WorkerProcess::Kill() {
  absl::MutexLock lock(&mu_);
  if (reaped_) return;
  exit_.killed_by_broker = true;
  kill(pid_, SIGKILL);
}

bool WorkerProcess::RecordExit(int status, const struct rusage& usage) {
  reaped_ = true;
  exit_.cpu_used_seconds = absl::ToDoubleSeconds(absl::DurationFromTimeval(usage.ru_utime) +
                                                 absl::DurationFromTimeval(usage.ru_stime));
  // An init relays how the worker ended as soon as it has reaped it, before its own end
  // (which may take a while: its namespaces' teardown), so the record may be there even
  // when ffiboxd had to kill the init.
  bool relayed_status = false;
  if (relays_exit_) {
    std::optional<int> relayed = ReadRelayedWaitStatus(status_fd_);
    if (relayed.has_value()) {
      status = *relayed;
      relayed_status = true;
    }
  }
  if (WIFSIGNALED(status)) {
    exit_.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    exit_.exit_code = WEXITSTATUS(status);
  }
  std::optional<CrashReport> report = ReadCrashReport();
  // Only a report about the signal that really killed the worker, or the status it really
  // exited with, is believed.
  if (report.has_value() && (exit_.signal != 0 ? report->signal == exit_.signal
                                               : report->signal == 0 && exit_.exit_code > 0 &&
                                                     report->code == exit_.exit_code)) {
    exit_.report = report;
  }
  return relayed_status;
}

WorkerExit WorkerProcess::Reap(absl::Duration grace) {
  absl::Time give_up = absl::Now() + grace;
  // Readable once the process has ended, so the wait ends with it (-1: poll every 0.5 ms).
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  absl::Cleanup close_pidfd = [pidfd] {
    if (pidfd >= 0) close(pidfd);
  };
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (reaped_) return exit_;
      int status = 0;
      struct rusage usage = {};
      pid_t r = wait4(pid_, &status, WNOHANG, &usage);
      if (r == pid_) {
        RecordExit(status, usage);
        return exit_;
      }
      if (r < 0 && errno != EINTR) {  // not our child any more: nothing left to wait for
        reaped_ = true;
        return exit_;
      }
      if (absl::Now() >= give_up) break;
    }
    if (pidfd >= 0) {
      struct pollfd ended = {pidfd, POLLIN, 0};
      const int64_t left = absl::ToInt64Milliseconds(give_up - absl::Now());
      poll(&ended, 1, static_cast<int>(std::clamp<int64_t>(left, 1, 1000)));
    } else {
      absl::SleepFor(absl::Microseconds(500));
    }
  }
  absl::MutexLock lock(&mu_);
  exit_.killed_by_broker = true;
  kill(pid_, SIGKILL);
  int status = 0;
  struct rusage usage = {};
  while (wait4(pid_, &status, 0, &usage) < 0 && errno == EINTR) {
  }
  // An init that had relayed the worker's end was only slow to follow it (tearing down a
  // namespace takes time): the worker ended of its own cause, which its status tells.
  if (RecordExit(status, usage)) exit_.killed_by_broker = false;
  return exit_;
}

}  // namespace ffibox

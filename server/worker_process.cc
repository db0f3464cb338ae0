#include "server/worker_process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace ffibox {
namespace {

constexpr int kChannelFd = 3;

// Runs closures on one thread that lives as long as the process (see the header comment).
class LauncherThread {
 public:
  static LauncherThread& Get() {
    static LauncherThread* launcher = new LauncherThread();  // never destroyed
    return *launcher;
  }

  // Runs `job` on the launcher thread and waits for it.
  void Run(std::function<void()> job) {
    bool done = false;
    absl::MutexLock lock(&mu_);
    jobs_.push_back([&] {
      job();
      absl::MutexLock inner(&mu_);
      done = true;
    });
    mu_.Await(absl::Condition(&done));
  }

 private:
  LauncherThread() {
    std::thread([this] { Loop(); }).detach();
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

// Everything the child needs, prepared before fork: after fork only async-signal-safe calls
// are allowed.
struct ChildPlan {
  const char* path;
  char* const* argv;
  int channel_fd;
  int crash_fd;
  pid_t parent;
};

[[noreturn]] void RunChild(const ChildPlan& plan) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != plan.parent) _exit(127);  // the broker died before prctl took effect

  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  signal(SIGPIPE, SIG_DFL);

  // The channel becomes fd 3 and the crash pipe fd 4; dup2 clears close-on-exec. The
  // sources are high-numbered broker fds, so neither is 3 or 4 already unless the broker
  // runs with almost no fds open; fcntl covers that case.
  if (plan.channel_fd == kChannelFd) {
    fcntl(kChannelFd, F_SETFD, 0);
  } else if (dup2(plan.channel_fd, kChannelFd) != kChannelFd) {
    _exit(127);
  }
  if (plan.crash_fd == kCrashReportFd) {
    fcntl(kCrashReportFd, F_SETFD, 0);
  } else if (dup2(plan.crash_fd, kCrashReportFd) != kCrashReportFd) {
    _exit(127);
  }
  int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd >= 0 && null_fd != STDIN_FILENO) {
    dup2(null_fd, STDIN_FILENO);
  }
  if (syscall(SYS_close_range, kCrashReportFd + 1, ~0U, 0) != 0) {
    for (int fd = kCrashReportFd + 1; fd < 65536; ++fd) close(fd);
  }
  char* const empty_env[] = {nullptr};
  execve(plan.path, plan.argv, empty_env);
  _exit(127);
}

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerProcess>> WorkerProcess::Start(
    const WorkerLaunchOptions& options) {
  if (access(options.worker_path.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("worker binary ", options.worker_path,
                                                      " is not executable: ", strerror(errno)));
  }
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("socketpair: ", strerror(errno)));
  }
  int crash_pipe[2];
  if (pipe2(crash_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    int saved = errno;
    close(fds[0]);
    close(fds[1]);
    return absl::ResourceExhaustedError(absl::StrCat("pipe: ", strerror(saved)));
  }
  std::string generation_arg = absl::StrCat("--generation=", options.generation);
  std::string depth_arg = absl::StrCat("--max_callback_depth=", options.max_callback_depth);
  char* argv[] = {const_cast<char*>("ffibox-worker"), generation_arg.data(),
                  options.max_callback_depth > 0 ? depth_arg.data() : nullptr, nullptr};
  ChildPlan plan{options.worker_path.c_str(), argv, fds[1], crash_pipe[1], getpid()};

  pid_t pid = -1;
  int fork_errno = 0;
  LauncherThread::Get().Run([&] {
    pid = fork();
    if (pid == 0) RunChild(plan);
    if (pid < 0) fork_errno = errno;
  });
  close(fds[1]);
  close(crash_pipe[1]);
  if (pid < 0) {
    close(fds[0]);
    close(crash_pipe[0]);
    return absl::ResourceExhaustedError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  absl::StatusOr<std::unique_ptr<WorkerChannel>> channel =
      MakeSocketWorkerChannel(fds[0], options.max_reply_bytes);
  if (!channel.ok()) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    close(crash_pipe[0]);
    return channel.status();
  }
  return std::unique_ptr<WorkerProcess>(
      new WorkerProcess(pid, options.generation, std::move(*channel), crash_pipe[0]));
}

WorkerProcess::~WorkerProcess() {
  Kill();
  Reap(absl::ZeroDuration());
  close(crash_fd_);
}

std::optional<CrashReport> WorkerProcess::ReadCrashReport() {
  CrashReport report;
  // The pipe is non-blocking and the worker is dead: whatever it wrote is there now.
  ssize_t n = read(crash_fd_, &report, sizeof(report));
  if (n != static_cast<ssize_t>(sizeof(report)) || report.magic != kCrashReportMagic) {
    return std::nullopt;
  }
  return report;
}

void WorkerProcess::Kill() {
  absl::MutexLock lock(&mu_);
  if (!reaped_) kill(pid_, SIGKILL);
}

void WorkerProcess::RecordExit(int status) {
  reaped_ = true;
  if (WIFSIGNALED(status)) {
    exit_.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    exit_.exit_code = WEXITSTATUS(status);
  }
  std::optional<CrashReport> report = ReadCrashReport();
  // Only a report about the signal that really killed the worker is believed.
  if (report.has_value() && exit_.signal != 0 && report->signal == exit_.signal) {
    exit_.report = report;
  }
}

WorkerExit WorkerProcess::Reap(absl::Duration grace) {
  absl::Time give_up = absl::Now() + grace;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (reaped_) return exit_;
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        RecordExit(status);
        return exit_;
      }
      if (r < 0 && errno != EINTR) {  // not our child any more: nothing left to wait for
        reaped_ = true;
        return exit_;
      }
      if (absl::Now() >= give_up) break;
    }
    absl::SleepFor(absl::Microseconds(500));
  }
  absl::MutexLock lock(&mu_);
  kill(pid_, SIGKILL);
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  RecordExit(status);
  return exit_;
}

}  // namespace ffibox

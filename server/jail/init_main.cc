// ffibox-init: the init (pid 1) of a worker's pid namespace. ffiboxd's clone of itself
// builds the jail and execs this small static program, so that nothing of the broker's
// memory lives on beside the worker: the init forks the worker, relays its wait status to
// the broker and ends with it (taking the namespace along).
//
// Started only by server/jail/spawn.cc, as pid 1 with
//   fds 0..6     the worker's (server/jail/jail_process.h)
//   fd 7         the worker binary (O_PATH)
//   fd 8         the status pipe to the broker
//   argv         "ffibox-init" <WorkerExecFlag bits> <the worker's argv...>
// and an empty environment. It reports kReady once the worker runs (its exec is done),
// kSetupFailed if it cannot fork it or drop a privilege, and kWorkerExited with the worker's
// wait status when it ends.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/jail/jail_process.h"

namespace ffibox {
namespace {

// The WorkerExecFlag bits in `text`, or -1 unless it is a decimal number of known bits.
long ParseFlags(const char* text) {
  long value = 0;
  if (text[0] == '\0') return -1;
  for (const char* c = text; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9' || value > static_cast<long>(kAllWorkerExecFlags)) return -1;
    value = value * 10 + (*c - '0');
  }
  return value <= static_cast<long>(kAllWorkerExecFlags) ? value : -1;
}

// What /proc/1/cmdline shows: "ffibox-init" alone.
void BlankArguments(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) memset(argv[i], 0, strlen(argv[i]));
}

int Run(int argc, char** argv) {
  const long flags = argc >= 3 ? ParseFlags(argv[1]) : -1;
  if (getpid() != 1 || flags < 0) {
    fprintf(stderr, "ffibox-init: started by ffiboxd only, as a worker jail's init\n");
    return 2;
  }
  // Still the broker's child: die with it, as the clone that exec'd this did.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  prctl(PR_SET_DUMPABLE, 0);
  // The worker's child reports a failure before its exec on this pipe; its end closes at the
  // exec, so end of file means the worker runs.
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    ReportStatus(kInitStatusFd, kSetupFailed, kStageForkWorker, errno);
    return 1;
  }
  long worker = syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (worker == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(exec_pipe[0]);
    close(kInitStatusFd);
    const int error = DropWorkerPrivileges(static_cast<unsigned>(flags));
    if (error != 0) {
      (void)!write(exec_pipe[1], &error, sizeof(error));
      _exit(126);
    }
    if (getppid() != 1) _exit(1);  // the init died before the signal was armed again
    ExecArrangedWorker(argv + 2, exec_pipe[1]);
  }
  close(exec_pipe[1]);
  if (worker < 0) {
    ReportStatus(kInitStatusFd, kSetupFailed, kStageForkWorker, errno);
    return 1;
  }
  int child_error = 0;
  ssize_t got;
  while ((got = read(exec_pipe[0], &child_error, sizeof(child_error))) < 0 && errno == EINTR) {
  }
  close(exec_pipe[0]);
  if (got > 0) {
    ReportStatus(kInitStatusFd, kSetupFailed, kStagePrivileges, child_error);
    return 1;
  }
  BlankArguments(argc, argv);
  // Keep only the status pipe: the channel's end of stream must follow the worker's death.
  CloseDescriptorsFrom(0, kInitStatusFd);
  // Nothing of root is left to the init either (it stays uid 0 of its namespace).
  if (const int error = DropWorkerPrivileges(static_cast<unsigned>(flags) & ~kExecNobodyAfterMount);
      error != 0) {
    ReportStatus(kInitStatusFd, kSetupFailed, kStagePrivileges, error);
    kill(static_cast<pid_t>(worker), SIGKILL);
    return 1;
  }
  // A broker that died before this init armed its parent-death signal is seen here.
  if (!ReportStatus(kInitStatusFd, kReady, 0, 0)) {
    kill(static_cast<pid_t>(worker), SIGKILL);
    return 1;
  }
  for (;;) {
    int status = 0;
    pid_t ended = waitpid(-1, &status, 0);
    if (ended == worker) {
      ReportStatus(kInitStatusFd, kWorkerExited, 0, 0, status);
      return 0;
    }
    if (ended < 0 && errno != EINTR) return 0;
  }
}

}  // namespace
}  // namespace ffibox

int main(int argc, char** argv) { return ffibox::Run(argc, argv); }

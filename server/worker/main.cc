// ffibox-worker: the process that loads untrusted libraries and runs their code. Started by
// ffiboxd (fork + exec) with its channel to the broker as a memfd on fd 6 (core/shm_channel.h:
// mapped, checked and closed first thing) and a socket on fd 3 whose hangup says the broker
// has gone, its crash-report pipe on fd 4 and the socket library descriptors arrive on as
// fd 5 (stdout and stderr are pipes the broker relays to the client), which it moves to the
// top of its open-files window (server/worker/own_descriptors.h); serves requests until
// the channel closes (server/worker/dispatcher.h has the threads and the routing of callback
// invocations). Anything here may be corrupted by the library it runs, the channel's shared
// memory included: the broker trusts nothing this process sends.
//
// Its one argument is its WorkerSettings (server/protocol/worker_settings.h): the callback
// depth, the block limit, and the part of the jail it applies to itself (rlimits and
// seccomp, server/jail/worker_jail.h) before it reads its first request (the launcher
// already applied the rest of the jail). Its generation comes with that first request. A
// worker whose settings are missing or malformed, whose channel is refused, or that cannot
// apply its jail, exits with status 125 without serving.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "core/descriptor_passing.h"
#include "core/malloc_tuning.h"
#include "core/mutex_mode.h"
#include "core/shm_channel.h"
#include "server/jail/worker_jail.h"
#include "server/protocol/crash_report.h"
#include "server/protocol/worker_settings.h"
#include "server/worker/dispatcher.h"
#include "server/worker/own_descriptors.h"

namespace {

constexpr int kChannelHangupFd = 3;
constexpr int kDescriptorFd = 5;
constexpr int kChannelMemoryFd = 6;

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// An AddressSanitizer build of the worker (--config=asan) leaves the signals of a library's
// faults to the worker's crash report, as a user's build does; leak checking at exit would
// need ptrace, which the jail forbids.
extern "C" const char* __asan_default_options() {
  return "handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0:"
         "allow_user_segv_handler=1:detect_leaks=0";
}
#endif

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  ffibox::KeepFreedMemory();
  ffibox::UseReleaseMutexChecks();
  // stdout is a pipe the broker relays: line-buffer it, so what a library prints with
  // printf arrives line by line instead of when the worker exits (or never, if it crashes).
  setvbuf(stdout, nullptr, _IOLBF, 0);
  ffibox::InstallCrashReporter();
  absl::StatusOr<ffibox::internal::WorkerSettings> settings =
      ffibox::ParseWorkerSettings(argc, argv);
  if (!settings.ok()) {
    fprintf(stderr, "ffibox-worker: %s\n", std::string(settings.status().message()).c_str());
    return 125;
  }
  // Mapped before the jail: its address-space limit then never refuses the channel.
  absl::StatusOr<std::unique_ptr<ffibox::ShmChannel>> channel =
      ffibox::ShmChannel::Attach(kChannelMemoryFd);
  close(kChannelMemoryFd);
  if (!channel.ok()) {
    fprintf(stderr, "ffibox-worker: %s\n", std::string(channel.status().message()).c_str());
    return 125;
  }
  // Without a jail the worker still applies the empty one: RLIMIT_CORE 0, so a crash never
  // dumps a library's memory.
  absl::StatusOr<int> listener = ffibox::ApplyWorkerJail(settings->jail());
  if (!listener.ok()) {
    fprintf(stderr, "ffibox-worker: cannot apply the jail: %s\n",
            std::string(listener.status().message()).c_str());
    return 125;
  }
  // The broker watches the seccomp listener: a forbidden syscall waits in the kernel until
  // the broker has seen it and killed this process.
  if (*listener >= 0) {
    absl::Status handed =
        ffibox::SendDescriptor(kDescriptorFd, *listener, ffibox::kSeccompListenerTag);
    close(*listener);
    if (!handed.ok()) {
      fprintf(stderr, "ffibox-worker: cannot hand over the seccomp listener: %s\n",
              std::string(handed.message()).c_str());
      return 125;
    }
  }
  if (absl::Status lowered = ffibox::LowerOpenFiles(settings->jail()); !lowered.ok()) {
    fprintf(stderr, "ffibox-worker: cannot apply the jail: %s\n",
            std::string(lowered.message()).c_str());
    return 125;
  }
  if (settings->jail().self_test()) {
    char* const no_args[] = {nullptr};
    execve("/bin/true", no_args, no_args);  // the broker must kill us here
    return 124;
  }
  ffibox::OwnDescriptors at_exec;
  at_exec.hangup = kChannelHangupFd;
  at_exec.crash = ffibox::kCrashReportFd;
  at_exec.descriptors = fcntl(kDescriptorFd, F_GETFD) >= 0 ? kDescriptorFd : -1;
  absl::StatusOr<ffibox::OwnDescriptors> own = ffibox::MoveOwnDescriptorsUp(at_exec);
  if (!own.ok()) {
    fprintf(stderr, "ffibox-worker: %s\n", std::string(own.status().message()).c_str());
    return 125;
  }
  static ffibox::WorkerDispatcher* dispatcher =
      new ffibox::WorkerDispatcher(*std::move(channel), own->hangup, *settings, own->descriptors);
  dispatcher->Run();
}

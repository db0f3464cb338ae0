// ffibox-worker: the process that loads untrusted libraries and runs their code. Started by
// ffiboxd (fork + exec) with its channel on fd 3, its crash-report pipe on fd 4 and the
// socket library descriptors arrive on as fd 5 (stdout and stderr are pipes the broker
// relays to the client); serves
// requests until the channel closes (server/worker/dispatcher.h has the threads and the
// routing of callback invocations). Anything here may be corrupted by the library it runs:
// the broker trusts nothing this process sends.
//
// Flags: --generation=N (stamped on remote addresses and invocation ids; default 1),
// --max_callback_depth=N (callback invocations nested on one thread; default 64), and the
// --jail_* flags of server/jail/worker_jail.h: the worker applies its rlimits and seccomp
// policy before it reads its first request (the launcher already applied the rest of the
// jail). A worker that cannot apply its jail exits with status 125 without serving.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "core/descriptor_passing.h"
#include "server/jail/worker_jail.h"
#include "server/protocol/crash_report.h"
#include "server/worker/dispatcher.h"

namespace {

constexpr int kChannelFd = 3;
constexpr int kDescriptorFd = 5;

// The value of `--name=value` among the arguments, if present and a number.
bool NumericFlag(int argc, char** argv, absl::string_view flag, uint64_t* value) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::StartsWith(arg, flag) && absl::SimpleAtoi(arg.substr(flag.size()), value)) {
      return true;
    }
  }
  return false;
}

ffibox::WorkerOptions OptionsFromArgs(int argc, char** argv) {
  ffibox::WorkerOptions options;
  uint64_t value = 0;
  if (NumericFlag(argc, argv, "--generation=", &value)) options.generation = value;
  if (NumericFlag(argc, argv, "--max_callback_depth=", &value) && value <= 1 << 20) {
    options.max_callback_depth = static_cast<int>(value);
  }
  if (fcntl(kDescriptorFd, F_GETFD) >= 0) options.descriptor_fd = kDescriptorFd;
  return options;
}

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
  // stdout is a pipe the broker relays: line-buffer it, so what a library prints with
  // printf arrives line by line instead of when the worker exits (or never, if it crashes).
  setvbuf(stdout, nullptr, _IOLBF, 0);
  ffibox::InstallCrashReporter();
  absl::StatusOr<ffibox::WorkerJail> jail = ffibox::ParseWorkerJailFlags(argc, argv);
  absl::StatusOr<int> listener =
      jail.ok() ? ffibox::ApplyWorkerJail(*jail) : absl::StatusOr<int>(jail.status());
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
  if (jail->self_test) {
    char* const no_args[] = {nullptr};
    execve("/bin/true", no_args, no_args);  // the broker must kill us here
    return 124;
  }
  static ffibox::WorkerDispatcher* dispatcher =
      new ffibox::WorkerDispatcher(kChannelFd, OptionsFromArgs(argc, argv));
  dispatcher->Run();
}

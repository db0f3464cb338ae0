// A real ffiboxd, run as a child process, for integration tests.
//
// `TestServer::Start` launches the `//server:ffiboxd` binary from the test's runfiles on a
// fresh owner-only unix socket and waits until it accepts connections; destroying the
// TestServer stops it (SIGTERM, then SIGKILL) and reaps it. The helpers below locate the
// test libraries and inspect the server's worker processes, so tests can assert that no
// worker outlives its session and that no zombie is left. Tests must list //server:ffiboxd,
// //server:ffibox-worker and the libraries they load in their `data`. The server is killed
// if the thread that started it exits (PR_SET_PDEATHSIG), so start it from the test thread.
#ifndef FFIBOX_TESTS_SUPPORT_TEST_SERVER_H_
#define FFIBOX_TESTS_SUPPORT_TEST_SERVER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ffibox {
namespace test_support {

class TestServer {
 public:
  // Starts ffiboxd with `--listen=unix:<fresh dir>/ffiboxd.sock`, `--allow_root=` the test
  // library's directory, `--worker=` the runfiles' ffibox-worker (unless `extra_flags`
  // names one), `--pool_size=0` (unless `extra_flags` names one: idle pooled workers are
  // children of the server too), then `extra_flags` (a `--listen=` among them adds its addresses
  // after the unix socket); waits up to `startup_timeout` for the socket to accept. NOT_FOUND if
  // the binary is not in the runfiles, INTERNAL if it exits early, DEADLINE_EXCEEDED if it never
  // accepts.
  static absl::StatusOr<std::unique_ptr<TestServer>> Start(
      const std::vector<std::string>& extra_flags = {},
      absl::Duration startup_timeout = absl::Seconds(10));

  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;
  // Stops and reaps the server and removes its directory.
  ~TestServer();

  // The gRPC target to connect to: `unix:<dir>/ffiboxd.sock`.
  const std::string& address() const { return address_; }
  // The server's process id (still valid after Stop, for inspection of what remains).
  pid_t pid() const { return pid_; }
  // What the server has written to stdout so far.
  std::string Stdout() const;

  // Sends SIGTERM, waits up to `grace` for the server to exit, then SIGKILLs it; reaps it
  // and returns its wait status (as from waitpid). Idempotent: later calls return the same.
  int Stop(absl::Duration grace = absl::Seconds(5));

 private:
  TestServer(pid_t pid, std::string directory, std::string address);

  pid_t pid_;
  std::string directory_;
  std::string address_;
  bool reaped_ = false;
  int wait_status_ = 0;
};

// Starts `argv` (argv[0] is the executable's path) as a child process that is killed when
// the calling thread exits, with stdout redirected to `stdout_fd` unless it is -1. Safe in a
// process that uses gRPC: the fork runs no pthread_atfork handlers (gRPC's can hang a plain
// fork()ed child). INTERNAL if the process cannot be created; exec failures show as exit 127.
absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv, int stdout_fd = -1);

// The absolute path of `path` (relative to the workspace root, e.g. "server/ffiboxd") in
// the test's runfiles, from TEST_SRCDIR (or <argv0>.runfiles when run by hand).
std::string RunfilePath(absl::string_view path);

// The absolute path of tests/testlibs/libffibox_test.so in the runfiles.
std::string TestLibPath();

// The ids of the direct children of `parent`, zombies included (from /proc/*/stat).
std::vector<pid_t> ChildrenOf(pid_t parent);

// The ids of all descendants of `ancestor` (children, their children, ...).
std::vector<pid_t> DescendantsOf(pid_t ancestor);

// The ids of the ffibox-worker processes below ffiboxd `server` (its descendants named so).
std::vector<pid_t> WorkersOf(pid_t server);

// The state letter of process `pid` from /proc ('R', 'S', 'Z' for a zombie, ...), or '\0'
// if there is no such process.
char ProcessState(pid_t pid);

// Whether every thread of process `pid` is stopped (/proc/PID/task/*/stat: 'T' or 't'): a
// SIGSTOP takes effect in each thread on its own, some time after kill() returns.
bool AllThreadsStopped(pid_t pid);

// The first line of the file at `path` ("" when it cannot be read).
std::string FirstLine(const std::string& path);

// The voluntary context switches so far of the thread named `name` (its comm) of process
// `pid`, from /proc: how often it went to sleep, so how often it was woken; -1 when the
// process has no such thread.
long ThreadSwitches(pid_t pid, const std::string& name);

// Polls `condition` every 10 ms until it holds or `timeout` passes; returns its last value.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

}  // namespace test_support
}  // namespace ffibox

#endif  // FFIBOX_TESTS_SUPPORT_TEST_SERVER_H_

#include "tests/support/test_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace ffibox {
namespace test_support {
namespace {

constexpr char kSocketName[] = "ffiboxd.sock";
constexpr char kStdoutName[] = "ffiboxd.stdout";
// sun_path holds 108 bytes; leave room for the NUL and be conservative.
constexpr size_t kMaxSocketPath = 100;

// A fresh owner-only directory (mkdtemp gives mode 0700) short enough for a socket path.
absl::StatusOr<std::string> MakeServerDirectory() {
  std::vector<std::string> bases;
  if (const char* tmp = std::getenv("TEST_TMPDIR"); tmp != nullptr && tmp[0] == '/') {
    bases.push_back(tmp);
  }
  bases.push_back("/tmp");
  for (const std::string& base : bases) {
    std::string pattern = absl::StrCat(base, "/ffiboxd.XXXXXX");
    if (pattern.size() + 1 + sizeof(kSocketName) > kMaxSocketPath) continue;
    if (mkdtemp(pattern.data()) != nullptr) return pattern;
  }
  return absl::InternalError(
      absl::StrCat("cannot create a directory for the ffiboxd socket: ", std::strerror(errno)));
}

bool AcceptsConnections(const std::string& socket_path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
  const bool connected =
      connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0;
  close(fd);
  return connected;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited with status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("was killed by signal ", WTERMSIG(status));
  return absl::StrCat("stopped with wait status ", status);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Parses /proc/<pid>/stat: the state letter and the parent pid, which follow the command
// name (in parentheses, possibly containing spaces and parentheses itself).
bool ReadStat(pid_t pid, char* state, pid_t* parent) {
  std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return false;
  char state_letter = 0;
  int parent_pid = 0;
  if (std::sscanf(stat.c_str() + close_paren + 1, " %c %d", &state_letter, &parent_pid) != 2) {
    return false;
  }
  *state = state_letter;
  *parent = parent_pid;
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestServer>> TestServer::Start(
    const std::vector<std::string>& extra_flags, absl::Duration startup_timeout) {
  const std::string binary = RunfilePath("server/ffiboxd");
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("ffiboxd not found at ", binary, "; add //server:ffiboxd to the test's data"));
  }
  absl::StatusOr<std::string> directory = MakeServerDirectory();
  if (!directory.ok()) return directory.status();
  const std::string socket_path = absl::StrCat(*directory, "/", kSocketName);
  const std::string address = absl::StrCat("unix:", socket_path);

  // The server's own socket comes first; a test's --listen adds listeners after it.
  std::string listen = absl::StrCat("--listen=", address);
  std::vector<std::string> flags;
  for (const std::string& flag : extra_flags) {
    if (absl::StartsWith(flag, "--listen=")) {
      absl::StrAppend(&listen, ",", flag.substr(9));
    } else {
      flags.push_back(flag);
    }
  }
  std::vector<std::string> args = {binary, listen};
  // The test library's real directory (bazel-out/...; the runfiles hold a symlink to it),
  // so sessions may load it under the library allowlist.
  char library[PATH_MAX];
  if (realpath(TestLibPath().c_str(), library) != nullptr) {
    std::string real(library);
    args.push_back(absl::StrCat("--allow_root=", real.substr(0, real.rfind('/'))));
  }
  const bool names_worker = std::any_of(extra_flags.begin(), extra_flags.end(), [](auto& flag) {
    return absl::StartsWith(flag, "--worker=");
  });
  const std::string worker = RunfilePath("server/ffibox-worker");
  if (!names_worker && access(worker.c_str(), X_OK) == 0) {
    args.push_back(absl::StrCat("--worker=", worker));
  }
  // No idle pooled workers unless the test asks: tests count the server's children to prove
  // that no worker outlives its session.
  if (std::none_of(flags.begin(), flags.end(),
                   [](auto& flag) { return absl::StartsWith(flag, "--pool_size="); })) {
    args.push_back("--pool_size=0");
  }
  args.insert(args.end(), flags.begin(), flags.end());
  const std::string stdout_path = absl::StrCat(*directory, "/", kStdoutName);
  const int stdout_fd = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (stdout_fd < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create ", stdout_path, ": ", std::strerror(errno)));
  }
  absl::StatusOr<pid_t> spawned = SpawnProcess(args, stdout_fd);
  close(stdout_fd);
  if (!spawned.ok()) return spawned.status();
  const pid_t pid = *spawned;
  std::unique_ptr<TestServer> server(new TestServer(pid, *directory, address));

  const absl::Time deadline = absl::Now() + startup_timeout;
  while (true) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      server->reaped_ = true;
      server->wait_status_ = status;
      return absl::InternalError(absl::StrCat(
          "ffiboxd ", DescribeWaitStatus(status), " before accepting connections; ran: ",
          absl::StrJoin(args, " "), "; stdout: ", server->Stdout()));
    }
    if (AcceptsConnections(socket_path)) return server;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat("ffiboxd did not accept connections on ",
                                                      address, " within ",
                                                      absl::FormatDuration(startup_timeout)));
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

TestServer::TestServer(pid_t pid, std::string directory, std::string address)
    : pid_(pid), directory_(std::move(directory)), address_(std::move(address)) {}

TestServer::~TestServer() {
  Stop();
  std::error_code ignored;
  std::filesystem::remove_all(directory_, ignored);
}

std::string TestServer::Stdout() const {
  return ReadFile(absl::StrCat(directory_, "/", kStdoutName));
}

int TestServer::Stop(absl::Duration grace) {
  if (reaped_) return wait_status_;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  int status = 0;
  while (true) {
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_ || (done < 0 && errno != EINTR)) break;
    if (absl::Now() > deadline) {
      kill(pid_, SIGKILL);
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  reaped_ = true;
  wait_status_ = status;
  return wait_status_;
}

absl::StatusOr<pid_t> SpawnProcess(const std::vector<std::string>& argv, int stdout_fd) {
  if (argv.empty()) return absl::InvalidArgumentError("SpawnProcess needs an executable");
  std::vector<std::string> words = argv;
  std::vector<char*> pointers;
  for (std::string& word : words) pointers.push_back(word.data());
  pointers.push_back(nullptr);
  const pid_t parent = getpid();
  // The raw fork system call skips pthread_atfork handlers, which gRPC installs and which can
  // leave a child waiting on the event engine instead of reaching execv.
  const pid_t pid = static_cast<pid_t>(syscall(SYS_fork));
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // Child: only raw system calls until exec. Die with the test, never orphaned.
    syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (syscall(SYS_getppid) != parent) syscall(SYS_exit_group, 127);
    if (stdout_fd >= 0) syscall(SYS_dup2, stdout_fd, STDOUT_FILENO);
    syscall(SYS_close_range, 3u, ~0u, 0u);
    syscall(SYS_execve, pointers[0], pointers.data(), environ);
    syscall(SYS_exit_group, 127);
  }
  return pid;
}

std::string RunfilePath(absl::string_view path) {
  if (const char* srcdir = std::getenv("TEST_SRCDIR"); srcdir != nullptr && srcdir[0] != '\0') {
    return absl::StrCat(srcdir, "/ffibox/", path);
  }
  char self[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (length <= 0) return std::string(path);
  return absl::StrCat(absl::string_view(self, length), ".runfiles/ffibox/", path);
}

std::string TestLibPath() { return RunfilePath("tests/testlibs/libffibox_test.so"); }

std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> children;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return children;
  while (const dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    char state = 0;
    pid_t its_parent = 0;
    if (ReadStat(pid, &state, &its_parent) && its_parent == parent) children.push_back(pid);
  }
  closedir(proc);
  return children;
}

std::vector<pid_t> DescendantsOf(pid_t ancestor) {
  std::vector<pid_t> descendants = ChildrenOf(ancestor);
  for (size_t i = 0; i < descendants.size(); ++i) {
    for (pid_t grandchild : ChildrenOf(descendants[i])) descendants.push_back(grandchild);
  }
  return descendants;
}

char ProcessState(pid_t pid) {
  char state = 0;
  pid_t parent = 0;
  return ReadStat(pid, &state, &parent) ? state : '\0';
}

bool AllThreadsStopped(pid_t pid) {
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return false;
  bool stopped = true;
  int threads = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    ++threads;
    const std::string stat = FirstLine(absl::StrCat(tasks, "/", entry->d_name, "/stat"));
    const size_t close = stat.rfind(')');
    const char state = close != std::string::npos && close + 2 < stat.size() ? stat[close + 2] : 0;
    if (state != 'T' && state != 't') stopped = false;
  }
  closedir(dir);
  return stopped && threads > 0;
}

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::vector<pid_t> WorkersOf(pid_t server) {
  std::vector<pid_t> workers;
  for (pid_t pid : DescendantsOf(server)) {
    if (FirstLine(absl::StrCat("/proc/", pid, "/comm")) == "ffibox-worker") workers.push_back(pid);
  }
  return workers;
}

long ThreadSwitches(pid_t pid, const std::string& name) {
  std::error_code error;
  for (const auto& task :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), error)) {
    if (FirstLine(task.path().string() + "/comm") != name) continue;
    std::ifstream status(task.path().string() + "/status");
    for (std::string line; std::getline(status, line);) {
      if (absl::StartsWith(line, "voluntary_ctxt_switches:")) {
        return std::stol(line.substr(line.find(':') + 1));
      }
    }
  }
  return -1;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) return condition();
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

}  // namespace test_support
}  // namespace ffibox

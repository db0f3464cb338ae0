#include "bench/ffiboxd_process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

extern char** environ;

namespace ffibox {
namespace bench {
namespace {

constexpr char kReadyLine[] = "ffiboxd listening on";

// Reads from `fd` until a full first line arrives or `deadline` passes.
absl::StatusOr<std::string> ReadFirstLine(int fd, absl::Time deadline) {
  std::string text;
  while (text.find('\n') == std::string::npos) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) return absl::DeadlineExceededError("ffiboxd did not start in time");
    pollfd ready = {fd, POLLIN, 0};
    int polled = poll(&ready, 1, static_cast<int>(left_ms));
    if (polled < 0 && errno == EINTR) continue;
    if (polled <= 0) continue;
    char chunk[256];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return absl::InternalError(absl::StrCat("ffiboxd exited early: \"", text, "\""));
    text.append(chunk, static_cast<size_t>(n));
  }
  return text.substr(0, text.find('\n'));
}

void StopAndReap(pid_t pid) {
  kill(pid, SIGTERM);
  for (int i = 0; i < 300; ++i) {  // up to 3 s of grace
    if (waitpid(pid, nullptr, WNOHANG) == pid) return;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<FfiboxdProcess>> FfiboxdProcess::Start(
    const std::string& binary, const std::vector<std::string>& extra_flags,
    absl::Duration startup_timeout) {
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat(binary, " is not executable; build //server:ffiboxd or pass --ffiboxd"));
  }
  char directory_template[] = "/tmp/ffibox-bench-XXXXXX";
  if (mkdtemp(directory_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  const std::string directory = directory_template;
  const std::string address = absl::StrCat("unix:", directory, "/ffiboxd.sock");

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    rmdir(directory.c_str());
    return absl::InternalError(absl::StrCat("pipe2: ", strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  std::string listen_flag = absl::StrCat("--listen=", address);
  std::vector<std::string> flags = extra_flags;
  std::vector<char*> argv = {const_cast<char*>(binary.c_str()), listen_flag.data()};
  for (std::string& flag : flags) argv.push_back(flag.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  int spawned = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(out[1]);
  if (spawned != 0) {
    close(out[0]);
    rmdir(directory.c_str());
    return absl::InternalError(absl::StrCat("posix_spawn ", binary, ": ", strerror(spawned)));
  }
  // The server prints two short lines at startup and nothing after, so closing the read
  // end once the first line is in cannot block it.
  absl::StatusOr<std::string> line = ReadFirstLine(out[0], absl::Now() + startup_timeout);
  close(out[0]);
  std::unique_ptr<FfiboxdProcess> process(new FfiboxdProcess(pid, directory, address));
  if (!line.ok()) return line.status();  // the destructor stops and reaps the child
  if (line->find(kReadyLine) == std::string::npos) {
    return absl::InternalError(
        absl::StrCat("ffiboxd printed \"", *line, "\" instead of \"", kReadyLine, "\""));
  }
  return process;
}

FfiboxdProcess::~FfiboxdProcess() {
  StopAndReap(pid_);
  unlink(absl::StrCat(directory_, "/ffiboxd.sock").c_str());
  rmdir(directory_.c_str());
}

}  // namespace bench
}  // namespace ffibox

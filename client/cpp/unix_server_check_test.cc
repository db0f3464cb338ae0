// Whom the C++ client agrees to talk to on a unix socket: real directories, real sockets and
// real listening processes (tests/support/unix_squatter), some of them run as `nobody`.
// Tests that act as another user need root and are skipped without it.
#include "client/cpp/unix_server_check.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cpp/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uid_t kNobody = 65534;

#define SKIP_UNLESS_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root to act as another user"

// A fresh mode-0700 directory under /tmp (short enough for a socket path, and reachable by
// `nobody`), removed with everything in it at the end of the test.
class TempDirectory {
 public:
  TempDirectory() {
    char pattern[] = "/tmp/ffibox-check.XXXXXX";
    if (mkdtemp(pattern) != nullptr) path_ = pattern;
  }
  ~TempDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }

  const std::string& path() const { return path_; }
  std::string socket() const { return path_ + "/ffiboxd.sock"; }
  std::string address() const { return "unix:" + socket(); }

 private:
  std::string path_;
};

// tests/support/unix_squatter listening at a socket; killed when destroyed.
class Squatter {
 public:
  // Starts the squatter on `socket` (a path, or '@' and an abstract name) as `uid` (-1: this
  // user); with `bind_first`, the socket file is made before switching to `uid`. Waits until
  // it listens.
  static absl::StatusOr<std::unique_ptr<Squatter>> Start(const std::string& socket, int uid = -1,
                                                         bool bind_first = false) {
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
    std::vector<std::string> argv = {test_support::RunfilePath("tests/support/unix_squatter"),
                                     absl::StrCat("--socket=", socket),
                                     absl::StrCat("--uid=", uid)};
    if (bind_first) argv.push_back("--bind_first");
    absl::StatusOr<pid_t> pid = test_support::SpawnProcess(argv, pipe_fds[1]);
    close(pipe_fds[1]);
    if (!pid.ok()) {
      close(pipe_fds[0]);
      return pid.status();
    }
    std::unique_ptr<Squatter> squatter(new Squatter(*pid, pipe_fds[0]));
    if (!squatter->WaitFor("listening\n", absl::Seconds(10))) {
      return absl::InternalError(
          absl::StrCat("unix_squatter did not listen on ", socket, ": ", squatter->output_));
    }
    return squatter;
  }

  ~Squatter() {
    Stop();
    close(output_fd_);
  }

  // Waits up to `timeout` for the squatter to print `text`; whether it did.
  bool WaitFor(const std::string& text, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (output_.find(text) == std::string::npos) {
      if (!ReadSome(deadline)) return false;
    }
    return true;
  }

  // Waits (up to 5 s) until every connection the squatter accepted is closed, stops it and
  // returns all it printed: "accepted", "received N" per read of N bytes, "closed".
  std::string StopAndReport() {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (Count("accepted\n") != Count("closed\n") && ReadSome(deadline)) {
    }
    Stop();
    while (ReadSome(absl::Now() + absl::Seconds(5))) {
    }
    return output_;
  }

 private:
  Squatter(pid_t pid, int output_fd) : pid_(pid), output_fd_(output_fd) {}

  int Count(const std::string& line) const {
    int count = 0;
    for (size_t at = output_.find(line); at != std::string::npos; at = output_.find(line, at + 1)) {
      ++count;
    }
    return count;
  }

  // Appends what the squatter printed; false at end of output or at `deadline`.
  bool ReadSome(absl::Time deadline) {
    pollfd ready = {output_fd_, POLLIN, 0};
    const int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    if (poll(&ready, 1, std::max(wait_ms, 0)) <= 0) return false;
    char buffer[512];
    const ssize_t n = read(output_fd_, buffer, sizeof(buffer));
    if (n <= 0) return false;
    output_.append(buffer, n);
    return true;
  }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  pid_t pid_;
  const int output_fd_;
  std::string output_;
};

TEST(UnixServerCheckTest, AcceptsOwnListenerInOwnerOnlyDirectory) {
  TempDirectory directory;
  absl::StatusOr<std::unique_ptr<Squatter>> listener = Squatter::Start(directory.socket());
  ASSERT_OK(listener);
  EXPECT_TRUE(CheckUnixServer(directory.address(), absl::Seconds(5)).ok());
  EXPECT_TRUE(CheckUnixServer("unix://" + directory.socket(), absl::Seconds(5)).ok());
}

TEST(UnixServerCheckTest, TheCheckItselfSendsNothingButAClientThatPassesDoes) {
  TempDirectory directory;
  absl::StatusOr<std::unique_ptr<Squatter>> listener = Squatter::Start(directory.socket());
  ASSERT_OK(listener);
  ASSERT_TRUE(CheckUnixServer(directory.address(), absl::Seconds(5)).ok());
  // The check's probe connection is accepted but carries no byte.
  EXPECT_TRUE((*listener)->WaitFor("closed\n", absl::Seconds(5)));
  std::string report = (*listener)->StopAndReport();
  EXPECT_EQ(report, "listening\naccepted\nclosed\n");

  // A listener of this user is trusted, so the client goes on to speak gRPC to it: that is
  // what the refusals below keep a squatter from seeing.
  ASSERT_EQ(unlink(directory.socket().c_str()), 0);
  listener = Squatter::Start(directory.socket());
  ASSERT_OK(listener);
  ConnectOptions options;
  options.connect_timeout = absl::Seconds(1);
  Client::Connect(directory.address(), options).IgnoreError();
  EXPECT_THAT((*listener)->StopAndReport(), HasSubstr("received"));
}

TEST(UnixServerCheckTest, RefusesDirectoryOtherUsersCanWriteTo) {
  for (mode_t mode : {0777, 01777, 0770, 0720}) {
    TempDirectory directory;
    ASSERT_EQ(chmod(directory.path().c_str(), mode), 0);
    absl::StatusOr<std::unique_ptr<Squatter>> listener = Squatter::Start(directory.socket());
    ASSERT_OK(listener);
    absl::Status status = CheckUnixServer(directory.address(), absl::Seconds(5));
    EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
    EXPECT_EQ(status.message(),
              absl::StrCat("refusing ", directory.address(), ": directory ", directory.path(),
                           " is writable by other users (mode ", absl::StrFormat("%04o", mode),
                           "), so anyone could have put the socket there"));
  }
}

TEST(UnixServerCheckTest, RefusesSocketOwnedByAnotherUser) {
  SKIP_UNLESS_ROOT();
  TempDirectory directory;
  absl::StatusOr<std::unique_ptr<Squatter>> listener = Squatter::Start(directory.socket());
  ASSERT_OK(listener);
  ASSERT_EQ(lchown(directory.socket().c_str(), kNobody, kNobody), 0);
  absl::Status status = CheckUnixServer(directory.address(), absl::Seconds(5));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_EQ(status.message(),
            absl::StrCat("refusing ", directory.address(), ": socket ", directory.socket(),
                         " is owned by uid 65534, not by you (root)"));
}

TEST(UnixServerCheckTest, RefusesASymbolicLinkForTheDirectory) {
  TempDirectory directory;
  TempDirectory links;
  absl::StatusOr<std::unique_ptr<Squatter>> listener = Squatter::Start(directory.socket());
  ASSERT_OK(listener);
  const std::string link = links.path() + "/link";
  ASSERT_EQ(symlink(directory.path().c_str(), link.c_str()), 0);
  const std::string address = "unix:" + link + "/ffiboxd.sock";
  absl::Status status = CheckUnixServer(address, absl::Seconds(5));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()),
              HasSubstr(absl::StrCat("directory ", link, " is a symbolic link")));
}

TEST(UnixServerCheckTest, RefusesAFileThatIsNotASocket) {
  TempDirectory directory;
  const int fd = open(directory.socket().c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  close(fd);
  absl::Status status = CheckUnixServer(directory.address(), absl::Seconds(5));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(directory.socket() + " is not a socket"));
}

TEST(UnixServerCheckTest, NothingListeningIsUnavailableAfterTheTimeout) {
  TempDirectory directory;
  const absl::Time start = absl::Now();
  absl::Status status = CheckUnixServer(directory.address(), absl::Milliseconds(300));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
  EXPECT_EQ(CheckUnixServer("unix:/nonexistent/ffiboxd.sock", absl::ZeroDuration()).code(),
            absl::StatusCode::kUnavailable);
}

TEST(UnixServerCheckTest, WaitsForAServerThatIsStillStarting) {
  TempDirectory directory;
  absl::Status status;
  std::thread check([&] { status = CheckUnixServer(directory.address(), absl::Seconds(10)); });
  absl::SleepFor(absl::Milliseconds(200));
  absl::StatusOr<std::unique_ptr<Squatter>> listener = Squatter::Start(directory.socket());
  check.join();
  ASSERT_OK(listener);
  EXPECT_TRUE(status.ok()) << status;
}

TEST(UnixServerCheckTest, RefusesAddressesGrpcWouldReadDifferently) {
  EXPECT_EQ(CheckUnixServer("unix:/tmp/a%2Fb", absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckUnixServer("unix:/tmp/sock?x=1", absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckUnixServer("unix://host/tmp/sock", absl::Seconds(1)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(UnixServerCheckTest, TcpAddressesAreLeftToTls) {
  EXPECT_TRUE(CheckUnixServer("localhost:1", absl::Seconds(1)).ok());
  EXPECT_TRUE(CheckUnixServer("ipv4:127.0.0.1:1", absl::Seconds(1)).ok());
}

TEST(UnixServerCheckTest, RefusesAbstractSocketOfAnotherUser) {
  SKIP_UNLESS_ROOT();
  const std::string name = absl::StrCat("ffibox-check-", getpid());
  absl::StatusOr<std::unique_ptr<Squatter>> squatter = Squatter::Start("@" + name, kNobody);
  ASSERT_OK(squatter);
  absl::Status status = CheckUnixServer("unix-abstract:" + name, absl::Seconds(5));
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("runs as uid 65534, not as you (root)"));
  squatter->reset();

  absl::StatusOr<std::unique_ptr<Squatter>> own = Squatter::Start("@" + name);
  ASSERT_OK(own);
  EXPECT_TRUE(CheckUnixServer("unix-abstract:" + name, absl::Seconds(5)).ok());
}

// The attack of the issue: another user creates the socket directory first (as it could at
// /tmp/ffibox-$UID) and listens there.
TEST(ClientConnectTest, RefusesSquatterInDirectoryOfAnotherUserBeforeSendingAnything) {
  SKIP_UNLESS_ROOT();
  TempDirectory directory;
  ASSERT_EQ(chown(directory.path().c_str(), kNobody, kNobody), 0);
  absl::StatusOr<std::unique_ptr<Squatter>> squatter = Squatter::Start(directory.socket(), kNobody);
  ASSERT_OK(squatter);

  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(directory.address());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kPermissionDenied) << client.status();
  EXPECT_EQ(client.status().message(),
            absl::StrCat("refusing ", directory.address(), ": directory ", directory.path(),
                         " is owned by uid 65534, not by you (root)"));
  EXPECT_THAT((*squatter)->StopAndReport(), Not(HasSubstr("received")));
}

// The directory and the socket file look right, but another user's process listens on it.
TEST(ClientConnectTest, RefusesListenerRunningAsAnotherUser) {
  SKIP_UNLESS_ROOT();
  TempDirectory directory;
  absl::StatusOr<std::unique_ptr<Squatter>> squatter =
      Squatter::Start(directory.socket(), kNobody, /*bind_first=*/true);
  ASSERT_OK(squatter);

  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(directory.address());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kPermissionDenied) << client.status();
  EXPECT_THAT(std::string(client.status().message()),
              HasSubstr(absl::StrCat("refusing ", directory.address(),
                                     ": the process listening on ", directory.socket())));
  EXPECT_THAT(std::string(client.status().message()),
              HasSubstr("runs as uid 65534, not as you (root)"));
  EXPECT_THAT((*squatter)->StopAndReport(), Not(HasSubstr("received")));
}

}  // namespace
}  // namespace ffibox

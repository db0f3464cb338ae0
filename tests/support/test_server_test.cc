#include "tests/support/test_server.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace test_support {
namespace {

bool Contains(const std::vector<pid_t>& pids, pid_t pid) {
  return std::find(pids.begin(), pids.end(), pid) != pids.end();
}

TEST(TestServerTest, StartsAcceptsAndStopsARealServer) {
  absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start();
  ASSERT_OK(server);
  const pid_t pid = (*server)->pid();
  EXPECT_TRUE(absl::StartsWith((*server)->address(), "unix:/"));
  EXPECT_TRUE(Contains(ChildrenOf(getpid()), pid));
  EXPECT_NE(ProcessState(pid), '\0');
  EXPECT_TRUE(
      WaitFor([&] { return absl::StrContains((*server)->Stdout(), "ffiboxd listening on"); },
              absl::Seconds(5)))
      << (*server)->Stdout();

  const int status = (*server)->Stop();
  EXPECT_TRUE(WIFEXITED(status) || (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM)) << status;
  EXPECT_EQ(ProcessState(pid), '\0');
  EXPECT_TRUE(DescendantsOf(pid).empty());
}

TEST(TestServerTest, ReportsAServerThatExitsAtStartup) {
  absl::StatusOr<std::unique_ptr<TestServer>> server =
      TestServer::Start({"--no_such_flag_for_ffiboxd=1"}, absl::Seconds(5));
  EXPECT_FALSE(server.ok());
}

TEST(SpawnProcessTest, RunsTheProgramWithItsArgumentsAndStdout) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  absl::StatusOr<pid_t> child =
      SpawnProcess({"/bin/sh", "-c", "echo spawned; exit 7"}, pipe_fds[1]);
  close(pipe_fds[1]);
  ASSERT_OK(child);
  char buffer[64] = {};
  const ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer) - 1);
  close(pipe_fds[0]);
  EXPECT_EQ(std::string(buffer, n > 0 ? n : 0), "spawned\n");
  int status = 0;
  ASSERT_EQ(waitpid(*child, &status, 0), *child);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST(SpawnProcessTest, MissingExecutableExitsWith127) {
  absl::StatusOr<pid_t> child = SpawnProcess({"/nonexistent/program"});
  ASSERT_OK(child);
  int status = 0;
  ASSERT_EQ(waitpid(*child, &status, 0), *child);
  EXPECT_EQ(WEXITSTATUS(status), 127);
}

TEST(TestServerTest, TestLibraryIsInTheRunfiles) {
  EXPECT_EQ(access(TestLibPath().c_str(), R_OK), 0) << TestLibPath();
}

}  // namespace
}  // namespace test_support
}  // namespace ffibox

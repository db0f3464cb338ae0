#include "server/worker/own_descriptors.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "gtest/gtest.h"
#include "server/protocol/crash_report.h"

namespace ffibox {
namespace {

bool IsOpen(int fd) { return fcntl(fd, F_GETFD) >= 0; }

ino_t InodeOf(int fd) {
  struct stat st = {};
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

// Runs each test under a soft RLIMIT_NOFILE of its choosing, restored afterwards; the
// descriptors are a socketpair and a pipe standing in for the launcher's three.
class OwnDescriptorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sockets_), 0);
    ASSERT_EQ(pipe(crash_pipe_), 0);
  }
  void TearDown() override {
    for (int fd : {sockets_[0], sockets_[1], crash_pipe_[0], crash_pipe_[1]}) close(fd);
    setrlimit(RLIMIT_NOFILE, &saved_);
  }
  void SetSoftLimit(rlim_t soft) {
    struct rlimit limit = saved_;
    limit.rlim_cur = std::min(soft, saved_.rlim_max);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
  }
  OwnDescriptors AtExec() const { return {sockets_[0], crash_pipe_[1], sockets_[1]}; }

  struct rlimit saved_ = {};
  int sockets_[2] = {-1, -1};
  int crash_pipe_[2] = {-1, -1};
};

TEST_F(OwnDescriptorsTest, TheyMoveToTheTopOfTheWindowInOrderAndTheLowNumbersAreFree) {
  SetSoftLimit(64);
  const OwnDescriptors from = AtExec();
  const ino_t hangup = InodeOf(from.hangup), crash = InodeOf(from.crash),
              descriptors = InodeOf(from.descriptors);
  absl::StatusOr<OwnDescriptors> moved = MoveOwnDescriptorsUp(from);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->hangup, 61);
  EXPECT_EQ(moved->crash, 62);
  EXPECT_EQ(moved->descriptors, 63);
  EXPECT_EQ(InodeOf(moved->hangup), hangup);
  EXPECT_EQ(InodeOf(moved->crash), crash);
  EXPECT_EQ(InodeOf(moved->descriptors), descriptors);
  for (int fd : {from.hangup, from.crash, from.descriptors}) {
    EXPECT_FALSE(IsOpen(fd)) << "fd " << fd << " is still open";
  }
  sockets_[0] = moved->hangup;
  crash_pipe_[1] = moved->crash;
  sockets_[1] = moved->descriptors;
}

TEST_F(OwnDescriptorsTest, AnAbsentDescriptorSocketStaysAbsent) {
  SetSoftLimit(64);
  OwnDescriptors from = AtExec();
  from.descriptors = -1;
  absl::StatusOr<OwnDescriptors> moved = MoveOwnDescriptorsUp(from);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->descriptors, -1);
  EXPECT_FALSE(IsOpen(63));
  EXPECT_TRUE(IsOpen(sockets_[1])) << "the absent one's stand-in was not the worker's to close";
  sockets_[0] = moved->hangup;
  crash_pipe_[1] = moved->crash;
}

TEST_F(OwnDescriptorsTest, AHighLimitPutsThemBelowTheCeiling) {
  SetSoftLimit(1 << 20);
  struct rlimit now = {};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  const int top =
      static_cast<int>(std::min(now.rlim_cur, static_cast<rlim_t>(kOwnDescriptorsCeiling)));
  absl::StatusOr<OwnDescriptors> moved = MoveOwnDescriptorsUp(AtExec());
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->descriptors, top - 1) << "soft limit " << now.rlim_cur;
  sockets_[0] = moved->hangup;
  crash_pipe_[1] = moved->crash;
  sockets_[1] = moved->descriptors;
}

TEST_F(OwnDescriptorsTest, AWindowTooSmallLeavesThemWhereTheyAre) {
  SetSoftLimit(9);
  const OwnDescriptors from = AtExec();
  absl::StatusOr<OwnDescriptors> moved = MoveOwnDescriptorsUp(from);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(moved->hangup, from.hangup);
  EXPECT_EQ(moved->crash, from.crash);
  EXPECT_EQ(moved->descriptors, from.descriptors);
  EXPECT_TRUE(IsOpen(from.hangup) && IsOpen(from.crash) && IsOpen(from.descriptors));
}

TEST_F(OwnDescriptorsTest, AKeptDescriptorGoesToTheUpperHalfAndTakesTheLowestFreeNumberThere) {
  SetSoftLimit(64);
  const int blocker = fcntl(crash_pipe_[0], F_DUPFD_CLOEXEC, 32);  // holds 32
  ASSERT_EQ(blocker, 32);
  const ino_t inode = InodeOf(sockets_[1]);
  const int before = sockets_[1];
  sockets_[1] = MoveKeptDescriptorUp(sockets_[1]);
  EXPECT_EQ(sockets_[1], 33);
  EXPECT_EQ(InodeOf(sockets_[1]), inode);
  EXPECT_FALSE(IsOpen(before));
  close(blocker);
}

TEST_F(OwnDescriptorsTest, AKeptDescriptorStaysWhenTheUpperHalfIsFull) {
  SetSoftLimit(40);
  std::vector<int> filler;
  for (int fd = 20; fd < 40; ++fd) {
    if (!IsOpen(fd)) filler.push_back(fcntl(crash_pipe_[0], F_DUPFD_CLOEXEC, fd));
  }
  const int before = sockets_[1];
  EXPECT_EQ(MoveKeptDescriptorUp(sockets_[1]), before);
  EXPECT_TRUE(IsOpen(before));
  for (int fd : filler) close(fd);
}

// The crash reporter follows its pipe: a fatal signal after the move is reported on it.
TEST_F(OwnDescriptorsTest, ACrashAfterTheMoveIsReportedThroughTheMovedPipe) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    InstallCrashReporter();
    struct rlimit limit = saved_;
    limit.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(2);
    absl::StatusOr<OwnDescriptors> moved = MoveOwnDescriptorsUp(AtExec());
    if (!moved.ok() || moved->crash != 62) _exit(3);
    raise(SIGSEGV);
    _exit(4);
  }
  close(crash_pipe_[1]);
  crash_pipe_[1] = -1;
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
  CrashReport report;
  ASSERT_EQ(read(crash_pipe_[0], &report, sizeof(report)), static_cast<ssize_t>(sizeof(report)));
  EXPECT_EQ(report.magic, kCrashReportMagic);
  EXPECT_EQ(report.signal, SIGSEGV);
}

}  // namespace
}  // namespace ffibox

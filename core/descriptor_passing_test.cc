#include "core/descriptor_passing.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

class DescriptorPassingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sockets_), 0); }
  void TearDown() override {
    close(sockets_[0]);
    close(sockets_[1]);
  }
  int sockets_[2] = {-1, -1};
};

TEST_F(DescriptorPassingTest, ReceivedDescriptorReadsTheSameFile) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  ASSERT_TRUE(SendDescriptor(sockets_[0], pipe_fds[0], 42).ok());
  close(pipe_fds[0]);
  absl::StatusOr<TaggedDescriptor> got = ReceiveDescriptor(sockets_[1]);
  ASSERT_OK(got);
  EXPECT_EQ(got->tag, 42u);
  ASSERT_EQ(write(pipe_fds[1], "x", 1), 1);
  char byte = 0;
  EXPECT_EQ(read(got->fd, &byte, 1), 1);
  EXPECT_EQ(byte, 'x');
  EXPECT_EQ(fcntl(got->fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  close(got->fd);
  close(pipe_fds[1]);
}

TEST_F(DescriptorPassingTest, MessageWithoutDescriptorIsRefused) {
  uint64_t tag = 7;
  ASSERT_EQ(write(sockets_[0], &tag, sizeof(tag)), static_cast<ssize_t>(sizeof(tag)));
  absl::StatusOr<TaggedDescriptor> got = ReceiveDescriptor(sockets_[1]);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(DescriptorPassingTest, ADescriptorDroppedForWantOfRoomIsResourceExhausted) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  ASSERT_TRUE(SendDescriptor(sockets_[0], pipe_fds[0], 42).ok());
  close(pipe_fds[0]);
  // No room for another descriptor: the lowest free one is past the limit.
  const int lowest_free = dup(0);
  ASSERT_GE(lowest_free, 0);
  close(lowest_free);
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit tight = saved;
  tight.rlim_cur = static_cast<rlim_t>(lowest_free);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  absl::StatusOr<TaggedDescriptor> got = ReceiveDescriptor(sockets_[1]);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  close(pipe_fds[1]);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kResourceExhausted) << got.status();
  EXPECT_NE(got.status().message().find("RLIMIT_NOFILE"), absl::string_view::npos);
}

TEST_F(DescriptorPassingTest, ClosedPeerIsUnavailable) {
  close(sockets_[0]);
  sockets_[0] = -1;
  EXPECT_EQ(ReceiveDescriptor(sockets_[1]).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ffibox

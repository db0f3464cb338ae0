#include "server/worker/broker_connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "core/framing.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

// The worker's connection on one end of a socketpair; the test plays the broker.
class BrokerConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    worker_fd_ = fds[0];
    broker_fd_ = fds[1];
  }
  void TearDown() override {
    close(worker_fd_);
    if (broker_fd_ >= 0) close(broker_fd_);
  }

  int worker_fd_ = -1;
  int broker_fd_ = -1;
};

TEST_F(BrokerConnectionTest, ReceivesRequestsAndSendsReplies) {
  BrokerConnection connection(worker_fd_);
  internal::WorkerRequest request;
  request.set_id(3);
  request.mutable_request()->mutable_close();
  ASSERT_OK(WriteFrame(broker_fd_, request.SerializeAsString()));
  absl::StatusOr<ReceivedRequest> received = connection.Receive();
  ASSERT_OK(received);
  EXPECT_EQ(received->request().id(), 3u);
  EXPECT_TRUE(received->request().request().has_close());

  internal::WorkerReply reply;
  reply.mutable_response()->set_id(3);
  ASSERT_OK(connection.Send(reply));
  absl::StatusOr<std::string> frame = ReadFrame(broker_fd_, 1 << 20);
  ASSERT_OK(frame);
  internal::WorkerReply parsed;
  ASSERT_TRUE(parsed.ParseFromString(*frame));
  EXPECT_EQ(parsed.response().id(), 3u);
}

TEST_F(BrokerConnectionTest, RepliesFromManyThreadsArriveWhole) {
  BrokerConnection connection(worker_fd_);
  constexpr int kThreads = 4;
  constexpr int kEach = 50;
  // Each reply is large enough that an unlocked write could be split by another's.
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&connection, t] {
      for (int i = 0; i < kEach; ++i) {
        internal::WorkerReply reply;
        reply.mutable_event()->set_output(std::string(64 << 10, static_cast<char>('a' + t)));
        ASSERT_OK(connection.Send(reply));
      }
    });
  }
  for (int n = 0; n < kThreads * kEach; ++n) {
    absl::StatusOr<std::string> frame = ReadFrame(broker_fd_, 1 << 20);
    ASSERT_OK(frame);
    internal::WorkerReply reply;
    ASSERT_TRUE(reply.ParseFromString(*frame));
    const std::string& output = reply.event().output();
    ASSERT_EQ(output.size(), size_t{64} << 10);
    EXPECT_EQ(output.find_first_not_of(output[0]), std::string::npos);
  }
  for (std::thread& sender : senders) sender.join();
}

TEST_F(BrokerConnectionTest, FrameThatIsNotARequestIsInvalidArgument) {
  BrokerConnection connection(worker_fd_);
  ASSERT_OK(WriteFrame(broker_fd_, "\xff\xff\xff not a message"));
  EXPECT_EQ(connection.Receive().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BrokerConnectionTest, BrokerGoneIsUnavailableBothWays) {
  BrokerConnection connection(worker_fd_);
  close(broker_fd_);
  broker_fd_ = -1;
  EXPECT_EQ(connection.Receive().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(connection.Send(internal::WorkerReply()).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ffibox

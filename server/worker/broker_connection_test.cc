#include "server/worker/broker_connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "core/framing.h"
#include "core/shm_channel.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

// The worker's connection on the attached end of a channel, with its hangup socket; the test
// plays the broker on the creator's end and the socket's other end.
class BrokerConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ShmChannel>> broker = ShmChannel::Create(size_t{64} << 10);
    ASSERT_OK(broker);
    broker_ = std::move(*broker);
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    worker_fd_ = fds[0];
    broker_fd_ = fds[1];
  }
  void TearDown() override {
    close(worker_fd_);
    if (broker_fd_ >= 0) close(broker_fd_);
  }

  // The worker's connection, as ffibox-worker makes it from the memfd it inherited.
  std::unique_ptr<BrokerConnection> Connect() {
    absl::StatusOr<std::unique_ptr<ShmChannel>> worker = ShmChannel::Attach(broker_->memfd());
    EXPECT_OK(worker);
    return std::make_unique<BrokerConnection>(*std::move(worker), worker_fd_);
  }

  static absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

  std::unique_ptr<ShmChannel> broker_;
  int worker_fd_ = -1;
  int broker_fd_ = -1;
};

TEST_F(BrokerConnectionTest, ReceivesRequestsAndSendsReplies) {
  std::unique_ptr<BrokerConnection> connection = Connect();
  internal::WorkerRequest request;
  request.set_id(3);
  request.mutable_request()->mutable_close();
  ASSERT_OK(WriteFrame(*broker_, request.SerializeAsString(), Soon()));
  absl::StatusOr<ReceivedRequest> received = connection->Receive();
  ASSERT_OK(received);
  EXPECT_EQ(received->request().id(), 3u);
  EXPECT_TRUE(received->request().request().has_close());

  internal::WorkerReply reply;
  reply.mutable_response()->set_id(3);
  ASSERT_OK(connection->Send(reply));
  absl::StatusOr<std::string> frame = ReadFrame(*broker_, 1 << 20, Soon());
  ASSERT_OK(frame);
  internal::WorkerReply parsed;
  ASSERT_TRUE(parsed.ParseFromString(*frame));
  EXPECT_EQ(parsed.response().id(), 3u);
}

TEST_F(BrokerConnectionTest, RepliesFromManyThreadsArriveWhole) {
  std::unique_ptr<BrokerConnection> connection = Connect();
  constexpr int kThreads = 4;
  constexpr int kEach = 50;
  // Each reply is larger than the ring, so an unlocked write would be split by another's.
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&connection, t] {
      for (int i = 0; i < kEach; ++i) {
        internal::WorkerReply reply;
        reply.mutable_event()->set_output(std::string(96 << 10, static_cast<char>('a' + t)));
        ASSERT_OK(connection->Send(reply));
      }
    });
  }
  for (int n = 0; n < kThreads * kEach; ++n) {
    absl::StatusOr<std::string> frame = ReadFrame(*broker_, 1 << 20, Soon());
    ASSERT_OK(frame);
    internal::WorkerReply reply;
    ASSERT_TRUE(reply.ParseFromString(*frame));
    const std::string& output = reply.event().output();
    ASSERT_EQ(output.size(), size_t{96} << 10);
    EXPECT_EQ(output.find_first_not_of(output[0]), std::string::npos);
  }
  for (std::thread& sender : senders) sender.join();
}

TEST_F(BrokerConnectionTest, FrameThatIsNotARequestIsInvalidArgument) {
  std::unique_ptr<BrokerConnection> connection = Connect();
  ASSERT_OK(WriteFrame(*broker_, "\xff\xff\xff not a message", Soon()));
  EXPECT_EQ(connection->Receive().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BrokerConnectionTest, BrokerGoneIsUnavailableBothWays) {
  std::unique_ptr<BrokerConnection> connection = Connect();
  broker_->Close();
  EXPECT_EQ(connection->Receive().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(connection->Send(internal::WorkerReply()).code(), absl::StatusCode::kUnavailable);
}

// A broker that ends without closing the channel (it crashed) is seen through the hangup
// socket, within kHangupCheckInterval.
TEST_F(BrokerConnectionTest, ABrokerThatVanishesIsSeenThroughItsSocket) {
  std::unique_ptr<BrokerConnection> connection = Connect();
  close(broker_fd_);
  broker_fd_ = -1;
  const absl::Time start = absl::Now();
  EXPECT_EQ(connection->Receive().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, kHangupCheckInterval + absl::Seconds(2));
}

}  // namespace
}  // namespace ffibox

#include "server/worker_channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/framing.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

constexpr size_t kMaxFrame = 1024;

// The broker's channel over one end of a socketpair; the test plays the worker on the other.
class WorkerChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    peer_ = fds[1];
    absl::StatusOr<std::unique_ptr<WorkerChannel>> channel =
        MakeSocketWorkerChannel(fds[0], kMaxFrame);
    ASSERT_OK(channel);
    channel_ = std::move(*channel);
  }
  void TearDown() override { ClosePeer(); }

  void ClosePeer() {
    if (peer_ >= 0) close(peer_);
    peer_ = -1;
  }

  void WriteRaw(const std::string& bytes) {
    ASSERT_EQ(write(peer_, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  }

  int peer_ = -1;
  std::unique_ptr<WorkerChannel> channel_;
};

TEST_F(WorkerChannelTest, FramesRoundTripInBothDirections) {
  ASSERT_TRUE(channel_->Send("to the worker").ok());
  ASSERT_TRUE(channel_->Send(std::string("\0bin\xff", 5)).ok());
  EXPECT_EQ(*ReadFrame(peer_, kMaxFrame), "to the worker");
  EXPECT_EQ(*ReadFrame(peer_, kMaxFrame), std::string("\0bin\xff", 5));

  // Two frames arriving in one read, and an empty one, come out one by one.
  ASSERT_TRUE(WriteFrame(peer_, "first").ok());
  ASSERT_TRUE(WriteFrame(peer_, "").ok());
  ASSERT_TRUE(WriteFrame(peer_, "third").ok());
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  EXPECT_EQ(*channel_->Receive(deadline), "first");
  EXPECT_EQ(*channel_->Receive(deadline), "");
  EXPECT_EQ(*channel_->Receive(deadline), "third");
}

TEST_F(WorkerChannelTest, FrameSentInPiecesIsReassembled) {
  std::thread writer([this] {
    std::string frame = std::string("\x05\x00\x00\x00", 4) + "hello";
    for (char c : frame) {
      ASSERT_EQ(write(peer_, &c, 1), 1);
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  absl::StatusOr<std::string> frame = channel_->Receive(absl::Now() + absl::Seconds(5));
  writer.join();
  ASSERT_OK(frame);
  EXPECT_EQ(*frame, "hello");
}

TEST_F(WorkerChannelTest, PastDeadlineReturnsDeadlineExceededPromptly) {
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> frame = channel_->Receive(start - absl::Seconds(1));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
}

TEST_F(WorkerChannelTest, SilentPeerTimesOutAtTheDeadline) {
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> frame = channel_->Receive(start + absl::Milliseconds(100));
  absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
  EXPECT_GE(waited, absl::Milliseconds(100));
  EXPECT_LT(waited, absl::Seconds(2));
}

TEST_F(WorkerChannelTest, InterruptFromAnotherThreadWakesABlockedReceive) {
  std::thread interrupter([this] {
    absl::SleepFor(absl::Milliseconds(100));
    channel_->Interrupt();
  });
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> frame = channel_->Receive(absl::InfiniteFuture());
  interrupter.join();
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kCancelled) << frame.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The interrupt is consumed: the next Receive waits again.
  frame = channel_->Receive(absl::Now() + absl::Milliseconds(20));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
}

TEST_F(WorkerChannelTest, InterruptBeforeReceiveCancelsTheNextReceive) {
  channel_->Interrupt();
  absl::StatusOr<std::string> frame = channel_->Receive(absl::InfiniteFuture());
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kCancelled) << frame.status();
}

TEST_F(WorkerChannelTest, HalfAFrameThenSilenceDoesNotBlockPastTheDeadline) {
  // Announces 100 bytes, sends 10, then stays silent with the socket open.
  WriteRaw(std::string("\x64\x00\x00\x00", 4) + std::string(10, 'x'));
  absl::Time start = absl::Now();
  absl::StatusOr<std::string> frame = channel_->Receive(start + absl::Milliseconds(150));
  absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
  EXPECT_LT(waited, absl::Seconds(2));
  // The rest arrives later: the frame is completed, not lost.
  WriteRaw(std::string(90, 'y'));
  frame = channel_->Receive(absl::Now() + absl::Seconds(5));
  ASSERT_OK(frame);
  EXPECT_EQ(*frame, std::string(10, 'x') + std::string(90, 'y'));
}

TEST_F(WorkerChannelTest, EndOfStreamIsUnavailable) {
  ClosePeer();
  absl::StatusOr<std::string> frame = channel_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kUnavailable) << frame.status();
}

TEST_F(WorkerChannelTest, EndOfStreamInTheMiddleOfAFrameIsUnavailable) {
  WriteRaw(std::string("\x10\x00\x00\x00", 4) + "abc");
  ClosePeer();
  absl::StatusOr<std::string> frame = channel_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kUnavailable) << frame.status();
}

TEST_F(WorkerChannelTest, OversizedAnnouncedLengthIsResourceExhausted) {
  // 4 GiB - 1 announced; nothing else is sent, so nothing may be buffered or awaited.
  WriteRaw(std::string("\xff\xff\xff\xff", 4));
  absl::StatusOr<std::string> frame = channel_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted) << frame.status();
}

TEST_F(WorkerChannelTest, FrameJustOverTheLimitIsResourceExhausted) {
  ASSERT_TRUE(WriteFrame(peer_, std::string(kMaxFrame + 1, 'z')).ok());
  absl::StatusOr<std::string> frame = channel_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted) << frame.status();
}

TEST_F(WorkerChannelTest, SendToAGonePeerIsUnavailable) {
  ClosePeer();
  EXPECT_EQ(channel_->Send("anyone?").code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ffibox

#include "server/broker/worker_connection.h"

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

// A worker's answer to request `id`, as it goes on the wire.
std::string ReplyBytes(uint64_t id) {
  internal::WorkerReply reply;
  reply.mutable_response()->set_id(id);
  reply.mutable_response()->mutable_done();
  return reply.SerializeAsString();
}

// The id of the response `reply` carries, or 0 for anything else.
uint64_t AnsweredId(const absl::StatusOr<internal::WorkerReply>& reply) {
  return reply.ok() && reply->has_response() ? reply->response().id() : 0;
}

// The broker's connection over one end of a socketpair; the test plays the worker on the
// other.
class WorkerConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    peer_ = fds[1];
    absl::StatusOr<std::unique_ptr<WorkerConnection>> connection =
        MakeSocketWorkerConnection(fds[0], kMaxFrame);
    ASSERT_OK(connection);
    connection_ = std::move(*connection);
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
  std::unique_ptr<WorkerConnection> connection_;
};

TEST_F(WorkerConnectionTest, MessagesRoundTripInBothDirections) {
  internal::WorkerRequest request;
  request.set_id(7);
  request.mutable_request()->mutable_close();
  ASSERT_OK(connection_->Send(request));
  ASSERT_OK(connection_->Send(internal::WorkerRequest()));
  absl::StatusOr<std::string> frame = ReadFrame(peer_, kMaxFrame);
  ASSERT_OK(frame);
  internal::WorkerRequest received;
  ASSERT_TRUE(received.ParseFromString(*frame));
  EXPECT_EQ(received.id(), 7u);
  EXPECT_TRUE(received.request().has_close());
  EXPECT_EQ(*ReadFrame(peer_, kMaxFrame), "");

  // Two frames arriving in one read come out one by one.
  ASSERT_OK(WriteFrame(peer_, ReplyBytes(1)));
  ASSERT_OK(WriteFrame(peer_, ReplyBytes(2)));
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  EXPECT_EQ(AnsweredId(connection_->Receive(deadline)), 1u);
  EXPECT_EQ(AnsweredId(connection_->Receive(deadline)), 2u);
}

TEST_F(WorkerConnectionTest, FrameSentInPiecesIsReassembled) {
  const std::string payload = ReplyBytes(5);
  std::thread writer([this, payload] {
    std::string frame =
        std::string(1, static_cast<char>(payload.size())) + std::string(3, '\0') + payload;
    for (char c : frame) {
      ASSERT_EQ(write(peer_, &c, 1), 1);
      absl::SleepFor(absl::Milliseconds(2));
    }
  });
  absl::StatusOr<internal::WorkerReply> reply =
      connection_->Receive(absl::Now() + absl::Seconds(5));
  writer.join();
  ASSERT_OK(reply);
  EXPECT_EQ(AnsweredId(reply), 5u);
}

TEST_F(WorkerConnectionTest, FrameThatIsNotAReplyIsInvalidArgument) {
  ASSERT_OK(WriteFrame(peer_, "\xff\xff not a message"));
  EXPECT_EQ(connection_->Receive(absl::Now() + absl::Seconds(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A message with no kind set parses, but its envelope is wrong.
  ASSERT_OK(WriteFrame(peer_, ""));
  EXPECT_EQ(connection_->Receive(absl::Now() + absl::Seconds(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(WorkerConnectionTest, PastDeadlineReturnsDeadlineExceededPromptly) {
  absl::Time start = absl::Now();
  absl::StatusOr<internal::WorkerReply> frame = connection_->Receive(start - absl::Seconds(1));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
}

TEST_F(WorkerConnectionTest, SilentPeerTimesOutAtTheDeadline) {
  absl::Time start = absl::Now();
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(start + absl::Milliseconds(100));
  absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
  EXPECT_GE(waited, absl::Milliseconds(100));
  EXPECT_LT(waited, absl::Seconds(2));
}

TEST_F(WorkerConnectionTest, InterruptFromAnotherThreadWakesABlockedReceive) {
  std::thread interrupter([this] {
    absl::SleepFor(absl::Milliseconds(100));
    connection_->Interrupt();
  });
  absl::Time start = absl::Now();
  absl::StatusOr<internal::WorkerReply> frame = connection_->Receive(absl::InfiniteFuture());
  interrupter.join();
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kCancelled) << frame.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  // The interrupt is consumed: the next Receive waits again.
  frame = connection_->Receive(absl::Now() + absl::Milliseconds(20));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
}

TEST_F(WorkerConnectionTest, InterruptBeforeReceiveCancelsTheNextReceive) {
  connection_->Interrupt();
  absl::StatusOr<internal::WorkerReply> frame = connection_->Receive(absl::InfiniteFuture());
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kCancelled) << frame.status();
}

TEST_F(WorkerConnectionTest, HalfAFrameThenSilenceDoesNotBlockPastTheDeadline) {
  // Announces the whole reply, sends 3 bytes of it, then stays silent with the socket open.
  const std::string payload = ReplyBytes(9);
  ASSERT_GT(payload.size(), 3u);
  WriteRaw(std::string(1, static_cast<char>(payload.size())) + std::string(3, '\0') +
           payload.substr(0, 3));
  absl::Time start = absl::Now();
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(start + absl::Milliseconds(150));
  absl::Duration waited = absl::Now() - start;
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
  EXPECT_LT(waited, absl::Seconds(2));
  // The rest arrives later: the frame is completed, not lost.
  WriteRaw(payload.substr(3));
  frame = connection_->Receive(absl::Now() + absl::Seconds(5));
  ASSERT_OK(frame);
  EXPECT_EQ(AnsweredId(frame), 9u);
}

TEST_F(WorkerConnectionTest, EndOfStreamIsUnavailable) {
  ClosePeer();
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kUnavailable) << frame.status();
}

TEST_F(WorkerConnectionTest, EndOfStreamInTheMiddleOfAFrameIsUnavailable) {
  WriteRaw(std::string("\x10\x00\x00\x00", 4) + "abc");
  ClosePeer();
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kUnavailable) << frame.status();
}

TEST_F(WorkerConnectionTest, OversizedAnnouncedLengthIsResourceExhausted) {
  // 4 GiB - 1 announced; nothing else is sent, so nothing may be buffered or awaited.
  WriteRaw(std::string("\xff\xff\xff\xff", 4));
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted) << frame.status();
}

TEST_F(WorkerConnectionTest, FrameJustOverTheLimitIsResourceExhausted) {
  ASSERT_OK(WriteFrame(peer_, std::string(kMaxFrame + 1, 'z')));
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted) << frame.status();
}

TEST_F(WorkerConnectionTest, SendToAGonePeerIsUnavailable) {
  ClosePeer();
  EXPECT_EQ(connection_->Send(internal::WorkerRequest()).code(), absl::StatusCode::kUnavailable);
}

TEST_F(WorkerConnectionTest, ARequestSentInsideAnEnvelopeArrivesAsOneWorkerRequest) {
  internal::WorkerRequest envelope;
  envelope.set_id(12);
  envelope.set_invocation(34);
  v1::Request request;
  request.set_id(7);
  for (int i = 0; i < 3; ++i) {
    v1::Call* call = request.mutable_batch()->add_calls();
    call->set_function(5);
    call->add_args()->set_int_value(i);
  }
  ASSERT_OK(connection_->Send(envelope, request));
  absl::StatusOr<std::string> frame = ReadFrame(peer_, kMaxFrame);
  ASSERT_OK(frame);
  internal::WorkerRequest received;
  ASSERT_TRUE(received.ParseFromString(*frame));
  EXPECT_EQ(received.id(), 12u);
  EXPECT_EQ(received.invocation(), 34u);
  EXPECT_EQ(received.request().SerializeAsString(), request.SerializeAsString());
}

}  // namespace
}  // namespace ffibox

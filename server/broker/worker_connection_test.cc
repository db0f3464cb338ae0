#include "server/broker/worker_connection.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/framing.h"
#include "core/shm_channel.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

constexpr size_t kMaxFrame = 1024;
constexpr size_t kRingBytes = kMinShmRingBytes;

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

// The broker's connection over a channel and its hangup socket; the test plays the worker
// on the channel's other end (attached in this process) and holds the socket's other end.
class WorkerConnectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<ShmChannel>> channel = ShmChannel::Create(kRingBytes);
    ASSERT_OK(channel);
    memfd_ = dup((*channel)->memfd());
    absl::StatusOr<std::unique_ptr<ShmChannel>> peer = ShmChannel::Attach(memfd_);
    ASSERT_OK(peer);
    peer_ = std::move(*peer);
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    peer_socket_ = fds[1];
    absl::StatusOr<std::unique_ptr<WorkerConnection>> connection =
        MakeShmWorkerConnection(*std::move(channel), fds[0], kMaxFrame);
    ASSERT_OK(connection);
    connection_ = std::move(*connection);
  }
  void TearDown() override {
    connection_.reset();
    HangUp();
    close(memfd_);
  }

  // The worker's end of the hangup socket closes: what the broker sees when it dies.
  void HangUp() {
    if (peer_socket_ >= 0) close(peer_socket_);
    peer_socket_ = -1;
  }

  void WriteRaw(const std::string& bytes) { ASSERT_OK(peer_->Write(bytes, Soon())); }

  static absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

  int memfd_ = -1;
  int peer_socket_ = -1;
  std::unique_ptr<ShmChannel> peer_;
  std::unique_ptr<WorkerConnection> connection_;
};

TEST_F(WorkerConnectionTest, MessagesRoundTripInBothDirections) {
  internal::WorkerRequest request;
  request.set_id(7);
  request.mutable_request()->mutable_close();
  ASSERT_OK(connection_->Send(request));
  ASSERT_OK(connection_->Send(internal::WorkerRequest()));
  absl::StatusOr<std::string> frame = ReadFrame(*peer_, kMaxFrame, Soon());
  ASSERT_OK(frame);
  internal::WorkerRequest received;
  ASSERT_TRUE(received.ParseFromString(*frame));
  EXPECT_EQ(received.id(), 7u);
  EXPECT_TRUE(received.request().has_close());
  EXPECT_EQ(*ReadFrame(*peer_, kMaxFrame, Soon()), "");

  // Two frames arriving in one read come out one by one.
  ASSERT_OK(WriteFrame(*peer_, ReplyBytes(1), Soon()));
  ASSERT_OK(WriteFrame(*peer_, ReplyBytes(2), Soon()));
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
      ASSERT_OK(peer_->Write(absl::string_view(&c, 1), Soon()));
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
  ASSERT_OK(WriteFrame(*peer_, "\xff\xff not a message", Soon()));
  EXPECT_EQ(connection_->Receive(absl::Now() + absl::Seconds(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A message with no kind set parses, but its envelope is wrong.
  ASSERT_OK(WriteFrame(*peer_, "", Soon()));
  EXPECT_EQ(connection_->Receive(absl::Now() + absl::Seconds(5)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(WorkerConnectionTest, PastDeadlineReturnsDeadlineExceededPromptly) {
  absl::Time start = absl::Now();
  absl::StatusOr<internal::WorkerReply> frame = connection_->Receive(start - absl::Seconds(1));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kDeadlineExceeded) << frame.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));  // no wait: microseconds
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
  HangUp();
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kUnavailable) << frame.status();
}

TEST_F(WorkerConnectionTest, EndOfStreamInTheMiddleOfAFrameIsUnavailable) {
  WriteRaw(std::string("\x10\x00\x00\x00", 4) + "abc");
  HangUp();
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
  ASSERT_OK(WriteFrame(*peer_, std::string(kMaxFrame + 1, 'z'), Soon()));
  absl::StatusOr<internal::WorkerReply> frame =
      connection_->Receive(absl::Now() + absl::Seconds(5));
  EXPECT_EQ(frame.status().code(), absl::StatusCode::kResourceExhausted) << frame.status();
}

TEST_F(WorkerConnectionTest, SendToAGonePeerIsUnavailable) {
  HangUp();
  // The hangup is seen by the connection's own thread; the send fails once it has.
  internal::WorkerRequest request;
  request.mutable_request()->mutable_load_library()->set_path(std::string(kRingBytes, 'p'));
  absl::Status sent;
  for (int i = 0; i < 100 && sent.ok(); ++i) sent = connection_->Send(request);
  EXPECT_EQ(sent.code(), absl::StatusCode::kUnavailable);
}

TEST_F(WorkerConnectionTest, ASendWaitingForRoomEndsWhenTheWorkerHangsUp) {
  // A request larger than the ring waits for a worker that never reads it.
  internal::WorkerRequest request;
  request.mutable_request()->mutable_load_library()->set_path(std::string(3 * kRingBytes, 'p'));
  std::thread dies([this] {
    absl::SleepFor(absl::Milliseconds(100));
    HangUp();
  });
  const absl::Time start = absl::Now();
  EXPECT_EQ(connection_->Send(request).code(), absl::StatusCode::kUnavailable);
  dies.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(WorkerConnectionTest, AHangupEndsAWaitingReceiveAtOnceAfterTheLastReplies) {
  ASSERT_OK(WriteFrame(*peer_, ReplyBytes(1), Soon()));
  ASSERT_OK(WriteFrame(*peer_, ReplyBytes(2), Soon()));
  std::thread dies([this] {
    absl::SleepFor(absl::Milliseconds(100));
    HangUp();
  });
  const absl::Time start = absl::Now();
  EXPECT_EQ(AnsweredId(connection_->Receive(absl::InfiniteFuture())), 1u);
  EXPECT_EQ(AnsweredId(connection_->Receive(absl::InfiniteFuture())), 2u);
  absl::StatusOr<internal::WorkerReply> end = connection_->Receive(absl::InfiniteFuture());
  dies.join();
  EXPECT_EQ(end.status().code(), absl::StatusCode::kUnavailable) << end.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(WorkerConnectionTest, TheWorkersOwnCloseIsEndOfStream) {
  peer_->Close();
  EXPECT_EQ(connection_->Receive(Soon()).status().code(), absl::StatusCode::kUnavailable);
}

// A library of the worker can write anywhere in the worker's memory, the shared channel
// included: impossible positions are DATA_LOSS (the supervisor then kills the worker), both
// ways, and nothing in the broker reads or writes out of bounds.
TEST_F(WorkerConnectionTest, AChannelCorruptedByTheWorkerIsDataLoss) {
  ASSERT_OK(WriteFrame(*peer_, ReplyBytes(1), Soon()));
  void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
  ASSERT_NE(shared, MAP_FAILED);
  memset(static_cast<char*>(shared) + 16, 0xff, 4096 - 16);
  munmap(shared, 4096);
  absl::StatusOr<internal::WorkerReply> reply = connection_->Receive(Soon());
  EXPECT_EQ(reply.status().code(), absl::StatusCode::kDataLoss) << reply.status();
  EXPECT_EQ(connection_->Send(internal::WorkerRequest()).code(), absl::StatusCode::kDataLoss);
}

TEST_F(WorkerConnectionTest, AReadyWatchedDescriptorRunsItsCallbackOnTheReceivingThread) {
  int pipe_fds[2];
  ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
  std::vector<std::thread::id> called_on;
  std::string drained;
  connection_->Watch(pipe_fds[0], [&](short) {
    called_on.push_back(std::this_thread::get_id());
    char buffer[64];
    ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
    if (n > 0) drained.append(buffer, static_cast<size_t>(n));
    return n != 0;  // stop watching at end of file
  });
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_EQ(write(pipe_fds[1], "out", 3), 3);
    absl::SleepFor(absl::Milliseconds(50));
    ASSERT_OK(WriteFrame(*peer_, ReplyBytes(4), Soon()));
  });
  // The reply comes after the output; Receive ran the callback while it waited.
  EXPECT_EQ(AnsweredId(connection_->Receive(Soon())), 4u);
  writer.join();
  EXPECT_EQ(drained, "out");
  ASSERT_FALSE(called_on.empty());
  for (std::thread::id id : called_on) EXPECT_EQ(id, std::this_thread::get_id());
  // End of file: the callback returns false and the descriptor is no longer watched.
  close(pipe_fds[1]);
  const size_t calls = called_on.size();
  EXPECT_EQ(connection_->Receive(absl::Now() + absl::Milliseconds(100)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(called_on.size(), calls + 1);
  close(pipe_fds[0]);
}

// The worker wrote its output, then its reply, and both are there before the receiver
// looks: the output is relayed first, though the watch thread never got to see it.
TEST_F(WorkerConnectionTest, OutputWrittenBeforeTheReplyIsRelayedBeforeIt) {
  for (int round = 0; round < 50; ++round) {
    SCOPED_TRACE(round);
    int pipe_fds[2];
    ASSERT_EQ(pipe2(pipe_fds, O_CLOEXEC | O_NONBLOCK), 0);
    std::string drained;
    bool replied = false;
    bool output_after_reply = false;
    connection_->Watch(pipe_fds[0], [&](short) {
      char buffer[64];
      ssize_t n = read(pipe_fds[0], buffer, sizeof(buffer));
      if (n > 0) {
        drained.append(buffer, static_cast<size_t>(n));
        output_after_reply |= replied;
      }
      return n != 0;
    });
    ASSERT_EQ(write(pipe_fds[1], "out", 3), 3);
    ASSERT_OK(WriteFrame(*peer_, ReplyBytes(round + 1), Soon()));
    EXPECT_EQ(AnsweredId(connection_->Receive(Soon())), static_cast<uint64_t>(round + 1));
    EXPECT_EQ(drained, "out");
    replied = true;
    close(pipe_fds[1]);
    // End of file ends the watch.
    EXPECT_EQ(connection_->Receive(absl::Now() + absl::Milliseconds(20)).status().code(),
              absl::StatusCode::kDeadlineExceeded);
    EXPECT_FALSE(output_after_reply);
    close(pipe_fds[0]);
  }
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
  absl::StatusOr<std::string> frame = ReadFrame(*peer_, kMaxFrame, Soon());
  ASSERT_OK(frame);
  internal::WorkerRequest received;
  ASSERT_TRUE(received.ParseFromString(*frame));
  EXPECT_EQ(received.id(), 12u);
  EXPECT_EQ(received.invocation(), 34u);
  EXPECT_EQ(received.request().SerializeAsString(), request.SerializeAsString());
}

}  // namespace
}  // namespace ffibox

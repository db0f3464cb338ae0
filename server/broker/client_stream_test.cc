#include "server/broker/client_stream.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

constexpr absl::Duration kReadAheadAfter = absl::Milliseconds(50);
constexpr absl::Duration kGrace = absl::Milliseconds(300);

grpc::ByteBuffer Message(const std::string& text) {
  grpc::Slice slice(text);
  return grpc::ByteBuffer(&slice, 1);
}

std::string Text(const grpc::ByteBuffer& message) {
  std::vector<grpc::Slice> slices;
  EXPECT_TRUE(message.Dump(&slices).ok());
  std::string text;
  for (const grpc::Slice& slice : slices) text.append(slice.begin(), slice.end());
  return text;
}

// A stream whose client sends what the test puts, closes its side when told, and takes a
// response only when the test lets it; cancelling it ends its waiting Read and Write.
class ScriptedStream : public ClientStream::Stream {
 public:
  void SendInitialMetadata() override {}
  bool NextMessageSize(uint32_t* size) override {
    *size = 0;
    return true;
  }
  bool Read(grpc::ByteBuffer* message) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return cancelled_ || closed_ || !requests_.empty();
    };
    ++reads_waiting_;
    const bool ended = mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(10));
    --reads_waiting_;
    if (!ended) {
      ADD_FAILURE() << "a read waited 10 s and nothing cancelled the stream";
      return false;
    }
    if (cancelled_ || requests_.empty()) return false;
    *message = Message(requests_.front());
    requests_.pop_front();
    readers_.push_back(std::this_thread::get_id());
    return true;
  }
  bool Write(const grpc::ByteBuffer&, grpc::WriteOptions) override {
    absl::MutexLock lock(&mu_);
    ++writes_started_;
    auto taken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return cancelled_ || writes_taken_ >= writes_started_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&taken), absl::Seconds(10))) {
      ADD_FAILURE() << "a write waited 10 s and nothing cancelled the stream";
      return false;
    }
    return !cancelled_;
  }

  void Put(const std::string& request) {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
  }
  void CloseSide() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  void TakeResponses() {
    absl::MutexLock lock(&mu_);
    writes_taken_ = 1 << 30;
  }
  void Cancel() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    cancelled_at_ = absl::Now();
  }
  std::optional<absl::Time> CancelledAt() {
    absl::MutexLock lock(&mu_);
    return cancelled_at_;
  }
  // Waits until nothing put is left unread.
  void AwaitAllRead() {
    absl::MutexLock lock(&mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return requests_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&drained), absl::Seconds(10))) {
      ADD_FAILURE() << "what the client sent was not read within 10 s";
    }
  }
  // Waits until a read waits for the client (the helper's, while the test's thread writes).
  void AwaitWaitingRead() {
    absl::MutexLock lock(&mu_);
    auto waiting = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reads_waiting_ > 0; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&waiting), absl::Seconds(10))) {
      ADD_FAILURE() << "nothing read ahead within 10 s";
    }
  }
  std::thread::id LastReader() {
    absl::MutexLock lock(&mu_);
    return readers_.empty() ? std::thread::id() : readers_.back();
  }

 private:
  absl::Mutex mu_;
  std::deque<std::string> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread::id> readers_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<absl::Time> cancelled_at_ ABSL_GUARDED_BY(mu_);
  int reads_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_started_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_taken_ ABSL_GUARDED_BY(mu_) = 0;
};

v1::Response Answer(uint64_t id) {
  v1::Response response;
  response.set_id(id);
  response.mutable_done();
  return response;
}

class ClientStreamTest : public ::testing::Test {
 protected:
  std::unique_ptr<ClientStream> NewStream(absl::Duration grace = kGrace) {
    return std::make_unique<ClientStream>(
        &scripted_, [this] { scripted_.Cancel(); }, &timer_, kReadAheadAfter, grace);
  }

  // Sends an answer that the client takes once the helper waits for its next request.
  void SendUntilTheHelperWaits(ClientStream* stream) {
    std::thread slow_client([this] {
      scripted_.AwaitWaitingRead();
      scripted_.TakeResponses();
    });
    EXPECT_TRUE(stream->Send(Answer(1)));
    slow_client.join();
  }

  ScriptedStream scripted_;
  DeadlineTimer timer_;
};

TEST_F(ClientStreamTest, AClientThatClosesBehindAnAnswerItNeverTakesIsCancelledAfterTheGrace) {
  std::unique_ptr<ClientStream> stream = NewStream();
  scripted_.Put("first");
  scripted_.Put("second");
  scripted_.Put("third");
  scripted_.CloseSide();
  grpc::ByteBuffer request;
  ASSERT_TRUE(stream->Read(&request));
  EXPECT_EQ(Text(request), "first");
  // The answer waits: the client reads nothing more. The stream's thread is held here, so
  // only the helper can see the client close its side.
  const absl::Time sent = absl::Now();
  EXPECT_FALSE(stream->Send(Answer(1)));
  const std::optional<absl::Time> cancelled = scripted_.CancelledAt();
  ASSERT_TRUE(cancelled.has_value()) << "the write ended without the stream being cancelled";
  EXPECT_GE(*cancelled - sent, kGrace);
  EXPECT_LT(*cancelled - sent, kReadAheadAfter + kGrace + absl::Seconds(2));
  // Nobody takes their answers: what was read ahead is dropped.
  EXPECT_FALSE(stream->Read(&request));
}

TEST_F(ClientStreamTest, RequestsReadAheadComeInOrderAndTheStreamThreadThenReadsItself) {
  std::unique_ptr<ClientStream> stream = NewStream();
  scripted_.Put("first");
  grpc::ByteBuffer request;
  ASSERT_TRUE(stream->Read(&request));
  for (const char* next : {"second", "third", "fourth"}) scripted_.Put(next);
  // A slow client: it takes the answer only after the helper has read what it sent since.
  std::thread slow_client([this] {
    scripted_.AwaitAllRead();
    absl::SleepFor(kReadAheadAfter);
    scripted_.TakeResponses();
  });
  EXPECT_TRUE(stream->Send(Answer(1)));
  slow_client.join();
  EXPECT_NE(scripted_.LastReader(), std::this_thread::get_id()) << "nothing was read ahead";
  for (const char* expected : {"second", "third", "fourth"}) {
    ASSERT_TRUE(stream->Read(&request));
    EXPECT_EQ(Text(request), expected);
  }
  // The next one comes to the stream's thread whoever reads it, and the one after that it
  // reads itself.
  std::thread client([this] {
    absl::SleepFor(absl::Milliseconds(20));
    scripted_.Put("fifth");
  });
  ASSERT_TRUE(stream->Read(&request));
  EXPECT_EQ(Text(request), "fifth");
  client.join();
  scripted_.Put("sixth");
  ASSERT_TRUE(stream->Read(&request));
  EXPECT_EQ(Text(request), "sixth");
  EXPECT_EQ(scripted_.LastReader(), std::this_thread::get_id());
  // Its writes are taken: a client that reads slowly and keeps its side open is not cancelled.
  EXPECT_FALSE(scripted_.CancelledAt().has_value());
  scripted_.CloseSide();
  EXPECT_FALSE(stream->Read(&request));
}

TEST_F(ClientStreamTest, AWriteThatWaitsWhileTheClientKeepsItsSideOpenIsNotCancelled) {
  std::unique_ptr<ClientStream> stream = NewStream();
  std::thread slow_client([this] {
    absl::SleepFor(kReadAheadAfter + 3 * kGrace);
    scripted_.TakeResponses();
  });
  EXPECT_TRUE(stream->Send(Answer(1)));
  slow_client.join();
  EXPECT_FALSE(scripted_.CancelledAt().has_value());
}

TEST_F(ClientStreamTest, TheSessionsEndGivesAWaitingWriteTheGrace) {
  std::unique_ptr<ClientStream> stream = NewStream();
  std::thread worker_reader([&stream] { EXPECT_FALSE(stream->Send(Answer(1))); });
  absl::SleepFor(kReadAheadAfter);
  // The client asked to close (a request read by the stream's thread); its last answer waits.
  const absl::Time closed = absl::Now();
  stream->Close();
  worker_reader.join();
  const std::optional<absl::Time> cancelled = scripted_.CancelledAt();
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_GE(*cancelled - closed, kGrace);
}

TEST_F(ClientStreamTest, AHelperStillReadingWhenTheSessionEndsIsCancelled) {
  std::unique_ptr<ClientStream> stream = NewStream();
  SendUntilTheHelperWaits(stream.get());
  // The helper started reading and waits for a request that never comes, nor the client's
  // close: the end of the session waits the grace, not for the client.
  const absl::Time ended = absl::Now();
  stream.reset();
  const std::optional<absl::Time> cancelled = scripted_.CancelledAt();
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_GE(*cancelled - ended, kGrace);
  EXPECT_LT(*cancelled - ended, kGrace + absl::Seconds(2));
}

TEST_F(ClientStreamTest, AClientThatClosesItsSideAfterItsSessionEndedIsNotCancelled) {
  // A grace far longer than the client takes to close (the test does not wait it out).
  std::unique_ptr<ClientStream> stream = NewStream(absl::Seconds(5));
  SendUntilTheHelperWaits(stream.get());
  // The session ended (the client asked to close) while the helper waits; the client closes
  // its side once it has the answer.
  std::thread client([this] {
    absl::SleepFor(absl::Milliseconds(100));
    scripted_.CloseSide();
  });
  stream->Close();
  stream.reset();
  client.join();
  EXPECT_FALSE(scripted_.CancelledAt().has_value());
}

TEST_F(ClientStreamTest, TheHelperStopsOnceNoWriteWaitsAndItsRequestsAreTaken) {
  std::unique_ptr<ClientStream> stream = NewStream();
  std::thread slow_client([this] {
    scripted_.AwaitWaitingRead();
    scripted_.Put("first");
    scripted_.Put("second");
    scripted_.AwaitAllRead();
    scripted_.AwaitWaitingRead();  // the helper's next read
    scripted_.TakeResponses();
  });
  EXPECT_TRUE(stream->Send(Answer(1)));
  slow_client.join();
  grpc::ByteBuffer request;
  ASSERT_TRUE(stream->Read(&request));
  EXPECT_EQ(Text(request), "first");
  ASSERT_TRUE(stream->Read(&request));
  EXPECT_EQ(Text(request), "second");
  // The helper's read still waits: what comes next is its, and it reads no further, though
  // the client sends right behind it (so the stream's thread never waits for the helper).
  scripted_.Put("third");
  scripted_.Put("fourth");
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(stream->Read(&request));
  EXPECT_EQ(Text(request), "third");
  EXPECT_NE(scripted_.LastReader(), std::this_thread::get_id());
  ASSERT_TRUE(stream->Read(&request));
  EXPECT_EQ(Text(request), "fourth");
  EXPECT_EQ(scripted_.LastReader(), std::this_thread::get_id());
}

}  // namespace
}  // namespace ffibox

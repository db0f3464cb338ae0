#include "server/broker/client_stream.h"

#include <deque>
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
    mu_.Await(absl::Condition(&ready));
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
  ScriptedStream scripted_;
  DeadlineTimer timer_;
};

TEST_F(ClientStreamTest, AClientThatClosesBehindAnAnswerItNeverTakesIsCancelledAfterTheGrace) {
  ClientStream stream(
      &scripted_, [this] { scripted_.Cancel(); }, &timer_, kReadAheadAfter, kGrace);
  scripted_.Put("first");
  scripted_.Put("second");
  scripted_.Put("third");
  scripted_.CloseSide();
  grpc::ByteBuffer request;
  ASSERT_TRUE(stream.Read(&request));
  EXPECT_EQ(Text(request), "first");
  // The answer waits: the client reads nothing more. The stream's thread is held here, so
  // only the helper can see the client close its side.
  const absl::Time sent = absl::Now();
  EXPECT_FALSE(stream.Send(Answer(1)));
  const std::optional<absl::Time> cancelled = scripted_.CancelledAt();
  ASSERT_TRUE(cancelled.has_value()) << "the write ended without the stream being cancelled";
  EXPECT_GE(*cancelled - sent, kGrace);
  EXPECT_LT(*cancelled - sent, kReadAheadAfter + kGrace + absl::Seconds(2));
  // Nobody takes their answers: what was read ahead is dropped.
  EXPECT_FALSE(stream.Read(&request));
}

TEST_F(ClientStreamTest, RequestsReadAheadComeInOrderAndTheStreamThreadThenReadsItself) {
  ClientStream stream(
      &scripted_, [this] { scripted_.Cancel(); }, &timer_, kReadAheadAfter, kGrace);
  scripted_.Put("first");
  grpc::ByteBuffer request;
  ASSERT_TRUE(stream.Read(&request));
  for (const char* next : {"second", "third", "fourth"}) scripted_.Put(next);
  // A slow client: it takes the answer only after the helper has read what it sent since.
  std::thread slow_client([this] {
    scripted_.AwaitAllRead();
    absl::SleepFor(kReadAheadAfter);
    scripted_.TakeResponses();
  });
  EXPECT_TRUE(stream.Send(Answer(1)));
  slow_client.join();
  EXPECT_NE(scripted_.LastReader(), std::this_thread::get_id()) << "nothing was read ahead";
  for (const char* expected : {"second", "third", "fourth"}) {
    ASSERT_TRUE(stream.Read(&request));
    EXPECT_EQ(Text(request), expected);
  }
  // The helper waits for a request; the one that comes goes to the stream's thread, which
  // reads the next one itself.
  std::thread client([this] {
    absl::SleepFor(absl::Milliseconds(20));
    scripted_.Put("fifth");
  });
  ASSERT_TRUE(stream.Read(&request));
  EXPECT_EQ(Text(request), "fifth");
  client.join();
  scripted_.Put("sixth");
  ASSERT_TRUE(stream.Read(&request));
  EXPECT_EQ(Text(request), "sixth");
  EXPECT_EQ(scripted_.LastReader(), std::this_thread::get_id());
  // Its writes are taken: a client that reads slowly and keeps its side open is not cancelled.
  EXPECT_FALSE(scripted_.CancelledAt().has_value());
  scripted_.CloseSide();
  EXPECT_FALSE(stream.Read(&request));
}

TEST_F(ClientStreamTest, AWriteThatWaitsWhileTheClientKeepsItsSideOpenIsNotCancelled) {
  ClientStream stream(
      &scripted_, [this] { scripted_.Cancel(); }, &timer_, kReadAheadAfter, kGrace);
  std::thread slow_client([this] {
    absl::SleepFor(kReadAheadAfter + 3 * kGrace);
    scripted_.TakeResponses();
  });
  EXPECT_TRUE(stream.Send(Answer(1)));
  slow_client.join();
  EXPECT_FALSE(scripted_.CancelledAt().has_value());
}

TEST_F(ClientStreamTest, TheSessionsEndGivesAWaitingWriteTheGrace) {
  ClientStream stream(
      &scripted_, [this] { scripted_.Cancel(); }, &timer_, kReadAheadAfter, kGrace);
  std::thread worker_reader([&stream] { EXPECT_FALSE(stream.Send(Answer(1))); });
  absl::SleepFor(kReadAheadAfter);
  // The client asked to close (a request read by the stream's thread); its last answer waits.
  const absl::Time closed = absl::Now();
  stream.Close();
  worker_reader.join();
  const std::optional<absl::Time> cancelled = scripted_.CancelledAt();
  ASSERT_TRUE(cancelled.has_value());
  EXPECT_GE(*cancelled - closed, kGrace);
}

TEST_F(ClientStreamTest, AHelperStillReadingWhenTheSessionEndsIsCancelled) {
  std::optional<ClientStream> stream;
  stream.emplace(
      &scripted_, [this] { scripted_.Cancel(); }, &timer_, kReadAheadAfter, kGrace);
  std::thread slow_client([this] {
    absl::SleepFor(3 * kReadAheadAfter);
    scripted_.TakeResponses();
  });
  EXPECT_TRUE(stream->Send(Answer(1)));
  slow_client.join();
  // The helper started reading and waits for a request that never comes; the end of the
  // session must not wait for the client.
  stream.reset();
  EXPECT_TRUE(scripted_.CancelledAt().has_value());
}

}  // namespace
}  // namespace ffibox

#include "server/session.h"

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

// Collects a session's responses.
class RecordingSink : public ResponseSink {
 public:
  bool Send(const v1::Response& response) override {
    absl::MutexLock lock(&mu_);
    responses_.push_back(response);
    return true;
  }

  // Waits until `count` responses arrived (or 10 s passed) and returns them.
  std::vector<v1::Response> WaitFor(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return responses_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
    return responses_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::Response> responses_ ABSL_GUARDED_BY(mu_);
};

SessionConfig FakeWorkerConfig() {
  SessionConfig config;
  const char* srcdir = std::getenv("TEST_SRCDIR");
  config.worker_path =
      srcdir != nullptr ? std::string(srcdir) + "/ffibox/server/fake_worker" : "server/fake_worker";
  config.default_call_timeout = absl::Seconds(10);
  return config;
}

v1::Request Load(uint64_t id, const std::string& path) {
  v1::Request request;
  request.set_id(id);
  request.mutable_load_library()->set_path(path);
  return request;
}

TEST(Session, ShutdownIsPromptWhenAProcessForkedByTheWorkerHoldsTheChannel) {
  RecordingSink sink;
  Session session(FakeWorkerConfig(), &sink, "test");
  ASSERT_TRUE(session.HandleRequest(Load(1, "fork-and-hold")));
  std::vector<v1::Response> responses = sink.WaitFor(1);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].id(), 1u);
  EXPECT_TRUE(responses[0].has_library()) << responses[0].DebugString();

  // The worker is idle and its channel never reaches end of stream: Shutdown must not wait
  // for it (the forked process lives 5 s).
  absl::Time start = absl::Now();
  session.Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST(Session, ProtocolViolationFailsTheRequestOnceAndTheNextRequestRestarts) {
  RecordingSink sink;
  Session session(FakeWorkerConfig(), &sink, "test");
  ASSERT_TRUE(session.HandleRequest(Load(1, "garbage")));
  std::vector<v1::Response> responses = sink.WaitFor(2);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].id(), 1u);
  EXPECT_EQ(responses[0].error().code(), v1::WORKER_CRASHED) << responses[0].DebugString();
  EXPECT_EQ(responses[1].id(), 0u);
  EXPECT_EQ(responses[1].event().kind(), v1::SessionEvent::WORKER_LOST);

  ASSERT_TRUE(session.HandleRequest(Load(2, "libok.so")));
  responses = sink.WaitFor(4);
  ASSERT_EQ(responses.size(), 4u);
  EXPECT_EQ(responses[2].event().kind(), v1::SessionEvent::WORKER_RESTARTED);
  EXPECT_EQ(responses[2].generation(), 2u);
  EXPECT_EQ(responses[3].id(), 2u);
  EXPECT_TRUE(responses[3].has_library()) << responses[3].DebugString();
  EXPECT_EQ(responses[3].generation(), 2u);
  session.Shutdown();
}

TEST(Session, HangingRequestTimesOutAndTheQueuedOneFailsToo) {
  RecordingSink sink;
  Session session(FakeWorkerConfig(), &sink, "test");
  v1::Request open;
  open.set_id(1);
  open.mutable_open()->set_call_timeout_ms(200);
  ASSERT_TRUE(session.HandleRequest(open));
  ASSERT_TRUE(session.HandleRequest(Load(2, "hang")));
  ASSERT_TRUE(session.HandleRequest(Load(3, "libok.so")));
  std::vector<v1::Response> responses = sink.WaitFor(4);
  ASSERT_EQ(responses.size(), 4u);
  EXPECT_EQ(responses[1].id(), 2u);
  EXPECT_EQ(responses[1].error().code(), v1::CALL_TIMEOUT) << responses[1].DebugString();
  EXPECT_EQ(responses[2].id(), 3u);
  EXPECT_EQ(responses[2].error().code(), v1::CALL_TIMEOUT) << responses[2].DebugString();
  EXPECT_EQ(responses[3].event().kind(), v1::SessionEvent::WORKER_LOST);
  session.Shutdown();
}

}  // namespace
}  // namespace ffibox

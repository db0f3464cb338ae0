#include "server/broker/session.h"

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

// Collects a session's responses.
class RecordingSink : public ResponseSink {
 public:
  bool Send(v1::Response response) override {
    absl::MutexLock lock(&mu_);
    responses_.push_back(std::move(response));
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
  config.worker_path = srcdir != nullptr ? std::string(srcdir) + "/ffibox/server/broker/fake_worker"
                                         : "server/broker/fake_worker";
  config.default_call_timeout = absl::Seconds(10);
  // The fake worker speaks the channel protocol only; it applies no jail (and so hands over
  // no seccomp listener). The jail's own tests use the real worker.
  config.jail.enabled = false;
  return config;
}

v1::Request Load(uint64_t id, const std::string& path) {
  v1::Request request;
  request.set_id(id);
  request.mutable_load_library()->set_path(path);
  return request;
}

// Sends request 1, a load of `path` (the fake worker's misbehaviour), as the session's first
// request and expects its worker killed for breaking the channel protocol (an error naming
// `detail`), then WORKER_LOST.
void ExpectLoadKillsTheWorker(Session& session, RecordingSink& sink, const std::string& path,
                              absl::string_view detail) {
  ASSERT_TRUE(session.HandleRequest(Load(1, path)));
  std::vector<v1::Response> responses = sink.WaitFor(2);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[0].id(), 1u);
  EXPECT_EQ(responses[0].error().code(), v1::WORKER_CRASHED) << responses[0].DebugString();
  EXPECT_TRUE(absl::StrContains(responses[0].error().message(), "broke the channel protocol"))
      << responses[0].error().message();
  EXPECT_TRUE(absl::StrContains(responses[0].error().message(), detail))
      << responses[0].error().message();
  EXPECT_EQ(responses[1].event().kind(), v1::SessionEvent::WORKER_LOST);
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

// A library of the worker can write anywhere in the worker's memory, the channel's shared
// memory included: impossible positions there end that worker, never the broker.
TEST(Session, AWorkerThatCorruptsTheChannelIsKilledAndTheNextRequestRestarts) {
  RecordingSink sink;
  Session session(FakeWorkerConfig(), &sink, "test");
  ExpectLoadKillsTheWorker(session, sink, "corrupt-channel", "shared ring");

  ASSERT_TRUE(session.HandleRequest(Load(2, "libok.so")));
  std::vector<v1::Response> responses = sink.WaitFor(4);
  ASSERT_EQ(responses.size(), 4u);
  EXPECT_EQ(responses[2].event().kind(), v1::SessionEvent::WORKER_RESTARTED);
  EXPECT_TRUE(responses[3].has_library()) << responses[3].DebugString();
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
  // Both reached the worker (the second was queued there behind the first): a client must not
  // send again what they carried.
  EXPECT_FALSE(responses[1].error().never_reached_worker());
  EXPECT_FALSE(responses[2].error().never_reached_worker());
  EXPECT_EQ(responses[3].event().kind(), v1::SessionEvent::WORKER_LOST);
  session.Shutdown();
}

TEST(Session, ARequestRefusedBeforeAnyWorkerSawItSaysSo) {
  RecordingSink sink;
  Session session(FakeWorkerConfig(), &sink, "test");
  v1::Request call;
  call.set_id(1);
  call.mutable_call()->set_function(77);  // never resolved
  call.mutable_call()->add_release()->set_address(0x1000);
  ASSERT_TRUE(session.HandleRequest(call));
  std::vector<v1::Response> responses = sink.WaitFor(1);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].id(), 1u);
  ASSERT_TRUE(responses[0].has_error()) << responses[0].DebugString();
  EXPECT_TRUE(responses[0].error().never_reached_worker()) << responses[0].DebugString();
  session.Shutdown();
}

// Holds its Send of the answer to request `held` until Release, as a client stream's write
// may wait: what the session sends from another thread meanwhile overtakes it unless the
// session waits for it.
class HoldingSink : public RecordingSink {
 public:
  explicit HoldingSink(uint64_t held) : held_(held) {}

  bool Send(v1::Response response) override {
    if (response.id() == held_) {
      holding_.Notify();
      release_.WaitForNotification();
    }
    return RecordingSink::Send(std::move(response));
  }

  void AwaitHolding() { holding_.WaitForNotification(); }
  void Release() { release_.Notify(); }

 private:
  const uint64_t held_;
  absl::Notification holding_;
  absl::Notification release_;
};

// The index in `responses` of the answer to request `id`, or -1.
int IndexOfAnswer(const std::vector<v1::Response>& responses, uint64_t id) {
  for (size_t i = 0; i < responses.size(); ++i) {
    if (responses[i].id() == id) return static_cast<int>(i);
  }
  return -1;
}

// A request naming a load by its id that is refused because the load failed is answered
// after the load's failure, even while that answer is still being written: a client reports
// the failure of the load from the request that depended on it (docs/protocol.md, "Pipelined
// requests"). The load fails by the worker's answer ("missing") and by the worker's death
// ("garbage").
TEST(Session, ARefusalNamingAFailedLoadComesAfterTheLoadsFailure) {
  for (const char* path : {"missing", "garbage"}) {
    SCOPED_TRACE(path);
    HoldingSink sink(1);
    Session session(FakeWorkerConfig(), &sink, "test");
    ASSERT_TRUE(session.HandleRequest(Load(1, path)));
    sink.AwaitHolding();  // the load's failure is recorded; its answer is being sent
    v1::Request lookup;
    lookup.set_id(2);
    lookup.mutable_lookup_symbol()->set_library_request(1);
    lookup.mutable_lookup_symbol()->set_symbol("x");
    std::thread named([&] { session.HandleRequest(lookup); });
    absl::SleepFor(absl::Milliseconds(200));
    sink.Release();
    named.join();
    std::vector<v1::Response> responses = sink.WaitFor(path == std::string("garbage") ? 3 : 2);
    const int load = IndexOfAnswer(responses, 1);
    const int refusal = IndexOfAnswer(responses, 2);
    ASSERT_GE(load, 0);
    ASSERT_GE(refusal, 0);
    EXPECT_LT(load, refusal);
    EXPECT_EQ(responses[load].error().code(),
              path == std::string("missing") ? v1::LIBRARY_LOAD_FAILED : v1::WORKER_CRASHED)
        << responses[load].DebugString();
    EXPECT_EQ(responses[refusal].error().code(), v1::NOT_FOUND) << responses[refusal].DebugString();
    EXPECT_TRUE(absl::StrContains(responses[refusal].error().message(),
                                  "the load_library request with id 1 failed"))
        << responses[refusal].error().message();
    session.Shutdown();
  }
}

// The same for a call naming a resolve that failed (the fake worker answers a resolve with
// UNIMPLEMENTED).
TEST(Session, ARefusalNamingAFailedResolveComesAfterTheResolvesFailure) {
  HoldingSink sink(2);
  Session session(FakeWorkerConfig(), &sink, "test");
  ASSERT_TRUE(session.HandleRequest(Load(1, "libok.so")));
  v1::Request resolve;
  resolve.set_id(2);
  resolve.mutable_resolve_function()->set_library_request(1);
  resolve.mutable_resolve_function()->set_symbol("f");
  resolve.mutable_resolve_function()->mutable_signature()->mutable_result()->set_scalar(v1::INT);
  ASSERT_TRUE(session.HandleRequest(resolve));
  sink.AwaitHolding();
  v1::Request call;
  call.set_id(3);
  call.mutable_call()->set_function_request(2);
  std::thread named([&] { session.HandleRequest(call); });
  absl::SleepFor(absl::Milliseconds(200));
  sink.Release();
  named.join();
  std::vector<v1::Response> responses = sink.WaitFor(3);
  const int resolved = IndexOfAnswer(responses, 2);
  const int refusal = IndexOfAnswer(responses, 3);
  ASSERT_GE(resolved, 0);
  ASSERT_GE(refusal, 0);
  EXPECT_LT(resolved, refusal);
  EXPECT_EQ(responses[resolved].error().code(), v1::UNIMPLEMENTED)
      << responses[resolved].DebugString();
  EXPECT_EQ(responses[refusal].error().code(), v1::NOT_FOUND) << responses[refusal].DebugString();
  EXPECT_TRUE(absl::StrContains(responses[refusal].error().message(),
                                "the resolve_function request with id 2 failed"))
      << responses[refusal].error().message();
  session.Shutdown();
}

v1::Request DefineIntCallback(uint64_t id) {
  v1::Request request;
  request.set_id(id);
  v1::Signature* signature = request.mutable_define_callback()->mutable_signature();
  signature->mutable_result()->set_scalar(v1::INT);
  signature->add_params()->set_scalar(v1::INT);
  return request;
}

TEST(Session, CallbackInvokeIsRelayedAndRequestsInsideItAreAnsweredBeforeTheOuterOne) {
  RecordingSink sink;
  Session session(FakeWorkerConfig(), &sink, "test");
  ASSERT_TRUE(session.HandleRequest(DefineIntCallback(1)));
  std::vector<v1::Response> responses = sink.WaitFor(1);
  ASSERT_EQ(responses.size(), 1u);
  ASSERT_TRUE(responses[0].has_callback()) << responses[0].DebugString();
  EXPECT_EQ(responses[0].callback().callback(), 1u);

  ASSERT_TRUE(session.HandleRequest(Load(2, "invoke")));
  responses = sink.WaitFor(2);
  ASSERT_EQ(responses.size(), 2u);
  EXPECT_EQ(responses[1].id(), 0u);
  ASSERT_TRUE(responses[1].has_callback_invoke()) << responses[1].DebugString();
  EXPECT_EQ(responses[1].callback_invoke().invocation(), 77u);

  // A request inside an invocation that is not open is refused by the broker.
  v1::Request stray = Load(3, "libok.so");
  stray.set_invocation(78);
  ASSERT_TRUE(session.HandleRequest(stray));
  // Inside invocation 77: answered while the outer load still waits.
  v1::Request nested = Load(4, "libok.so");
  nested.set_invocation(77);
  ASSERT_TRUE(session.HandleRequest(nested));
  responses = sink.WaitFor(4);
  ASSERT_EQ(responses.size(), 4u);
  EXPECT_EQ(responses[2].id(), 3u);
  EXPECT_EQ(responses[2].error().code(), v1::FAILED_PRECONDITION);
  EXPECT_EQ(responses[3].id(), 4u);
  EXPECT_TRUE(responses[3].has_library()) << responses[3].DebugString();

  // A void result for an int callback is refused; the invocation stays open.
  v1::Request empty_return;
  empty_return.set_id(5);
  empty_return.mutable_callback_return()->set_invocation(77);
  ASSERT_TRUE(session.HandleRequest(empty_return));
  v1::Request answer = empty_return;
  answer.set_id(6);
  answer.mutable_callback_return()->mutable_result()->set_int_value(10);
  ASSERT_TRUE(session.HandleRequest(answer));
  responses = sink.WaitFor(7);
  ASSERT_EQ(responses.size(), 7u);
  EXPECT_EQ(responses[4].id(), 5u);
  EXPECT_EQ(responses[4].error().code(), v1::INVALID_ARGUMENT) << responses[4].DebugString();
  // The worker may answer the outer load before the broker's `done` goes out.
  const v1::Response& done = responses[5].id() == 6 ? responses[5] : responses[6];
  const v1::Response& outer = responses[5].id() == 6 ? responses[6] : responses[5];
  EXPECT_EQ(done.id(), 6u);
  EXPECT_TRUE(done.has_done()) << done.DebugString();
  EXPECT_EQ(outer.id(), 2u);
  EXPECT_TRUE(outer.has_library()) << outer.DebugString();

  // Answered once: a second return is refused.
  answer.set_id(7);
  ASSERT_TRUE(session.HandleRequest(answer));
  responses = sink.WaitFor(8);
  ASSERT_EQ(responses.size(), 8u);
  EXPECT_EQ(responses[7].error().code(), v1::FAILED_PRECONDITION);
  session.Shutdown();
}

TEST(Session, InvokeOfAnUndefinedCallbackIsAProtocolViolation) {
  RecordingSink sink;
  Session session(FakeWorkerConfig(), &sink, "test");
  ExpectLoadKillsTheWorker(session, sink, "invoke-unknown", "not defined");
  session.Shutdown();
}

TEST(Session, CallbacksBeyondTheLimitAreResourceExhausted) {
  RecordingSink sink;
  SessionConfig config = FakeWorkerConfig();
  config.max_callbacks = 1;
  Session session(config, &sink, "test");
  ASSERT_TRUE(session.HandleRequest(DefineIntCallback(1)));
  ASSERT_TRUE(session.HandleRequest(DefineIntCallback(2)));
  std::vector<v1::Response> responses = sink.WaitFor(2);
  ASSERT_EQ(responses.size(), 2u);
  for (const v1::Response& response : responses) {
    if (response.id() == 1) {
      EXPECT_TRUE(response.has_callback()) << response.DebugString();
    } else {
      EXPECT_EQ(response.error().code(), v1::RESOURCE_EXHAUSTED) << response.DebugString();
    }
  }
  session.Shutdown();
}

// The idle throttle's alarms come due on shared ticks, at or after the time asked for and less
// than one tick later.
TEST(IdleThrottleTick, RoundsUpToTheNextMultipleOfTheDelay) {
  const absl::Time tick = absl::FromUnixNanos(absl::ToInt64Nanoseconds(kIdleThrottleDelay) * 1000);
  EXPECT_EQ(IdleThrottleTick(tick), tick);
  EXPECT_EQ(IdleThrottleTick(tick + absl::Nanoseconds(1)), tick + kIdleThrottleDelay);
  EXPECT_EQ(IdleThrottleTick(tick - absl::Nanoseconds(1)), tick);
  const absl::Time now = absl::Now();
  const absl::Time due = IdleThrottleTick(now);
  EXPECT_GE(due, now);
  EXPECT_LT(due - now, kIdleThrottleDelay);
  EXPECT_EQ(IdleThrottleTick(due), due);
}

}  // namespace
}  // namespace ffibox

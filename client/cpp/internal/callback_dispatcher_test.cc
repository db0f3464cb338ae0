#include "client/cpp/internal/callback_dispatcher.h"

#include <future>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

// Collects the answers a dispatcher sends, as the stream would write them.
class SentAnswers {
 public:
  CallbackDispatcher::AnswerSender Sender() {
    return [this](v1::Request request) {
      absl::MutexLock lock(&mu_);
      answers_.push_back(std::move(*request.mutable_callback_return()));
    };
  }

  // Waits (bounded) until `count` answers were sent and returns them.
  std::vector<v1::CallbackReturn> WaitFor(size_t count) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, count]()
                      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return answers_.size() >= count; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
    return answers_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::CallbackReturn> answers_ ABSL_GUARDED_BY(mu_);
};

v1::Response Invoke(uint64_t callback, uint64_t invocation) {
  v1::Response message;
  message.mutable_callback_invoke()->set_callback(callback);
  message.mutable_callback_invoke()->set_invocation(invocation);
  return message;
}

TEST(CallbackDispatcherTest, InvocationsRunOnTheCallbackThreadAndAreAnsweredWithTheirId) {
  SentAnswers sent;
  CallbackDispatcher dispatcher(sent.Sender());
  bool on_callback_thread = false;
  uint64_t invocation = 0;
  dispatcher.Register(
      7,
      [&](const v1::Response&) {
        on_callback_thread = dispatcher.OnCallbackThread();
        invocation = dispatcher.CurrentInvocation();
        v1::CallbackReturn answer;
        answer.mutable_result()->set_int_value(42);
        return answer;
      },
      v1::Signature());
  dispatcher.Deliver(Invoke(7, 3));
  std::vector<v1::CallbackReturn> answers = sent.WaitFor(1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].invocation(), 3u);
  EXPECT_EQ(answers[0].result().int_value(), 42);
  EXPECT_TRUE(on_callback_thread);
  EXPECT_EQ(invocation, 3u);
  EXPECT_FALSE(dispatcher.OnCallbackThread());
  EXPECT_EQ(dispatcher.CurrentInvocation(), 0u);
}

TEST(CallbackDispatcherTest, InvocationsBeforeAnyCallbackAreRefused) {
  SentAnswers sent;
  CallbackDispatcher dispatcher(sent.Sender());
  dispatcher.Deliver(Invoke(1, 5));
  std::vector<v1::CallbackReturn> answers = sent.WaitFor(1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].invocation(), 5u);
  EXPECT_NE(answers[0].error().find("does not define callbacks"), std::string::npos);
}

TEST(CallbackDispatcherTest, AFreedCallbackIsAnsweredWithAnError) {
  SentAnswers sent;
  CallbackDispatcher dispatcher(sent.Sender());
  dispatcher.Register(
      1, [](const v1::Response&) { return v1::CallbackReturn(); }, v1::Signature());
  dispatcher.Unregister(1);
  dispatcher.Deliver(Invoke(1, 2));
  std::vector<v1::CallbackReturn> answers = sent.WaitFor(1);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].invocation(), 2u);
  EXPECT_EQ(answers[0].error(), "callback 1 has no handler in this client (it was freed)");
}

TEST(CallbackDispatcherTest, AWaitOnTheCallbackThreadServesNestedInvocations) {
  SentAnswers sent;
  CallbackDispatcher dispatcher(sent.Sender());
  std::vector<uint64_t> seen;  // the invocation each handler ran in, in order
  std::thread reader;
  dispatcher.Register(
      2,
      [&](const v1::Response&) {
        seen.push_back(dispatcher.CurrentInvocation());
        return v1::CallbackReturn();
      },
      v1::Signature());
  dispatcher.Register(
      1,
      [&](const v1::Response&) {
        // A blocking request from the handler: its answer comes after a nested invocation.
        std::promise<absl::StatusOr<v1::Response>> promise;
        std::future<absl::StatusOr<v1::Response>> answer = promise.get_future();
        reader = std::thread([&dispatcher, promise = std::move(promise)]() mutable {
          dispatcher.Deliver(Invoke(2, 11));
          absl::SleepFor(absl::Milliseconds(50));
          promise.set_value(v1::Response());
          dispatcher.Wake();
        });
        EXPECT_TRUE(dispatcher.AwaitServing(answer).ok());
        seen.push_back(dispatcher.CurrentInvocation());
        return v1::CallbackReturn();
      },
      v1::Signature());
  dispatcher.Deliver(Invoke(1, 10));
  std::vector<v1::CallbackReturn> answers = sent.WaitFor(2);
  reader.join();
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].invocation(), 11u);  // the nested one, answered first
  EXPECT_EQ(answers[1].invocation(), 10u);
  EXPECT_EQ(seen, (std::vector<uint64_t>{11, 10}));
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

// Batches end to end: a real ffiboxd, real workers and the real test library. Many calls in
// one request give every result; a malformed call refuses the whole batch and names it; a
// call that fails in the worker stops the batch there; a crash or a deadline in the middle
// fails the batch as it fails a single call and the session goes on; callbacks, errno,
// client memory and lasting blocks behave in a batched call as in a single one; the batch
// limits give their typed errors.
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cpp/ffibox_client.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/session_fixture.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

class BatchTest : public test_support::SessionFixture {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {"--max_batch_calls=64", "--max_block_bytes=1000"};
  }

  template <typename Sig>
  Function<Sig> Fn(const std::string& symbol) {
    absl::StatusOr<Function<Sig>> function = lib_->Function<Sig>(symbol);
    EXPECT_TRUE(function.ok()) << symbol << ": " << function.status();
    return *std::move(function);
  }

  // The next value of the library's per-worker call counter: 1 + the counter_next calls
  // that ran in this worker.
  int CounterNext() {
    absl::StatusOr<int> next = Fn<int()>("counter_next")();
    EXPECT_OK(next);
    return next.ok() ? *next : -1;
  }

  // A raw call of the function `handle` with int arguments `args`.
  static v1::Call RawCall(uint64_t handle, std::vector<int> args) {
    v1::Call call;
    call.set_function(handle);
    for (int arg : args) call.add_args()->set_int_value(arg);
    return call;
  }
};

TEST_F(BatchTest, ManyAddIntCallsInOneBatchGiveEverySum) {
  Function<int(int, int)> add = Fn<int(int, int)>("add_int");
  Batch batch = session_->NewBatch();
  std::vector<BatchCall<int>> sums;
  for (int i = 0; i < 64; ++i) sums.push_back(batch.Add(add, i, 1000 * i));
  EXPECT_EQ(batch.size(), 64u);
  ASSERT_OK(batch.Run());
  for (int i = 0; i < 64; ++i) {
    absl::StatusOr<int> sum = batch.Result(sums[i]);
    ASSERT_OK(sum);
    EXPECT_EQ(*sum, 1001 * i);
  }
  EXPECT_THAT(batch.Run(), StatusIs(v1::FAILED_PRECONDITION));  // a batch runs once
}

TEST_F(BatchTest, AMalformedCallRefusesTheBatchNamingItsIndexAndNothingRuns) {
  const uint64_t counter = Fn<int()>("counter_next").raw().handle();
  const uint64_t add = Fn<int(int, int)>("add_int").raw().handle();
  v1::Request request;
  for (int i = 0; i < 3; ++i) *request.mutable_batch()->add_calls() = RawCall(counter, {});
  *request.mutable_batch()->add_calls() = RawCall(add, {1});  // one argument short
  *request.mutable_batch()->add_calls() = RawCall(counter, {});
  absl::StatusOr<v1::Response> refused = session_->Send(request);
  EXPECT_THAT(refused, StatusIs(v1::INVALID_ARGUMENT));
  v1::Error error = ErrorOf(refused.status());
  EXPECT_EQ(error.field(), "batch.calls[3].args");
  EXPECT_EQ(error.batch_index(), 3u);

  // An unknown function handle is refused the same way.
  request.mutable_batch()->mutable_calls(3)->set_function(999);
  refused = session_->Send(request);
  EXPECT_THAT(refused, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ErrorOf(refused.status()).batch_index(), 3u);

  EXPECT_EQ(CounterNext(), 1);  // none of the counter_next calls ran
}

TEST_F(BatchTest, ACallThatFailsInTheWorkerStopsTheBatchThere) {
  Function<int()> counter = Fn<int()>("counter_next");
  // char* ptr_offset(void*, long): the worker cannot read a string at address 16.
  Function<std::string(RemotePtr, long)> string_at = Fn<std::string(RemotePtr, long)>("ptr_offset");
  Batch batch = session_->NewBatch();
  BatchCall<int> first = batch.Add(counter);
  BatchCall<int> second = batch.Add(counter);
  BatchCall<std::string> unreadable = batch.Add(string_at, nullptr, 16);
  BatchCall<int> after = batch.Add(counter);

  absl::Status ran = batch.Run();
  EXPECT_THAT(ran, StatusIs(v1::MEMORY_FAULT));
  EXPECT_EQ(ErrorOf(ran).batch_index(), 2u);
  EXPECT_TRUE(absl::StartsWith(ErrorOf(ran).message(), "batch.calls[2]")) << ran;
  EXPECT_EQ(batch.Result(first).value_or(-1), 1);
  EXPECT_EQ(batch.Result(second).value_or(-1), 2);
  EXPECT_THAT(batch.Result(unreadable), StatusIs(v1::MEMORY_FAULT));
  EXPECT_THAT(batch.Result(after), StatusIs(v1::FAILED_PRECONDITION));
  EXPECT_EQ(CounterNext(), 3);  // the call after the failing one did not run
}

TEST_F(BatchTest, ACrashInTheMiddleFailsTheBatchLikeACallAndTheSessionGoesOn) {
  Function<int()> counter = Fn<int()>("counter_next");
  Batch batch = session_->NewBatch();
  BatchCall<int> before = batch.Add(counter);
  batch.Add(Fn<int()>("crash_null_deref"));
  BatchCall<int> after = batch.Add(counter);

  absl::Status ran = batch.Run();
  EXPECT_THAT(ran, StatusIs(v1::WORKER_CRASHED));
  EXPECT_EQ(ErrorOf(ran).signal(), SIGSEGV);
  EXPECT_FALSE(ErrorOf(ran).has_batch_index());  // the batch failed as a whole
  EXPECT_TRUE(absl::StrContains(ErrorOf(ran).function(), "crash_null_deref")) << ran;
  EXPECT_THAT(batch.Result(before), StatusIs(v1::WORKER_CRASHED));
  EXPECT_THAT(batch.Result(after), StatusIs(v1::WORKER_CRASHED));

  absl::StatusOr<int> sum = Fn<int(int, int)>("add_int")(2, 3);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 5);
  EXPECT_EQ(session_->generation(), 2u);
  EXPECT_EQ(CounterNext(), 1);  // a fresh worker
}

TEST_F(BatchTest, ABatchsDeadlineIsTheSumOfItsCallsAndKillsAHangInTheMiddle) {
  Function<int(int, int)> add = Fn<int(int, int)>("add_int");
  CallOptions quick;
  quick.timeout = absl::Milliseconds(200);
  Batch batch = session_->NewBatch();
  batch.AddWith(add, quick, 1, 2);
  batch.AddWith(Fn<int()>("hang_forever"), quick);
  batch.AddWith(add, quick, 3, 4);
  const absl::Time start = absl::Now();
  absl::Status ran = batch.Run();
  const absl::Duration took = absl::Now() - start;
  EXPECT_THAT(ran, StatusIs(v1::CALL_TIMEOUT));
  EXPECT_TRUE(absl::StrContains(ran.message(), "600ms")) << ran;  // 3 x 200 ms
  EXPECT_LT(took, absl::Seconds(5));

  // The batch's own deadline replaces the sum.
  Batch own = session_->NewBatch();
  own.Add(Fn<int(int)>("sleep_ms"), 10000);
  own.SetTimeout(absl::Milliseconds(300));
  EXPECT_THAT(own.Run(), StatusIs(v1::CALL_TIMEOUT));

  absl::StatusOr<int> sum = add(2, 3);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 5);
}

TEST_F(BatchTest, ACallbackRunsInsideABatchedCallWithReentrantCalls) {
  Function<int(int, int)> add = Fn<int(int, int)>("add_int");
  // h(x) = x + 10, computed by a call into the session while the batch waits on it.
  absl::StatusOr<Callback<int(int)>> handler = session_->DefineCallback<int(int)>(
      [&add](int x) -> absl::StatusOr<int> { return add(x, 10); });
  ASSERT_OK(handler);
  Batch batch = session_->NewBatch();
  BatchCall<int> before = batch.Add(add, 1, 1);
  BatchCall<int> twice =
      batch.Add(Fn<int(Callback<int(int)>, int)>("call_twice_nested"), *handler, 1);
  BatchCall<int> after = batch.Add(add, 2, 2);
  ASSERT_OK(batch.Run());
  EXPECT_EQ(batch.Result(before).value_or(-1), 2);
  EXPECT_EQ(batch.Result(twice).value_or(-1), 21);  // h(h(1))
  EXPECT_EQ(batch.Result(after).value_or(-1), 4);
}

TEST_F(BatchTest, ErrnoIsSetAndCapturedPerCall) {
  CallOptions plain;
  CallOptions preset;
  preset.set_errno = 84;
  Batch batch = session_->NewBatch();
  BatchCall<int> set = batch.AddWith(Fn<int(int)>("set_errno_to"), plain, 34);
  BatchCall<int> get = batch.AddWith(Fn<int()>("get_errno_value"), preset);
  BatchCall<int> uncaptured = batch.Add(Fn<int(int)>("set_errno_to"), 7);
  ASSERT_OK(batch.Run());
  absl::StatusOr<WithErrno<int>> after_set = batch.ResultWithErrno(set);
  ASSERT_OK(after_set);
  EXPECT_EQ(after_set->value, -1);
  EXPECT_EQ(after_set->error_number, 34);
  absl::StatusOr<WithErrno<int>> after_get = batch.ResultWithErrno(get);
  ASSERT_OK(after_get);
  EXPECT_EQ(after_get->value, 84);
  EXPECT_EQ(after_get->error_number, 84);
  EXPECT_EQ(batch.Result(uncaptured).value_or(0), -1);
}

TEST_F(BatchTest, ClientMemoryOfEveryCallComesBack) {
  auto fill = Fn<void(Buffer&, size_t, char)>("fill_buffer");
  auto divmod = Fn<int(int, int, int*, int*)>("divmod");
  Buffer a = Buffer::Out(4);
  Buffer b = Buffer::Out(6);
  int quotient = 0;
  int remainder = 0;
  Batch batch = session_->NewBatch();
  batch.Add(fill, a, 4, 'a');
  BatchCall<int> division = batch.Add(divmod, 17, 5, &quotient, &remainder);
  batch.Add(fill, b, 6, 'b');
  ASSERT_OK(batch.Run());
  EXPECT_EQ(a.data, "aaaa");
  EXPECT_EQ(b.data, "bbbbbb");
  EXPECT_EQ(batch.Result(division).value_or(-1), 0);
  EXPECT_EQ(quotient, 3);
  EXPECT_EQ(remainder, 2);
}

TEST_F(BatchTest, LastingBlocksAreKeptPlacedAndReleasedByBatchedCalls) {
  // void increment(int* p), on a block kept in the worker.
  const uint64_t increment = Fn<void(int*)>("increment").raw().handle();
  auto int_block = [](int value) {
    v1::MemoryBlock block;
    block.set_data(std::string(reinterpret_cast<const char*>(&value), sizeof value));
    block.set_direction(v1::INOUT);
    return block;
  };
  auto increment_call = [&](const v1::MemoryBlock& block) {
    v1::Call call;
    call.set_function(increment);
    call.add_args()->mutable_pointer()->mutable_block()->set_block(0);
    *call.add_blocks() = block;
    return call;
  };
  v1::Request keep;
  v1::MemoryBlock kept_block = int_block(5);
  kept_block.set_keep(true);
  *keep.mutable_batch()->add_calls() = increment_call(kept_block);
  absl::StatusOr<v1::Response> kept = session_->Send(keep);
  ASSERT_OK(kept);
  ASSERT_EQ(kept->batch().results(0).kept_size(), 1);
  const v1::RemoteAddress address = kept->batch().results(0).kept(0).address();

  // Two calls on the kept memory in one batch, the second sees the first's increment
  // through the library's memory (its block is placed, and copied in from `data`).
  v1::Request placed;
  v1::MemoryBlock at_block = int_block(40);
  *at_block.mutable_at() = address;
  *placed.mutable_batch()->add_calls() = increment_call(at_block);
  *placed.mutable_batch()->add_calls() = increment_call(at_block);
  absl::StatusOr<v1::Response> incremented = session_->Send(placed);
  ASSERT_OK(incremented);
  ASSERT_EQ(incremented->batch().results_size(), 2);
  EXPECT_EQ(incremented->batch().results(1).blocks(0).data(), int_block(41).data());
  absl::StatusOr<int> in_worker =
      session_->Read<int>(RemotePtr(address.address(), address.generation()));
  ASSERT_OK(in_worker);
  EXPECT_EQ(*in_worker, 41);

  // Released by the first call of a batch: the second may no longer place a block there.
  v1::Request released;
  v1::Call release = increment_call(int_block(0));
  *release.add_release() = address;
  *released.mutable_batch()->add_calls() = release;
  *released.mutable_batch()->add_calls() = increment_call(at_block);
  absl::StatusOr<v1::Response> refused = session_->Send(released);
  EXPECT_THAT(refused, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ErrorOf(refused.status()).batch_index(), 1u);
}

TEST_F(BatchTest, TooManyCallsOrBlockBytesRefuseTheBatchAndNothingRuns) {
  Function<int()> counter = Fn<int()>("counter_next");
  Batch too_many = session_->NewBatch();
  for (int i = 0; i < 65; ++i) too_many.Add(counter);  // --max_batch_calls=64
  absl::Status refused = too_many.Run();
  EXPECT_THAT(refused, StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_TRUE(absl::StrContains(refused.message(), "65 calls, the limit is 64")) << refused;

  // Each call's 400 bytes fit --max_block_bytes=1000; the batch's 1200 do not.
  auto fill = Fn<void(Buffer&, size_t, char)>("fill_buffer");
  std::vector<Buffer> buffers(3, Buffer::Out(400));
  Batch heavy = session_->NewBatch();
  heavy.Add(counter);
  for (Buffer& buffer : buffers) heavy.Add(fill, buffer, 400, 'x');
  refused = heavy.Run();
  EXPECT_THAT(refused, StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(ErrorOf(refused).batch_index(), 3u);

  EXPECT_EQ(CounterNext(), 1);
  EXPECT_EQ(session_->info().max_batch_calls(), 64u);
}

TEST_F(BatchTest, AnArgumentTheClientCannotSendFailsRunBeforeAnythingIsSent) {
  Function<int()> counter = Fn<int()>("counter_next");
  // A lone surrogate is no Unicode text: the client cannot send it as a wchar_t string.
  Function<size_t(const std::u32string&)> length = Fn<size_t(const std::u32string&)>("wstr_len");
  Batch batch = session_->NewBatch();
  batch.Add(counter);
  batch.Add(length, std::u32string(1, char32_t{0xD800}));
  absl::Status refused = batch.Run();
  EXPECT_THAT(refused, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ErrorOf(refused).field(), "batch.calls[1].args[0]");
  EXPECT_EQ(CounterNext(), 1);
}

}  // namespace
}  // namespace ffibox

#include "server/broker/call_validation.h"

#include <optional>
#include <string>

#include "core/errors.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using ::ffibox::testing::ScalarType;

constexpr uint64_t kLiveGeneration = 3;

// A session's handles: `add` (int add(int, int)) and `fill` (void fill(char*, size_t)),
// resolved by name; `bound` (int bound(int)) resolved by address in the live generation;
// `stale` resolved by address in an earlier one.
class CallValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    add_ = Resolve("add", {v1::INT, v1::INT}, 0);
    fill_ = Resolve("fill", {v1::POINTER, v1::SIZE_T}, 0);
    bound_ = Resolve("bound", {v1::INT}, kLiveGeneration);
    stale_ = Resolve("stale", {v1::INT}, kLiveGeneration - 1);
    context_.handles = &handles_;
    context_.live_generation = kLiveGeneration;
    context_.default_timeout = absl::Seconds(2);
    context_.max_timeout = absl::Seconds(60);
    context_.limits = &limits_;
  }

  uint64_t Resolve(const std::string& symbol, std::initializer_list<v1::Scalar> params,
                   uint64_t generation) {
    HandleTable::Function function;
    function.library = generation == 0 ? 1 : 0;
    function.symbol = symbol;
    *function.signature.mutable_result() = ScalarType(v1::INT);
    for (v1::Scalar param : params) *function.signature.add_params() = ScalarType(param);
    function.generation = generation;
    absl::StatusOr<uint64_t> handle = handles_.AddFunction(function);
    EXPECT_OK(handle);
    handles_.RecordOutcome(v1::Request::kResolveFunction, *handle, true);
    return *handle;
  }

  v1::Call Add(int a, int b) const {
    v1::Call call;
    call.set_function(add_);
    call.add_args()->set_int_value(a);
    call.add_args()->set_int_value(b);
    return call;
  }

  // fill(buffer, size) with an OUT block of `size` bytes.
  v1::Call Fill(uint64_t size) const {
    v1::Call call;
    call.set_function(fill_);
    call.add_args()->mutable_pointer()->mutable_block()->set_block(0);
    call.add_args()->set_uint_value(size);
    v1::MemoryBlock* block = call.add_blocks();
    block->set_size(size);
    block->set_direction(v1::OUT);
    return call;
  }

  HandleTable handles_{HandleTable::Limits()};
  TypeLimits limits_;
  CallContext context_;
  uint64_t add_ = 0, fill_ = 0, bound_ = 0, stale_ = 0;
};

TEST_F(CallValidationTest, ASingleCallGetsItsFunctionsLabelDeadlineAndExpectedBlocks) {
  PendingRequest pending;
  ASSERT_OK(ValidateCallRequest(Fill(16), context_, &pending));
  EXPECT_EQ(pending.label, "fill");
  EXPECT_EQ(pending.timeout, absl::Seconds(2));
  EXPECT_EQ(pending.call.returned_block_sizes, std::vector<uint64_t>{16});
  EXPECT_EQ(pending.required_generation, 0u);

  v1::Call unknown = Add(1, 2);
  unknown.set_function(99);
  EXPECT_THAT(ValidateCallRequest(unknown, context_, &pending), StatusIs(v1::NOT_FOUND));
}

TEST_F(CallValidationTest, ABatchIsDescribedByItsCallsCountAndTheBlocksOfThoseThatSendSome) {
  v1::Batch batch;
  *batch.add_calls() = Add(1, 2);
  *batch.add_calls() = Fill(8);
  *batch.add_calls() = Add(3, 4);
  *batch.add_calls() = Fill(32);
  PendingRequest pending;
  ASSERT_OK(ValidateBatchRequest(batch, context_, &pending));
  EXPECT_EQ(pending.batch_calls, 4u);
  ASSERT_EQ(pending.batch_blocks.size(), 2u);
  EXPECT_EQ(pending.batch_blocks[0].first, 1u);
  EXPECT_EQ(pending.batch_blocks[0].second.returned_block_sizes, std::vector<uint64_t>{8});
  EXPECT_EQ(pending.batch_blocks[1].first, 3u);
  EXPECT_EQ(pending.batch_blocks[1].second.returned_block_sizes, std::vector<uint64_t>{32});
  EXPECT_EQ(pending.label, "batch of 4 calls: add, fill");
}

TEST_F(CallValidationTest, CallsNamingTheirFunctionByItsResolveRequestGetItsHandle) {
  handles_.NoteResolveRequest(41, fill_);
  v1::Request request;
  *request.mutable_call() = Add(1, 2);
  // A call that names its function by handle goes on as it came.
  EXPECT_FALSE(NamesRequestedFunctions(request));

  request.mutable_call()->clear_function();
  request.mutable_call()->set_function_request(41);
  ASSERT_TRUE(NamesRequestedFunctions(request));
  v1::Request named = request;
  ASSERT_OK(NameRequestedFunctions(named, handles_));
  EXPECT_EQ(named.call().function(), fill_);
  EXPECT_EQ(named.call().function_request(), 0u);
  EXPECT_EQ(named.call().args_size(), 2);

  request.mutable_call()->set_function(add_);
  // The call's shape check, which the worker runs too, refuses a request id: only the broker
  // knows what it names.
  PendingRequest pending;
  absl::Status unnamed = ValidateCallRequest(request.call(), context_, &pending);
  EXPECT_THAT(unnamed, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(unnamed).field(), "call.function_request");
  absl::Status both = NameRequestedFunctions(request, handles_);
  EXPECT_THAT(both, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(both).field(), "call.function_request");

  v1::Request batch;
  for (int i = 0; i < 3; ++i) *batch.mutable_batch()->add_calls() = Add(i, i);
  EXPECT_FALSE(NamesRequestedFunctions(batch));
  batch.mutable_batch()->mutable_calls(1)->clear_function();
  batch.mutable_batch()->mutable_calls(1)->set_function_request(41);
  ASSERT_TRUE(NamesRequestedFunctions(batch));
  v1::Request named_batch = batch;
  ASSERT_OK(NameRequestedFunctions(named_batch, handles_));
  EXPECT_EQ(named_batch.batch().calls(0).function(), add_);
  EXPECT_EQ(named_batch.batch().calls(1).function(), fill_);
  EXPECT_EQ(named_batch.batch().calls(1).function_request(), 0u);

  batch.mutable_batch()->mutable_calls(2)->clear_function();
  batch.mutable_batch()->mutable_calls(2)->set_function_request(40);
  absl::Status unknown = NameRequestedFunctions(batch, handles_);
  EXPECT_THAT(unknown, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(unknown).batch_index(), 2u);
  EXPECT_EQ(ToProtoError(unknown).message().rfind("batch.calls[2]", 0), 0u) << unknown;
}

TEST_F(CallValidationTest, EachCallOfABatchIsCheckedAsASingleCallAndNamedByItsIndex) {
  v1::Batch batch;
  for (int i = 0; i < 4; ++i) *batch.add_calls() = Add(i, i);
  PendingRequest pending;

  batch.mutable_calls(2)->mutable_args()->RemoveLast();
  absl::Status arguments = ValidateBatchRequest(batch, context_, &pending);
  EXPECT_THAT(arguments, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(arguments).field(), "batch.calls[2].args");
  EXPECT_EQ(ToProtoError(arguments).batch_index(), 2u);
  *batch.mutable_calls(2) = Add(2, 2);

  batch.mutable_calls(1)->set_function(99);
  absl::Status unknown = ValidateBatchRequest(batch, context_, &pending);
  EXPECT_THAT(unknown, StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(ToProtoError(unknown).batch_index(), 1u);
  EXPECT_EQ(ToProtoError(unknown).message().rfind("batch.calls[1]", 0), 0u) << unknown;
  *batch.mutable_calls(1) = Add(1, 1);

  batch.mutable_calls(3)->set_timeout_ms(61000);
  absl::Status deadline = ValidateBatchRequest(batch, context_, &pending);
  EXPECT_THAT(deadline, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(deadline).field(), "batch.calls[3].timeout_ms");
  batch.mutable_calls(3)->set_timeout_ms(0);

  batch.mutable_calls(0)->set_function(stale_);
  absl::Status stale = ValidateBatchRequest(batch, context_, &pending);
  EXPECT_THAT(stale, StatusIs(v1::STALE_HANDLE));
  EXPECT_EQ(ToProtoError(stale).batch_index(), 0u);
}

TEST_F(CallValidationTest, ABatchOfFunctionsBoundToTheLiveWorkerRequiresItsGeneration) {
  v1::Batch batch;
  *batch.add_calls() = Add(1, 2);
  v1::Call* bound = batch.add_calls();
  bound->set_function(bound_);
  bound->add_args()->set_int_value(5);
  PendingRequest pending;
  ASSERT_OK(ValidateBatchRequest(batch, context_, &pending));
  EXPECT_EQ(pending.required_generation, kLiveGeneration);

  context_.live_generation = 0;  // that worker died
  EXPECT_THAT(ValidateBatchRequest(batch, context_, &pending), StatusIs(v1::STALE_HANDLE));
}

TEST_F(CallValidationTest, EmptyOversizedAndOverweightBatchesAreRefused) {
  PendingRequest pending;
  v1::Batch batch;
  EXPECT_THAT(ValidateBatchRequest(batch, context_, &pending), StatusIs(v1::INVALID_ARGUMENT));

  limits_.max_batch_calls = 3;
  for (int i = 0; i < 4; ++i) *batch.add_calls() = Add(i, i);
  EXPECT_THAT(ValidateBatchRequest(batch, context_, &pending), StatusIs(v1::RESOURCE_EXHAUSTED));

  // Each call's blocks fit the per-request limit; the batch's together do not.
  limits_.max_block_bytes = 100;
  batch.Clear();
  for (int i = 0; i < 3; ++i) *batch.add_calls() = Fill(40);
  absl::Status heavy = ValidateBatchRequest(batch, context_, &pending);
  EXPECT_THAT(heavy, StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(ToProtoError(heavy).batch_index(), 2u);
}

TEST_F(CallValidationTest, ABatchsDeadlineIsItsOwnOrTheSumOfItsCallsCapped) {
  v1::Batch batch;
  *batch.add_calls() = Add(1, 2);  // the session's 2 s
  *batch.add_calls() = Add(1, 2);
  batch.mutable_calls(1)->set_timeout_ms(500);
  PendingRequest pending;
  ASSERT_OK(ValidateBatchRequest(batch, context_, &pending));
  EXPECT_EQ(pending.timeout, absl::Milliseconds(2500));

  for (int i = 0; i < 40; ++i) *batch.add_calls() = Add(i, i);  // 82.5 s in all
  ASSERT_OK(ValidateBatchRequest(batch, context_, &pending));
  EXPECT_EQ(pending.timeout, absl::Seconds(60));

  batch.set_timeout_ms(100);
  ASSERT_OK(ValidateBatchRequest(batch, context_, &pending));
  EXPECT_EQ(pending.timeout, absl::Milliseconds(100));

  batch.set_timeout_ms(61000);
  absl::Status too_long = ValidateBatchRequest(batch, context_, &pending);
  EXPECT_THAT(too_long, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(too_long).field(), "batch.timeout_ms");
}

}  // namespace
}  // namespace ffibox

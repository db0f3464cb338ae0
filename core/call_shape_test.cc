#include "core/call_shape.h"

#include <functional>
#include <string>

#include "core/errors.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using ::ffibox::testing::ScalarType;

// int f(int, double)
v1::Signature TwoParams() {
  v1::Signature signature;
  *signature.mutable_result() = ScalarType(v1::INT);
  *signature.add_params() = ScalarType(v1::INT);
  *signature.add_params() = ScalarType(v1::DOUBLE);
  return signature;
}

// int printf(const char*, ...)
v1::Signature Variadic() {
  v1::Signature signature;
  *signature.mutable_result() = ScalarType(v1::INT);
  *signature.add_params() = ScalarType(v1::CSTRING);
  signature.set_variadic(true);
  return signature;
}

v1::Call CallWithArgs(int count) {
  v1::Call call;
  call.set_function(1);
  for (int i = 0; i < count; ++i) call.add_args()->set_int_value(i);
  return call;
}

std::string FieldOf(const absl::Status& status) { return ToProtoError(status).field(); }

TEST(ValidateCallShape, MatchingCallPasses) {
  EXPECT_TRUE(ValidateCallShape(CallWithArgs(2), TwoParams(), TypeLimits()).ok());
}

TEST(ValidateCallShape, ArgumentCountMismatchSaysHowManyWereExpected) {
  absl::Status status = ValidateCallShape(CallWithArgs(1), TwoParams(), TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "call.args");
  EXPECT_NE(status.message().find("expected 2"), absl::string_view::npos) << status;
  status = ValidateCallShape(CallWithArgs(3), TwoParams(), TypeLimits());
  EXPECT_NE(status.message().find("expected 2"), absl::string_view::npos) << status;
}

TEST(ValidateCallShape, VariadicArgumentsCountTowardsTheExpectedArguments) {
  v1::Call call = CallWithArgs(2);
  *call.add_variadic_types() = ScalarType(v1::INT);
  EXPECT_TRUE(ValidateCallShape(call, Variadic(), TypeLimits()).ok());
  *call.add_variadic_types() = ScalarType(v1::DOUBLE);
  absl::Status status = ValidateCallShape(call, Variadic(), TypeLimits());
  EXPECT_EQ(FieldOf(status), "call.args");
  EXPECT_NE(status.message().find("expected 3"), absl::string_view::npos) << status;
}

TEST(ValidateCallShape, VariadicTypesOnANonVariadicFunctionAreRefused) {
  v1::Call call = CallWithArgs(3);
  *call.add_variadic_types() = ScalarType(v1::INT);
  absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "call.variadic_types");
}

TEST(ValidateCallShape, VoidVariadicTypeIsRefused) {
  v1::Call call = CallWithArgs(2);
  *call.add_variadic_types() = ScalarType(v1::VOID);
  absl::Status status = ValidateCallShape(call, Variadic(), TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "call.variadic_types[0]");
}

TEST(ValidateCallShape, TooManyArgumentsInAllAreRefused) {
  TypeLimits limits;
  limits.max_args = 3;
  v1::Call call = CallWithArgs(4);
  for (int i = 0; i < 3; ++i) *call.add_variadic_types() = ScalarType(v1::INT);
  absl::Status status = ValidateCallShape(call, Variadic(), limits);
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "call.variadic_types");
}

TEST(ValidateCallShape, TooManyBlocksIsResourceExhausted) {
  TypeLimits limits;
  limits.max_blocks = 2;
  v1::Call call = CallWithArgs(2);
  for (int i = 0; i < 3; ++i) call.add_blocks()->set_size(1);
  EXPECT_THAT(ValidateCallShape(call, TwoParams(), limits), StatusIs(v1::RESOURCE_EXHAUSTED));
  call.mutable_blocks()->RemoveLast();
  EXPECT_TRUE(ValidateCallShape(call, TwoParams(), limits).ok());
}

TEST(ValidateCallShape, TooManyBytesIsResourceExhausted) {
  TypeLimits limits;
  limits.max_block_bytes = 100;
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_size(60);
  call.add_blocks()->set_data(std::string(40, 'x'));  // size 0: len(data) counts
  EXPECT_TRUE(ValidateCallShape(call, TwoParams(), limits).ok());
  call.add_blocks()->set_size(1);
  EXPECT_THAT(ValidateCallShape(call, TwoParams(), limits), StatusIs(v1::RESOURCE_EXHAUSTED));
}

TEST(ValidateCallShape, HugeBlockSizesDoNotWrapTheTotal) {
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_size(~uint64_t{0});
  call.add_blocks()->set_size(2);
  EXPECT_THAT(ValidateCallShape(call, TwoParams(), TypeLimits()), StatusIs(v1::RESOURCE_EXHAUSTED));
  v1::Call second = CallWithArgs(2);
  second.add_blocks()->set_size(8);
  second.add_blocks()->set_size(~uint64_t{0} - 4);
  EXPECT_THAT(ValidateCallShape(second, TwoParams(), TypeLimits()),
              StatusIs(v1::RESOURCE_EXHAUSTED));
}

TEST(ValidateCallShape, DataLongerThanSizeNamesTheBlock) {
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_size(4);
  v1::MemoryBlock* block = call.add_blocks();
  block->set_size(2);
  block->set_data("abc");
  absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "call.blocks[1].data");
}

// A block in the same-host channel's shared area (MemoryBlock.shared_offset).
v1::MemoryBlock* AddSharedBlock(v1::Call& call, uint64_t offset, uint64_t size) {
  v1::MemoryBlock* block = call.add_blocks();
  block->set_size(size);
  block->set_shared_offset(offset);
  block->set_direction(v1::INOUT);
  return block;
}

TEST(ValidateCallShape, SharedBlocksInsideTheAreaPassAndDoNotCountAsMessageBytes) {
  TypeLimits limits;
  limits.max_block_bytes = 100;
  v1::Call call = CallWithArgs(2);
  AddSharedBlock(call, 4096, 4096);
  AddSharedBlock(call, 0, 4096);  // in any order, touching is not overlapping
  call.add_blocks()->set_size(100);
  EXPECT_OK(ValidateCallShape(call, TwoParams(), limits, 8192));
  // A lasting block's bytes may travel through the area too.
  v1::Call lasting = CallWithArgs(2);
  AddSharedBlock(lasting, 0, 4096)->set_keep(true);
  AddSharedBlock(lasting, 4096, 4096)->mutable_at()->set_address(1 << 20);
  lasting.mutable_blocks(1)->set_watch(true);
  EXPECT_OK(ValidateCallShape(lasting, TwoParams(), limits, 8192));
}

TEST(ValidateCallShape, SharedBlocksOffTheChannelOrBadlyPlacedNameTheField) {
  struct Case {
    const char* what;
    uint64_t offset;
    uint64_t size;
    uint64_t area;
    std::function<void(v1::MemoryBlock*)> change;
  };
  const Case cases[] = {
      {"no shared area (the stream)", 0, 16, 0, nullptr},
      {"not 16-aligned", 8, 16, 4096, nullptr},
      {"past the area", 4096 - 16, 32, 4096, nullptr},
      {"an offset past the area", 8192, 16, 4096, nullptr},
      {"a size that wraps", 16, ~uint64_t{0} - 8, 4096, nullptr},
      {"no size", 0, 0, 4096, nullptr},
      {"with data", 0, 16, 4096, [](v1::MemoryBlock* b) { b->set_data("x"); }},
  };
  for (const Case& c : cases) {
    v1::Call call = CallWithArgs(2);
    call.add_blocks()->set_size(8);
    v1::MemoryBlock* block = AddSharedBlock(call, c.offset, c.size);
    if (c.change) c.change(block);
    absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits(), c.area);
    EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT)) << c.what;
    EXPECT_EQ(FieldOf(status), "call.blocks[1].shared_offset") << c.what << ": " << status;
  }
}

TEST(ValidateCallShape, OverlappingSharedBlocksAreRefused) {
  v1::Call call = CallWithArgs(2);
  AddSharedBlock(call, 1024, 2048);
  AddSharedBlock(call, 0, 1040);  // its last 16 bytes are block 0's first
  absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits(), 4096);
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "call.blocks[0].shared_offset") << status;
  v1::Call same = CallWithArgs(2);
  AddSharedBlock(same, 0, 16);
  AddSharedBlock(same, 0, 16);
  EXPECT_THAT(ValidateCallShape(same, TwoParams(), TypeLimits(), 4096),
              StatusIs(v1::INVALID_ARGUMENT));
}

TEST(ValidateCallShape, UnknownDirectionNamesTheField) {
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_direction(static_cast<v1::Direction>(7));
  absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits());
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(status), "call.blocks[0].direction");
}

TEST(ValidateCallShape, RelocationCountAcrossBlocksIsLimited) {
  TypeLimits limits;
  limits.max_relocations = 3;
  v1::Call call = CallWithArgs(2);
  v1::MemoryBlock* first = call.add_blocks();
  first->set_size(64);
  first->add_relocations();
  first->add_relocations();
  v1::MemoryBlock* second = call.add_blocks();
  second->set_size(64);
  second->add_relocations();
  EXPECT_TRUE(ValidateCallShape(call, TwoParams(), limits).ok());
  second->add_relocations();
  EXPECT_THAT(ValidateCallShape(call, TwoParams(), limits), StatusIs(v1::RESOURCE_EXHAUSTED));
}

TEST(ValidateCallShape, LastingBlocksAreKeptOrPlacedNotBothOnlyTheyAreWatchedReleasesAreLimited) {
  TypeLimits limits;
  limits.max_blocks = 2;
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_keep(true);
  v1::MemoryBlock* placed = call.add_blocks();
  placed->mutable_at()->set_address(0x1000);
  EXPECT_TRUE(ValidateCallShape(call, TwoParams(), limits).ok());
  placed->set_keep(true);
  absl::Status both = ValidateCallShape(call, TwoParams(), limits);
  EXPECT_THAT(both, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(both), "call.blocks[1]");
  placed->set_keep(false);
  placed->set_watch(true);
  call.mutable_blocks(0)->set_watch(true);
  EXPECT_TRUE(ValidateCallShape(call, TwoParams(), limits).ok());
  call.mutable_blocks(0)->set_keep(false);
  absl::Status watched = ValidateCallShape(call, TwoParams(), limits);
  EXPECT_THAT(watched, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(watched), "call.blocks[0].watch");
  call.mutable_blocks(0)->set_keep(true);
  for (int i = 0; i < 3; ++i) call.add_release()->set_address(0x2000 + i);
  EXPECT_THAT(ValidateCallShape(call, TwoParams(), limits), StatusIs(v1::RESOURCE_EXHAUSTED));
}

TEST(ValidateBatchShape, ABatchHasOneToMaxBatchCallsCalls) {
  TypeLimits limits;
  limits.max_batch_calls = 3;
  v1::Batch batch;
  absl::Status empty = ValidateBatchShape(batch, limits);
  EXPECT_THAT(empty, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(empty), "batch.calls");
  for (int i = 0; i < 3; ++i) *batch.add_calls() = CallWithArgs(2);
  EXPECT_TRUE(ValidateBatchShape(batch, limits).ok());
  *batch.add_calls() = CallWithArgs(2);
  absl::Status too_many = ValidateBatchShape(batch, limits);
  EXPECT_THAT(too_many, StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_NE(too_many.message().find("4 calls, the limit is 3"), absl::string_view::npos)
      << too_many;
}

TEST(ValidateBatchShape, BlocksOfAllCallsCountAgainstOneByteLimitNamingTheCall) {
  TypeLimits limits;
  limits.max_block_bytes = 100;
  v1::Batch batch;
  for (int i = 0; i < 3; ++i) {
    v1::Call* call = batch.add_calls();
    *call = CallWithArgs(2);
    call->add_blocks()->set_size(40);  // each call alone fits
  }
  absl::Status status = ValidateBatchShape(batch, limits);
  EXPECT_THAT(status, StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_EQ(ToProtoError(status).batch_index(), 2u);
  EXPECT_NE(status.message().find("batch.calls[2].blocks"), absl::string_view::npos) << status;
  batch.mutable_calls(2)->mutable_blocks(0)->set_size(20);
  EXPECT_TRUE(ValidateBatchShape(batch, limits).ok());
}

TEST(InBatch, NamesTheCallByItsIndexInFieldMessageAndBatchIndex) {
  absl::Status status = InBatch(ValidateCallShape(CallWithArgs(1), TwoParams(), TypeLimits()), 7);
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  v1::Error error = ToProtoError(status);
  EXPECT_EQ(error.field(), "batch.calls[7].args");
  EXPECT_EQ(error.message().rfind("batch.calls[7].args: expected 2", 0), 0u) << error.message();
  EXPECT_TRUE(error.has_batch_index());
  EXPECT_EQ(error.batch_index(), 7u);

  // An error that names no field keeps its message after the call's name.
  v1::Error memory = ToProtoError(InBatch(ErrorStatus(v1::MEMORY_FAULT, "unreadable"), 0));
  EXPECT_EQ(memory.code(), v1::MEMORY_FAULT);
  EXPECT_EQ(memory.message(), "batch.calls[0]: unreadable");
  EXPECT_EQ(memory.field(), "");
  EXPECT_TRUE(memory.has_batch_index());
  EXPECT_TRUE(InBatch(absl::OkStatus(), 3).ok());
}

}  // namespace
}  // namespace ffibox

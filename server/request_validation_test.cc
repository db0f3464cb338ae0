#include "server/request_validation.h"

#include <string>

#include "core/errors.h"
#include "gtest/gtest.h"
#include "server/pending_request.h"

namespace ffibox {
namespace {

v1::Type Scalar(v1::Scalar scalar) {
  v1::Type type;
  type.set_scalar(scalar);
  return type;
}

// int f(int, double)
v1::Signature TwoParams() {
  v1::Signature signature;
  *signature.mutable_result() = Scalar(v1::INT);
  *signature.add_params() = Scalar(v1::INT);
  *signature.add_params() = Scalar(v1::DOUBLE);
  return signature;
}

// int printf(const char*, ...)
v1::Signature Variadic() {
  v1::Signature signature;
  *signature.mutable_result() = Scalar(v1::INT);
  *signature.add_params() = Scalar(v1::CSTRING);
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

TEST(ValidateLoadLibrary, AcceptsASoname) {
  v1::LoadLibrary load;
  load.set_path("libm.so.6");
  EXPECT_TRUE(ValidateLoadLibrary(load).ok());
}

TEST(ValidateLoadLibrary, EmptyPathIsInvalidArgumentNamingThePath) {
  v1::LoadLibrary load;
  absl::Status status = ValidateLoadLibrary(load);
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "load_library.path");
}

TEST(ValidateLoadLibrary, NulInPathIsInvalidArgument) {
  v1::LoadLibrary load;
  load.set_path(std::string("/usr/lib/libm.so\0evil", 21));
  absl::Status status = ValidateLoadLibrary(load);
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "load_library.path");
  EXPECT_NE(status.message().find("NUL"), absl::string_view::npos) << status;
}

TEST(ValidateLoadLibrary, OverLongPathIsInvalidArgument) {
  v1::LoadLibrary load;
  load.set_path("/" + std::string(kMaxPathBytes, 'a'));
  absl::Status status = ValidateLoadLibrary(load);
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "load_library.path");
  load.set_path(std::string(kMaxPathBytes, 'a'));
  EXPECT_TRUE(ValidateLoadLibrary(load).ok());
}

TEST(ValidateResolveFunction, OverLongSymbolIsInvalidArgument) {
  v1::ResolveFunction resolve;
  resolve.set_library(1);
  resolve.set_symbol(std::string(kMaxSymbolBytes + 1, 's'));
  absl::Status status = ValidateResolveFunction(resolve, TypeLimits());
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "resolve_function.symbol");
}

TEST(ValidateResolveFunction, EmptyAndNulSymbolsAreInvalidArgument) {
  v1::ResolveFunction resolve;
  resolve.set_library(1);
  EXPECT_EQ(FieldOf(ValidateResolveFunction(resolve, TypeLimits())), "resolve_function.symbol");
  resolve.set_symbol(std::string("cos\0x", 5));
  EXPECT_EQ(FieldOf(ValidateResolveFunction(resolve, TypeLimits())), "resolve_function.symbol");
}

TEST(ValidateResolveFunction, BadSignatureNamesTheParameter) {
  v1::ResolveFunction resolve;
  resolve.set_library(1);
  resolve.set_symbol("cos");
  *resolve.mutable_signature() = TwoParams();
  EXPECT_TRUE(ValidateResolveFunction(resolve, TypeLimits()).ok());
  resolve.mutable_signature()->add_params();  // kind unset
  absl::Status status = ValidateResolveFunction(resolve, TypeLimits());
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status).rfind("resolve_function.signature.params[2]", 0), 0u)
      << FieldOf(status);
}

TEST(ValidateCallShape, MatchingCallPasses) {
  EXPECT_TRUE(ValidateCallShape(CallWithArgs(2), TwoParams(), TypeLimits()).ok());
}

TEST(ValidateCallShape, ArgumentCountMismatchSaysHowManyWereExpected) {
  absl::Status status = ValidateCallShape(CallWithArgs(1), TwoParams(), TypeLimits());
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "call.args");
  EXPECT_NE(status.message().find("expected 2"), absl::string_view::npos) << status;
  status = ValidateCallShape(CallWithArgs(3), TwoParams(), TypeLimits());
  EXPECT_NE(status.message().find("expected 2"), absl::string_view::npos) << status;
}

TEST(ValidateCallShape, VariadicArgumentsCountTowardsTheExpectedArguments) {
  v1::Call call = CallWithArgs(2);
  *call.add_variadic_types() = Scalar(v1::INT);
  EXPECT_TRUE(ValidateCallShape(call, Variadic(), TypeLimits()).ok());
  *call.add_variadic_types() = Scalar(v1::DOUBLE);
  absl::Status status = ValidateCallShape(call, Variadic(), TypeLimits());
  EXPECT_EQ(FieldOf(status), "call.args");
  EXPECT_NE(status.message().find("expected 3"), absl::string_view::npos) << status;
}

TEST(ValidateCallShape, VariadicTypesOnANonVariadicFunctionAreRefused) {
  v1::Call call = CallWithArgs(3);
  *call.add_variadic_types() = Scalar(v1::INT);
  absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits());
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "call.variadic_types");
}

TEST(ValidateCallShape, VoidVariadicTypeIsRefused) {
  v1::Call call = CallWithArgs(2);
  *call.add_variadic_types() = Scalar(v1::VOID);
  absl::Status status = ValidateCallShape(call, Variadic(), TypeLimits());
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "call.variadic_types[0]");
}

TEST(ValidateCallShape, TooManyArgumentsInAllAreRefused) {
  TypeLimits limits;
  limits.max_args = 3;
  v1::Call call = CallWithArgs(4);
  for (int i = 0; i < 3; ++i) *call.add_variadic_types() = Scalar(v1::INT);
  absl::Status status = ValidateCallShape(call, Variadic(), limits);
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "call.variadic_types");
}

TEST(ValidateCallShape, TooManyBlocksIsResourceExhausted) {
  TypeLimits limits;
  limits.max_blocks = 2;
  v1::Call call = CallWithArgs(2);
  for (int i = 0; i < 3; ++i) call.add_blocks()->set_size(1);
  EXPECT_EQ(ErrorCodeOf(ValidateCallShape(call, TwoParams(), limits)), v1::RESOURCE_EXHAUSTED);
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
  EXPECT_EQ(ErrorCodeOf(ValidateCallShape(call, TwoParams(), limits)), v1::RESOURCE_EXHAUSTED);
}

TEST(ValidateCallShape, HugeBlockSizesDoNotWrapTheTotal) {
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_size(~uint64_t{0});
  call.add_blocks()->set_size(2);
  EXPECT_EQ(ErrorCodeOf(ValidateCallShape(call, TwoParams(), TypeLimits())),
            v1::RESOURCE_EXHAUSTED);
  v1::Call second = CallWithArgs(2);
  second.add_blocks()->set_size(8);
  second.add_blocks()->set_size(~uint64_t{0} - 4);
  EXPECT_EQ(ErrorCodeOf(ValidateCallShape(second, TwoParams(), TypeLimits())),
            v1::RESOURCE_EXHAUSTED);
}

TEST(ValidateCallShape, DataLongerThanSizeNamesTheBlock) {
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_size(4);
  v1::MemoryBlock* block = call.add_blocks();
  block->set_size(2);
  block->set_data("abc");
  absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits());
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
  EXPECT_EQ(FieldOf(status), "call.blocks[1]");
}

TEST(ValidateCallShape, UnknownDirectionNamesTheField) {
  v1::Call call = CallWithArgs(2);
  call.add_blocks()->set_direction(static_cast<v1::Direction>(7));
  absl::Status status = ValidateCallShape(call, TwoParams(), TypeLimits());
  EXPECT_EQ(ErrorCodeOf(status), v1::INVALID_ARGUMENT);
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
  EXPECT_EQ(ErrorCodeOf(ValidateCallShape(call, TwoParams(), limits)), v1::RESOURCE_EXHAUSTED);
}

TEST(ReturnedBlockSizes, InBlocksAreNotReturnedAndSizeZeroMeansTheDataLength) {
  v1::Call call;
  v1::MemoryBlock* in = call.add_blocks();
  in->set_direction(v1::IN);
  in->set_size(8);
  v1::MemoryBlock* out = call.add_blocks();
  out->set_direction(v1::OUT);
  out->set_size(4);
  v1::MemoryBlock* inout = call.add_blocks();
  inout->set_direction(v1::INOUT);
  inout->set_data("abc");
  v1::MemoryBlock* unspecified = call.add_blocks();
  unspecified->set_size(16);
  unspecified->set_data("x");
  v1::MemoryBlock* empty = call.add_blocks();
  empty->set_direction(v1::OUT);
  EXPECT_EQ(ReturnedBlockSizes(call),
            (std::vector<uint64_t>{PendingRequest::kNotReturned, 4, 3, 16, 0}));
}

}  // namespace
}  // namespace ffibox

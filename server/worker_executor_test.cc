// WorkerExecutor in-process: functions resolved by address and typed remote memory.
#include "server/worker_executor.h"

#include <cstdint>
#include <string>

#include "core/errors.h"
#include "gtest/gtest.h"

extern "C" int add_three(int v) { return v + 3; }

namespace ffibox {
namespace {

constexpr uint64_t kGeneration = 2;

v1::Type Scalar(v1::Scalar scalar) {
  v1::Type type;
  type.set_scalar(scalar);
  return type;
}

v1::Response ExecuteOne(WorkerExecutor* executor, const v1::Request& request, uint64_t handle = 0) {
  internal::WorkerRequest wrapped;
  wrapped.set_id(1);
  wrapped.set_handle(handle);
  *wrapped.mutable_request() = request;
  return executor->Execute(wrapped);
}

v1::Request ResolveAt(uint64_t address, uint64_t generation) {
  v1::Request request;
  v1::ResolveFunction* resolve = request.mutable_resolve_function();
  resolve->mutable_address()->set_address(address);
  resolve->mutable_address()->set_generation(generation);
  *resolve->mutable_signature()->mutable_result() = Scalar(v1::INT);
  *resolve->mutable_signature()->add_params() = Scalar(v1::INT);
  return request;
}

TEST(WorkerExecutor, FunctionPointerResolvedByAddressCanBeCalled) {
  WorkerExecutor executor(kGeneration);
  const uint64_t address = reinterpret_cast<uintptr_t>(&add_three);
  v1::Response resolved = ExecuteOne(&executor, ResolveAt(address, kGeneration), 5);
  ASSERT_FALSE(resolved.has_error()) << resolved.error().message();
  EXPECT_EQ(resolved.function().function(), 5u);
  v1::Request call;
  call.mutable_call()->set_function(5);
  call.mutable_call()->add_args()->set_int_value(4);
  v1::Response result = ExecuteOne(&executor, call);
  ASSERT_FALSE(result.has_error()) << result.error().message();
  EXPECT_EQ(result.call().result().int_value(), 7);
}

TEST(WorkerExecutor, AddressOfAnotherGenerationIsStale) {
  WorkerExecutor executor(kGeneration);
  v1::Response resolved =
      ExecuteOne(&executor, ResolveAt(reinterpret_cast<uintptr_t>(&add_three), kGeneration - 1), 5);
  EXPECT_EQ(resolved.error().code(), v1::STALE_HANDLE);
}

TEST(WorkerExecutor, TypedWriteThenTypedReadRoundTrips) {
  WorkerExecutor executor(kGeneration);
  alignas(8) double target = 0;
  v1::Request write;
  write.mutable_write_memory()->mutable_address()->set_address(
      reinterpret_cast<uintptr_t>(&target));
  write.mutable_write_memory()->mutable_address()->set_generation(kGeneration);
  *write.mutable_write_memory()->mutable_type() = Scalar(v1::DOUBLE);
  write.mutable_write_memory()->mutable_value()->set_float_value(2.5);
  v1::Response written = ExecuteOne(&executor, write);
  ASSERT_FALSE(written.has_error()) << written.error().message();
  EXPECT_EQ(target, 2.5);

  v1::Request read;
  read.mutable_read_memory()->mutable_address()->set_address(reinterpret_cast<uintptr_t>(&target));
  read.mutable_read_memory()->mutable_address()->set_generation(kGeneration);
  *read.mutable_read_memory()->mutable_type() = Scalar(v1::DOUBLE);
  v1::Response value = ExecuteOne(&executor, read);
  ASSERT_FALSE(value.has_error()) << value.error().message();
  EXPECT_TRUE(value.memory().data().empty());
  EXPECT_EQ(value.memory().value().float_value(), 2.5);

  // A string value would dangle once the request ends: refused.
  *write.mutable_write_memory()->mutable_type() = Scalar(v1::CSTRING);
  write.mutable_write_memory()->mutable_value()->set_bytes_value("x");
  EXPECT_EQ(ExecuteOne(&executor, write).error().code(), v1::INVALID_ARGUMENT);
  // An unmapped address is a fault, not a crash.
  read.mutable_read_memory()->mutable_address()->set_address(16);
  EXPECT_EQ(ExecuteOne(&executor, read).error().code(), v1::MEMORY_FAULT);
}

}  // namespace
}  // namespace ffibox

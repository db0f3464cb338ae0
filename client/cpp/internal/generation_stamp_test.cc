#include "client/cpp/internal/generation_stamp.h"

#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

v1::Value RemotePointer(uint64_t address, uint64_t generation) {
  v1::Value value;
  value.mutable_pointer()->mutable_remote()->set_address(address);
  value.mutable_pointer()->mutable_remote()->set_generation(generation);
  return value;
}

TEST(StampGenerationTest, AddressesWithoutAGenerationGetTheResponses) {
  v1::Response response;
  response.set_generation(3);
  v1::CallResult* call = response.mutable_call();
  *call->mutable_result() = RemotePointer(0x1000, 0);
  call->add_kept()->mutable_address()->set_address(0x2000);
  StampGeneration(&response);
  EXPECT_EQ(call->result().pointer().remote().generation(), 3u);
  EXPECT_EQ(call->kept(0).address().generation(), 3u);
}

TEST(StampGenerationTest, AddressesThatCarryAGenerationKeepIt) {
  v1::Response response;
  response.set_generation(3);
  response.mutable_function()->mutable_address()->set_address(0x1000);
  response.mutable_function()->mutable_address()->set_generation(2);
  StampGeneration(&response);
  EXPECT_EQ(response.function().address().generation(), 2u);
}

TEST(StampGenerationTest, PointersNestedInAggregatesAndCallbackArgumentsAreStamped) {
  v1::Response response;
  response.set_generation(5);
  v1::Value* arg = response.mutable_callback_invoke()->add_args();
  v1::Value* inner = arg->mutable_aggregate()->add_elements()->mutable_aggregate()->add_elements();
  *inner = RemotePointer(0x10, 0);
  response.mutable_callback_invoke()->add_args()->set_int_value(7);
  StampGeneration(&response);
  EXPECT_EQ(response.callback_invoke()
                .args(0)
                .aggregate()
                .elements(0)
                .aggregate()
                .elements(0)
                .pointer()
                .remote()
                .generation(),
            5u);
  EXPECT_EQ(response.callback_invoke().args(1).int_value(), 7);
}

TEST(StampGenerationTest, EveryResultWithAnAddressIsCovered) {
  v1::Response symbol;
  symbol.set_generation(2);
  symbol.mutable_symbol()->mutable_address()->set_address(0x10);
  *symbol.mutable_symbol()->mutable_value() = RemotePointer(0x20, 0);
  StampGeneration(&symbol);
  EXPECT_EQ(symbol.symbol().address().generation(), 2u);
  EXPECT_EQ(symbol.symbol().value().pointer().remote().generation(), 2u);

  v1::Response allocated;
  allocated.set_generation(2);
  allocated.mutable_allocated()->mutable_address()->set_address(0x10);
  StampGeneration(&allocated);
  EXPECT_EQ(allocated.allocated().address().generation(), 2u);

  v1::Response callback;
  callback.set_generation(2);
  callback.mutable_callback()->mutable_address()->set_address(0x10);
  StampGeneration(&callback);
  EXPECT_EQ(callback.callback().address().generation(), 2u);

  v1::Response memory;
  memory.set_generation(2);
  *memory.mutable_memory()->mutable_value() = RemotePointer(0x10, 0);
  StampGeneration(&memory);
  EXPECT_EQ(memory.memory().value().pointer().remote().generation(), 2u);
}

TEST(StampGenerationTest, NothingChangesWithoutAResponseGenerationOrAnAddress) {
  v1::Response before_any_worker;
  *before_any_worker.mutable_call()->mutable_result() = RemotePointer(0x1000, 0);
  StampGeneration(&before_any_worker);
  EXPECT_EQ(before_any_worker.call().result().pointer().remote().generation(), 0u);

  v1::Response without_address;
  without_address.set_generation(4);
  without_address.mutable_allocated();
  StampGeneration(&without_address);
  EXPECT_FALSE(without_address.allocated().has_address());
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

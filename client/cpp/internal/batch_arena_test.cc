#include "client/cpp/internal/batch_arena.h"

#include <string>
#include <thread>

#include "ffibox/v1/ffibox.pb.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

// Fills `arena` with a batch of `calls` add(i, i) calls.
v1::Request* BuildBatch(google::protobuf::Arena* arena, int calls) {
  auto* request = google::protobuf::Arena::CreateMessage<v1::Request>(arena);
  for (int i = 0; i < calls; ++i) {
    v1::Call* call = request->mutable_batch()->add_calls();
    call->set_function(1);
    call->add_args()->set_int_value(i);
    call->add_args()->set_int_value(i);
  }
  return request;
}

TEST(BatchArena, AGoneBatchsBlocksServeTheNextFromAnyThread) {
  const size_t kept_before = KeptBatchArenaBlocks();
  {
    std::unique_ptr<google::protobuf::Arena> arena = NewBatchArena();
    v1::Request* request = BuildBatch(arena.get(), 4096);
    EXPECT_EQ(request->batch().calls_size(), 4096);
    EXPECT_GT(arena->SpaceAllocated(), 2 * kBatchArenaBlockBytes);
  }
  const size_t kept = KeptBatchArenaBlocks();
  EXPECT_GT(kept, kept_before);
  EXPECT_LE(kept, kKeptBatchArenaBlocks);

  std::thread([&] {
    std::unique_ptr<google::protobuf::Arena> arena = NewBatchArena();
    v1::Request* request = BuildBatch(arena.get(), 16);
    EXPECT_EQ(request->batch().calls(15).args(1).int_value(), 15);
    EXPECT_EQ(KeptBatchArenaBlocks(), kept - 1);  // its one block was a kept one
  }).join();
  EXPECT_EQ(KeptBatchArenaBlocks(), kept);
}

TEST(BatchArena, AllocationsLargerThanABlockWorkAndAreNotKept) {
  const size_t kept_before = KeptBatchArenaBlocks();
  {
    std::unique_ptr<google::protobuf::Arena> arena = NewBatchArena();
    char* large =
        google::protobuf::Arena::CreateArray<char>(arena.get(), 4 * kBatchArenaBlockBytes);
    large[4 * kBatchArenaBlockBytes - 1] = 'x';
    EXPECT_EQ(large[4 * kBatchArenaBlockBytes - 1], 'x');
  }
  EXPECT_LE(KeptBatchArenaBlocks(), kept_before + 1);
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

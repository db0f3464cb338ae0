// WorkerExecutor in-process: functions resolved by address and typed remote memory.
#include "server/worker/executor.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/call_shape.h"
#include "core/errors.h"
#include "core/test_types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

extern "C" int add_three(int v) { return v + 3; }

// A library that keeps the caller's pointer between calls (as zlib keeps its z_stream).
namespace {

using ::ffibox::testing::ScalarType;
int* kept_pointer = nullptr;
}  // namespace
extern "C" void* keep_pointer(int* p) {
  kept_pointer = p;
  return p;
}
extern "C" int read_kept() { return *kept_pointer; }
// Writes through the kept pointer in a call that does not pass it (as a memory writer
// fills the caller's buffer on each write).
extern "C" int bump_kept() { return ++*kept_pointer; }
// Sets int `index` of the kept block.
extern "C" void set_kept_int(int index, int value) { kept_pointer[index] = value; }
// Keeps the pointer and writes through it at once.
extern "C" void* keep_and_bump(int* p) {
  kept_pointer = p;
  ++*p;
  return p;
}

// Memory of the library's own that it rewrites in later calls (as FreeType rewrites a face's
// glyph slot), and a byte array for the watch budget's count.
namespace {
int library_ints[6] = {};
char library_bytes[ffibox::kMaxWatchedReads + 1] = {};
}  // namespace
extern "C" void set_library_int(int index, int value) { library_ints[index] = value; }
extern "C" void set_library_byte(int index, int value) {
  library_bytes[index] = static_cast<char>(value);
}

// Counts its calls: shows which calls of a batch ran.
namespace {
int counted_calls = 0;
}  // namespace
extern "C" int count_call(int v) {
  ++counted_calls;
  return v;
}

namespace ffibox {
namespace {

constexpr uint64_t kGeneration = 2;

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
  *resolve->mutable_signature()->mutable_result() = ScalarType(v1::INT);
  *resolve->mutable_signature()->add_params() = ScalarType(v1::INT);
  return request;
}

v1::Request ResolveVoid(void* function, v1::Scalar result, bool takes_pointer) {
  v1::Request request;
  v1::ResolveFunction* resolve = request.mutable_resolve_function();
  resolve->mutable_address()->set_address(reinterpret_cast<uintptr_t>(function));
  resolve->mutable_address()->set_generation(kGeneration);
  *resolve->mutable_signature()->mutable_result() = ScalarType(result);
  if (takes_pointer) *resolve->mutable_signature()->add_params() = ScalarType(v1::POINTER);
  return request;
}

// A call of keep_pointer (handle 1) on a 4-byte block holding `value`.
v1::Request KeepPointerCall(int value) {
  v1::Request request;
  v1::Call* call = request.mutable_call();
  call->set_function(1);
  v1::MemoryBlock* block = call->add_blocks();
  block->set_data(std::string(reinterpret_cast<const char*>(&value), sizeof value));
  block->set_direction(v1::INOUT);
  call->add_args()->mutable_pointer()->mutable_block()->set_block(0);
  return request;
}

v1::Request ReadKeptCall() {
  v1::Request request;
  request.mutable_call()->set_function(2);
  return request;
}

class LastingBlocksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(ExecuteOne(&executor_,
                            ResolveVoid(reinterpret_cast<void*>(&keep_pointer), v1::POINTER, true),
                            1)
                     .has_error());
    ASSERT_FALSE(
        ExecuteOne(&executor_, ResolveVoid(reinterpret_cast<void*>(&read_kept), v1::INT, false), 2)
            .has_error());
  }

  // Keeps a block holding `value` and returns where the worker placed it.
  v1::RemoteAddress Keep(int value) {
    v1::Request call = KeepPointerCall(value);
    call.mutable_call()->mutable_blocks(0)->set_keep(true);
    v1::Response kept = ExecuteOne(&executor_, call);
    EXPECT_FALSE(kept.has_error()) << kept.error().message();
    EXPECT_EQ(kept.call().kept_size(), 1);
    if (kept.call().kept_size() != 1) return {};
    EXPECT_EQ(kept.call().kept(0).block(), 0u);
    EXPECT_EQ(kept.call().kept(0).address().generation(), kGeneration);
    EXPECT_EQ(kept.call().result().pointer().remote().address(),
              kept.call().kept(0).address().address());
    return kept.call().kept(0).address();
  }

  int ReadKept() { return ExecuteOne(&executor_, ReadKeptCall()).call().result().int_value(); }

  WorkerExecutor executor_{kGeneration};
};

TEST_F(LastingBlocksTest, KeptBlockOutlivesTheCallAndIsReusedInPlace) {
  v1::RemoteAddress kept = Keep(7);
  EXPECT_EQ(ReadKept(), 7);  // the library's pointer still reaches the caller's value

  v1::Request again = KeepPointerCall(9);
  *again.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  v1::Response placed = ExecuteOne(&executor_, again);
  ASSERT_FALSE(placed.has_error()) << placed.error().message();
  EXPECT_EQ(placed.call().result().pointer().remote().address(), kept.address());
  EXPECT_EQ(placed.call().kept_size(), 0);
  EXPECT_EQ(ReadKept(), 9);
}

TEST_F(LastingBlocksTest, AnOnlyIfChangedBlockComesBackOnlyWhenTheLibraryWroteIt) {
  v1::Request call = KeepPointerCall(41);  // keep_pointer writes nothing
  call.mutable_call()->mutable_blocks(0)->set_only_if_changed(true);
  v1::Response untouched = ExecuteOne(&executor_, call);
  ASSERT_FALSE(untouched.has_error()) << untouched.error().message();
  EXPECT_EQ(untouched.call().blocks_size(), 0);
  ASSERT_FALSE(ExecuteOne(&executor_,
                          ResolveVoid(reinterpret_cast<void*>(&keep_and_bump), v1::POINTER, true),
                          3)
                   .has_error());
  call.mutable_call()->set_function(3);  // keep_and_bump: ++*p
  v1::Response bumped = ExecuteOne(&executor_, call);
  ASSERT_FALSE(bumped.has_error()) << bumped.error().message();
  ASSERT_EQ(bumped.call().blocks_size(), 1);
  int value = 0;
  ASSERT_EQ(bumped.call().blocks(0).data().size(), sizeof value);
  std::memcpy(&value, bumped.call().blocks(0).data().data(), sizeof value);
  EXPECT_EQ(value, 42);
  call.mutable_call()->mutable_blocks(0)->set_only_if_changed(false);
  call.mutable_call()->set_function(1);  // without it, an INOUT block always comes back
  EXPECT_EQ(ExecuteOne(&executor_, call).call().blocks_size(), 1);
}

TEST_F(LastingBlocksTest, PlacementIsCheckedAgainstWhatWasKept) {
  v1::RemoteAddress kept = Keep(1);

  v1::Request too_big = KeepPointerCall(1);
  *too_big.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  too_big.mutable_call()->mutable_blocks(0)->set_size(4096);
  EXPECT_EQ(ExecuteOne(&executor_, too_big).error().code(), v1::INVALID_ARGUMENT);

  v1::Request stale = KeepPointerCall(1);
  *stale.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  stale.mutable_call()->mutable_blocks(0)->mutable_at()->set_generation(kGeneration + 1);
  EXPECT_EQ(ExecuteOne(&executor_, stale).error().code(), v1::STALE_HANDLE);

  v1::Request unknown = KeepPointerCall(1);
  *unknown.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  unknown.mutable_call()->mutable_blocks(0)->mutable_at()->set_address(kept.address() + 16);
  v1::Response refused = ExecuteOne(&executor_, unknown);
  EXPECT_EQ(refused.error().code(), v1::NOT_FOUND);
  EXPECT_THAT(refused.error().message(), ::testing::HasSubstr("call.blocks[0].at"));

  v1::Request both = KeepPointerCall(1);
  *both.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  both.mutable_call()->mutable_blocks(0)->set_keep(true);
  EXPECT_EQ(ExecuteOne(&executor_, both).error().code(), v1::INVALID_ARGUMENT);
}

TEST_F(LastingBlocksTest, ReleasedBeforeTheCallAndThenUnknown) {
  v1::RemoteAddress kept = Keep(3);
  // Freed before the call runs: keep_pointer then keeps this call's own block instead.
  v1::Request release = KeepPointerCall(5);
  *release.mutable_call()->add_release() = kept;
  ASSERT_FALSE(ExecuteOne(&executor_, release).has_error());

  v1::Request reuse = KeepPointerCall(1);
  *reuse.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  EXPECT_EQ(ExecuteOne(&executor_, reuse).error().code(), v1::NOT_FOUND);

  // Releasing again, or an address of another generation, is ignored: a client resends
  // releases when a call failed.
  v1::Request twice = KeepPointerCall(1);
  *twice.mutable_call()->add_release() = kept;
  v1::RemoteAddress other = kept;
  other.set_generation(kGeneration + 1);
  *twice.mutable_call()->add_release() = other;
  EXPECT_FALSE(ExecuteOne(&executor_, twice).has_error());

  v1::Request freed;  // free_memory knows kept memory no more
  *freed.mutable_free_memory()->mutable_address() = kept;
  EXPECT_EQ(ExecuteOne(&executor_, freed).error().code(), v1::NOT_FOUND);
}

// A call's releases are freed first, whatever becomes of the call: one the worker refuses
// (a malformed call, an unresolved function) or one that fails frees them too, so a client
// never sends them again once it has an answer (a later keep may reuse the address).
TEST_F(LastingBlocksTest, ReleasesAreFreedEvenWhenTheCallIsRefused) {
  v1::Request malformed = KeepPointerCall(1);
  malformed.mutable_call()->add_args()->set_int_value(7);  // one argument too many
  v1::Request unresolved = KeepPointerCall(1);
  unresolved.mutable_call()->set_function(99);
  for (v1::Request refused : {malformed, unresolved}) {
    v1::RemoteAddress kept = Keep(3);
    *refused.mutable_call()->add_release() = kept;
    ASSERT_TRUE(ExecuteOne(&executor_, refused).has_error());
    v1::Request freed;
    *freed.mutable_free_memory()->mutable_address() = kept;
    EXPECT_EQ(ExecuteOne(&executor_, freed).error().code(), v1::NOT_FOUND)
        << refused.call().function();
  }
}

TEST_F(LastingBlocksTest, FreeMemoryFreesKeptMemoryAndKeptMemoryServesAllocations) {
  v1::RemoteAddress kept = Keep(3);
  v1::Request free;
  *free.mutable_free_memory()->mutable_address() = kept;
  EXPECT_FALSE(ExecuteOne(&executor_, free).has_error());

  v1::Request alloc;
  alloc.mutable_alloc_memory()->set_size(64);
  v1::Response allocated = ExecuteOne(&executor_, alloc);
  ASSERT_FALSE(allocated.has_error());
  v1::Request placed = KeepPointerCall(11);
  *placed.mutable_call()->mutable_blocks(0)->mutable_at() = allocated.allocated().address();
  v1::Response result = ExecuteOne(&executor_, placed);
  ASSERT_FALSE(result.has_error()) << result.error().message();
  EXPECT_EQ(result.call().result().pointer().remote().address(),
            allocated.allocated().address().address());
  EXPECT_EQ(ReadKept(), 11);
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
  *write.mutable_write_memory()->mutable_type() = ScalarType(v1::DOUBLE);
  write.mutable_write_memory()->mutable_value()->set_float_value(2.5);
  v1::Response written = ExecuteOne(&executor, write);
  ASSERT_FALSE(written.has_error()) << written.error().message();
  EXPECT_EQ(target, 2.5);

  v1::Request read;
  read.mutable_read_memory()->mutable_address()->set_address(reinterpret_cast<uintptr_t>(&target));
  read.mutable_read_memory()->mutable_address()->set_generation(kGeneration);
  *read.mutable_read_memory()->mutable_type() = ScalarType(v1::DOUBLE);
  v1::Response value = ExecuteOne(&executor, read);
  ASSERT_FALSE(value.has_error()) << value.error().message();
  EXPECT_TRUE(value.memory().data().empty());
  EXPECT_EQ(value.memory().value().float_value(), 2.5);

  // A string value would dangle once the request ends: refused.
  *write.mutable_write_memory()->mutable_type() = ScalarType(v1::CSTRING);
  write.mutable_write_memory()->mutable_value()->set_bytes_value("x");
  EXPECT_EQ(ExecuteOne(&executor, write).error().code(), v1::INVALID_ARGUMENT);
  // An unmapped address is a fault, not a crash.
  read.mutable_read_memory()->mutable_address()->set_address(16);
  EXPECT_EQ(ExecuteOne(&executor, read).error().code(), v1::MEMORY_FAULT);
}

TEST(WorkerExecutor, AReadListReadsEachRangeInOrderOrFailsWhole) {
  WorkerExecutor executor(kGeneration);
  const char first[] = "first", second[] = "second";
  v1::Request list;
  for (const char* text : {first, second}) {
    v1::ReadMemory* read = list.mutable_read_memory_list()->add_reads();
    read->mutable_address()->set_address(reinterpret_cast<uintptr_t>(text));
    read->mutable_address()->set_generation(kGeneration);
    read->set_size(strlen(text));
  }
  v1::Response read = ExecuteOne(&executor, list);
  ASSERT_FALSE(read.has_error()) << read.error().message();
  ASSERT_EQ(read.memory_list().reads_size(), 2);
  EXPECT_EQ(read.memory_list().reads(0).data(), "first");
  EXPECT_EQ(read.memory_list().reads(1).data(), "second");

  // One unmapped address fails the list, naming the read.
  list.mutable_read_memory_list()->mutable_reads(1)->mutable_address()->set_address(16);
  v1::Response faulted = ExecuteOne(&executor, list);
  EXPECT_EQ(faulted.error().code(), v1::MEMORY_FAULT);
  EXPECT_THAT(faulted.error().message(), ::testing::HasSubstr("read_memory_list.reads[1]"));
  EXPECT_FALSE(faulted.has_memory_list());

  // Sizes that together exceed one request's limit are refused before anything is read,
  // typed reads counted by their type's size, a size that would wrap the sum too.
  list.mutable_read_memory_list()->mutable_reads(1)->set_size(kMaxMemoryRequestBytes);
  EXPECT_EQ(ExecuteOne(&executor, list).error().code(), v1::RESOURCE_EXHAUSTED);
  list.mutable_read_memory_list()->mutable_reads(1)->set_size(UINT64_MAX);
  EXPECT_EQ(ExecuteOne(&executor, list).error().code(), v1::RESOURCE_EXHAUSTED);
  list.mutable_read_memory_list()->mutable_reads(1)->set_size(0);
  v1::Type* half = list.mutable_read_memory_list()->mutable_reads(1)->mutable_type();
  half->mutable_array()->set_length(kMaxMemoryRequestBytes / 2);
  *half->mutable_array()->mutable_element() = ScalarType(v1::UINT8);
  *list.mutable_read_memory_list()->add_reads() = list.read_memory_list().reads(1);
  EXPECT_EQ(ExecuteOne(&executor, list).error().code(), v1::RESOURCE_EXHAUSTED);
}

// A batch of count_call calls (handle 1) with the arguments `values`.
v1::Request CountingBatch(std::initializer_list<int> values) {
  v1::Request request;
  request.mutable_batch();
  for (int value : values) {
    v1::Call* call = request.mutable_batch()->add_calls();
    call->set_function(1);
    call->add_args()->set_int_value(value);
  }
  return request;
}

class BatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    counted_calls = 0;
    v1::Request resolve = ResolveAt(reinterpret_cast<uintptr_t>(&count_call), kGeneration);
    ASSERT_FALSE(ExecuteOne(&executor_, resolve, 1).has_error());
  }

  WorkerExecutor executor_{kGeneration};
};

TEST_F(BatchTest, RunsEveryCallInOrderAndAnswersEveryResult) {
  v1::Response response = ExecuteOne(&executor_, CountingBatch({5, 6, 7}));
  ASSERT_FALSE(response.has_error()) << response.error().message();
  ASSERT_EQ(response.batch().results_size(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(response.batch().results(i).result().int_value(), 5 + i);
  EXPECT_EQ(counted_calls, 3);
}

TEST_F(BatchTest, StopsAtTheFirstFailingCallWithItsIndexAndTheResultsBeforeIt) {
  v1::Request request = CountingBatch({1, 2, 3, 4});
  // Not an int: the marshalling refuses it when the worker reaches call 2.
  request.mutable_batch()->mutable_calls(2)->mutable_args(0)->set_bytes_value("xy");
  v1::Response response = ExecuteOne(&executor_, request);
  ASSERT_TRUE(response.has_error());
  EXPECT_EQ(response.error().code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(response.error().field(), "batch.calls[2].args[0]");
  EXPECT_EQ(response.error().batch_index(), 2u);
  ASSERT_TRUE(response.has_batch());
  ASSERT_EQ(response.batch().results_size(), 2);
  EXPECT_EQ(response.batch().results(1).result().int_value(), 2);
  EXPECT_EQ(counted_calls, 2);  // call 3 did not run
}

TEST_F(BatchTest, UnknownFunctionStopsTheBatchAtItsCall) {
  v1::Request request = CountingBatch({1, 2});
  request.mutable_batch()->mutable_calls(1)->set_function(99);
  v1::Response response = ExecuteOne(&executor_, request);
  EXPECT_EQ(response.error().code(), v1::NOT_FOUND);
  EXPECT_EQ(response.error().batch_index(), 1u);
  EXPECT_EQ(response.batch().results_size(), 1);
}

TEST_F(BatchTest, BatchLimitsAreTheWorkersOwnCheckToo) {
  WorkerExecutor executor(kGeneration, nullptr, -1, [] {
    TypeLimits limits;
    limits.max_batch_calls = 2;
    return limits;
  }());
  ASSERT_FALSE(
      ExecuteOne(&executor, ResolveAt(reinterpret_cast<uintptr_t>(&count_call), kGeneration), 1)
          .has_error());
  v1::Response response = ExecuteOne(&executor, CountingBatch({1, 2, 3}));
  EXPECT_EQ(response.error().code(), v1::RESOURCE_EXHAUSTED);
  EXPECT_FALSE(response.error().has_batch_index());
  EXPECT_EQ(response.batch().results_size(), 0);
  EXPECT_EQ(counted_calls, 0);
  v1::Request empty;
  empty.mutable_batch();
  EXPECT_EQ(ExecuteOne(&executor, empty).error().code(), v1::INVALID_ARGUMENT);
}

// A call of function `handle`, which takes no arguments.
v1::Request PlainCall(uint64_t handle) {
  v1::Request request;
  request.mutable_call()->set_function(handle);
  return request;
}

class WatchedBlocksTest : public LastingBlocksTest {
 protected:
  void SetUp() override {
    LastingBlocksTest::SetUp();
    ASSERT_FALSE(
        ExecuteOne(&executor_, ResolveVoid(reinterpret_cast<void*>(&bump_kept), v1::INT, false), 3)
            .has_error());
    ASSERT_FALSE(ExecuteOne(&executor_,
                            ResolveVoid(reinterpret_cast<void*>(&keep_and_bump), v1::POINTER, true),
                            4)
                     .has_error());
    v1::Request set = ResolveVoid(reinterpret_cast<void*>(&set_kept_int), v1::VOID, false);
    *set.mutable_resolve_function()->mutable_signature()->add_params() = ScalarType(v1::INT);
    *set.mutable_resolve_function()->mutable_signature()->add_params() = ScalarType(v1::INT);
    ASSERT_FALSE(ExecuteOne(&executor_, set, 5).has_error());
  }

  // A call of set_kept_int(index, value).
  static v1::Request SetKeptInt(int index, int value) {
    v1::Request request = PlainCall(5);
    request.mutable_call()->add_args()->set_int_value(index);
    request.mutable_call()->add_args()->set_int_value(value);
    return request;
  }

  // Keeps a watched block of `ints` zeroed ints: where the worker placed it.
  v1::RemoteAddress KeepWatchedInts(int ints) {
    v1::Request call = KeepPointerCall(0);
    v1::MemoryBlock* block = call.mutable_call()->mutable_blocks(0);
    block->set_size(sizeof(int) * ints);
    block->set_keep(true);
    block->set_watch(true);
    v1::Response kept = ExecuteOne(&executor_, call);
    EXPECT_FALSE(kept.has_error()) << kept.error().message();
    if (kept.call().kept_size() != 1) return {};
    return kept.call().kept(0).address();
  }

  // Keeps a watched block holding `value`: where the worker placed it.
  v1::RemoteAddress KeepWatched(int value, v1::Direction direction = v1::INOUT,
                                uint64_t function = 1) {
    v1::Request call = KeepPointerCall(value);
    call.mutable_call()->set_function(function);
    v1::MemoryBlock* block = call.mutable_call()->mutable_blocks(0);
    block->set_keep(true);
    block->set_watch(true);
    block->set_direction(direction);
    v1::Response kept = ExecuteOne(&executor_, call);
    EXPECT_FALSE(kept.has_error()) << kept.error().message();
    EXPECT_EQ(kept.call().changed_size(), 0);
    if (kept.call().kept_size() != 1) return {};
    return kept.call().kept(0).address();
  }

  // The changed blocks a call of `handle` reports, as (address, int it holds).
  std::vector<std::pair<uint64_t, int>> ChangedBy(uint64_t handle) {
    v1::Response response = ExecuteOne(&executor_, PlainCall(handle));
    EXPECT_FALSE(response.has_error()) << response.error().message();
    std::vector<std::pair<uint64_t, int>> changed;
    for (const v1::ChangedBlock& block : response.call().changed()) {
      EXPECT_EQ(block.address().generation(), kGeneration);
      int value = 0;
      EXPECT_EQ(block.data().size(), sizeof value);
      std::memcpy(&value, block.data().data(), std::min(sizeof value, block.data().size()));
      changed.emplace_back(block.address().address(), value);
    }
    return changed;
  }
};

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

TEST_F(WatchedBlocksTest, OnlyTheChangedWordsAreReported) {
  v1::RemoteAddress kept = KeepWatchedInts(6);                       // three words
  v1::Response response = ExecuteOne(&executor_, SetKeptInt(3, 7));  // the second word
  ASSERT_FALSE(response.has_error()) << response.error().message();
  ASSERT_EQ(response.call().changed_size(), 1);
  const v1::ChangedBlock& run = response.call().changed(0);
  EXPECT_EQ(run.address().address(), kept.address());
  EXPECT_EQ(run.offset(), 8u);
  int words[2] = {0, 7};
  EXPECT_EQ(run.data(), std::string(reinterpret_cast<const char*>(words), sizeof words));

  // The first and the third word: two runs.
  v1::Request batch;
  for (int index : {0, 4, 5}) *batch.mutable_batch()->add_calls() = SetKeptInt(index, 2).call();
  response = ExecuteOne(&executor_, batch);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  ASSERT_EQ(response.batch().results_size(), 3);
  // Reported once, by the batch's last call, as the block is after the batch.
  EXPECT_EQ(response.batch().results(0).changed_size(), 0);
  EXPECT_EQ(response.batch().results(1).changed_size(), 0);
  ASSERT_EQ(response.batch().results(2).changed_size(), 2);
  EXPECT_EQ(response.batch().results(2).changed(0).offset(), 0u);
  EXPECT_EQ(response.batch().results(2).changed(0).data().size(), 8u);
  EXPECT_EQ(response.batch().results(2).changed(1).offset(), 16u);
  EXPECT_EQ(response.batch().results(2).changed(1).data().size(), 8u);
}

// A scalar call run from its arguments' bits (the same-host channel's, CallScalar) reports
// what the library changed in watched kept blocks as the same call through Execute does.
TEST_F(WatchedBlocksTest, AScalarCallReportsTheChangesExecuteReports) {
  KeepWatchedInts(6);
  const v1::Response executed = ExecuteOne(&executor_, SetKeptInt(3, 7));
  ASSERT_FALSE(executed.has_error()) << executed.error().message();
  ASSERT_EQ(executed.call().changed_size(), 1);
  // The same change again through CallScalar: nothing changed since the last report.
  v1::CallResult scalar;
  std::optional<absl::Status> ran = executor_.CallScalar(
      5, {ScalarBits{v1::Value::kIntValue, 3}, ScalarBits{v1::Value::kIntValue, 7}}, &scalar);
  ASSERT_TRUE(ran.has_value());
  ASSERT_TRUE(ran->ok()) << *ran;
  EXPECT_EQ(scalar.changed_size(), 0);
  // Another value: reported as Execute reports it.
  scalar.Clear();
  ran = executor_.CallScalar(
      5, {ScalarBits{v1::Value::kIntValue, 3}, ScalarBits{v1::Value::kIntValue, 9}}, &scalar);
  ASSERT_TRUE(ran.has_value());
  ASSERT_TRUE(ran->ok()) << *ran;
  const v1::Response again = ExecuteOne(&executor_, SetKeptInt(3, 11));
  ASSERT_EQ(scalar.changed_size(), 1);
  ASSERT_EQ(again.call().changed_size(), 1);
  EXPECT_EQ(scalar.changed(0).address().address(), again.call().changed(0).address().address());
  EXPECT_EQ(scalar.changed(0).offset(), again.call().changed(0).offset());
  int words[2] = {0, 9};
  EXPECT_EQ(scalar.changed(0).data(),
            std::string(reinterpret_cast<const char*>(words), sizeof words));
  // Not taken: an unresolved function, or arguments the function does not take.
  EXPECT_FALSE(executor_.CallScalar(99, {}, &scalar).has_value());
  EXPECT_FALSE(executor_.CallScalar(5, {ScalarBits{v1::Value::kIntValue, 3}}, &scalar).has_value());
}

TEST_F(WatchedBlocksTest, ManyRunsAreReportedAsOneFromTheFirstToTheLast) {
  const int words = 2 * static_cast<int>(kMaxChangedRuns) + 2;
  v1::RemoteAddress kept = KeepWatchedInts(2 * words);
  v1::Request batch;
  for (int word = 1; word < words; word += 2) {
    *batch.mutable_batch()->add_calls() = SetKeptInt(2 * word, 1).call();
  }
  v1::Response response = ExecuteOne(&executor_, batch);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  const v1::CallResult& last = response.batch().results(response.batch().results_size() - 1);
  ASSERT_EQ(last.changed_size(), 1);  // 65 runs
  EXPECT_EQ(last.changed(0).address().address(), kept.address());
  EXPECT_EQ(last.changed(0).offset(), 8u);
  EXPECT_EQ(last.changed(0).data().size(), 8u * (words - 1));
}

TEST_F(WatchedBlocksTest, AWriteBetweenCallsIsReportedOnceByTheCallThatMadeIt) {
  v1::RemoteAddress kept = KeepWatched(7);
  EXPECT_THAT(ChangedBy(2), IsEmpty());  // read_kept reads, changes nothing
  EXPECT_THAT(ChangedBy(3), ElementsAre(Pair(kept.address(), 8)));  // bump_kept writes
  EXPECT_THAT(ChangedBy(2), IsEmpty());                             // reported once
  EXPECT_THAT(ChangedBy(3), ElementsAre(Pair(kept.address(), 9)));
}

TEST_F(WatchedBlocksTest, ACallThatPlacesTheBlockReturnsItAndDoesNotReportItChanged) {
  v1::RemoteAddress kept = KeepWatched(7);
  v1::Request again = KeepPointerCall(20);
  *again.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  again.mutable_call()->mutable_blocks(0)->set_watch(true);
  again.mutable_call()->set_function(4);  // keep_and_bump: 21, returned with the block
  v1::Response placed = ExecuteOne(&executor_, again);
  ASSERT_FALSE(placed.has_error()) << placed.error().message();
  EXPECT_EQ(placed.call().changed_size(), 0);
  EXPECT_THAT(ChangedBy(2), IsEmpty());  // the client holds 21 already
  EXPECT_THAT(ChangedBy(3), ElementsAre(Pair(kept.address(), 22)));
}

TEST_F(WatchedBlocksTest, AnInBlockIsComparedWithWhatWasSent) {
  // keep_and_bump writes during the call that places the block; an IN block does not come
  // back, so the next call reports it.
  v1::RemoteAddress kept = KeepWatched(7, v1::IN, 4);
  EXPECT_THAT(ChangedBy(2), ElementsAre(Pair(kept.address(), 8)));
}

TEST_F(WatchedBlocksTest, UnwatchedReleasedAndPlacedWithoutWatchAreNotReported) {
  Keep(1);  // kept without watch
  EXPECT_THAT(ChangedBy(3), IsEmpty());

  v1::RemoteAddress kept = KeepWatched(7);
  v1::Request unwatch = KeepPointerCall(7);
  *unwatch.mutable_call()->mutable_blocks(0)->mutable_at() = kept;
  ASSERT_FALSE(ExecuteOne(&executor_, unwatch).has_error());
  EXPECT_THAT(ChangedBy(3), IsEmpty());

  kept = KeepWatched(7);
  v1::Request release = PlainCall(2);
  *release.mutable_call()->add_release() = kept;
  ASSERT_FALSE(ExecuteOne(&executor_, release).has_error());
  v1::RemoteAddress other = KeepWatched(1);  // the library now writes here
  EXPECT_THAT(ChangedBy(3), ElementsAre(Pair(other.address(), 2)));
}

// The Python client's twin of an object a callback stored a pointer to: allocated, then
// written with `watch`, so that what the library writes there comes back as a kept block's.
TEST_F(WatchedBlocksTest, AllocatedMemoryWrittenWithWatchIsWatchedUntilFreed) {
  Keep(1);  // for read_kept, the call that reports changes (ChangedBy(2))
  std::vector<v1::RemoteAddress> allocated;
  for (bool watch : {true, false}) {
    v1::Request alloc;
    alloc.mutable_alloc_memory()->set_size(sizeof(int));
    v1::Response answer = ExecuteOne(&executor_, alloc);
    ASSERT_FALSE(answer.has_error()) << answer.error().message();
    allocated.push_back(answer.allocated().address());
    v1::Request write;
    *write.mutable_write_memory()->mutable_address() = allocated.back();
    const int seven = 7;
    write.mutable_write_memory()->set_data(&seven, sizeof seven);
    write.mutable_write_memory()->set_watch(watch);
    v1::Response written = ExecuteOne(&executor_, write);
    ASSERT_FALSE(written.has_error()) << written.error().message();
    EXPECT_EQ(written.done().watched(), watch);
  }
  EXPECT_THAT(ChangedBy(2), IsEmpty());  // as written
  // The library writes into both through pointers it holds: the watched one is reported.
  for (const v1::RemoteAddress& at : allocated) {
    *reinterpret_cast<int*>(static_cast<uintptr_t>(at.address())) = 9;
  }
  EXPECT_THAT(ChangedBy(2), ElementsAre(Pair(allocated[0].address(), 9)));
  EXPECT_THAT(ChangedBy(2), IsEmpty());  // reported once
  // What the client writes there is its own: with `held`, no change of the library's.
  for (bool held : {true, false}) {
    v1::Request write;
    *write.mutable_write_memory()->mutable_address() = allocated[0];
    const int value = held ? 11 : 12;
    write.mutable_write_memory()->set_data(&value, sizeof value);
    write.mutable_write_memory()->set_held(held);
    ASSERT_FALSE(ExecuteOne(&executor_, write).has_error());
    if (held) {
      EXPECT_THAT(ChangedBy(2), IsEmpty());
    } else {
      EXPECT_THAT(ChangedBy(2), ElementsAre(Pair(allocated[0].address(), 12)));
    }
  }
  v1::Request free;
  *free.mutable_free_memory()->mutable_address() = allocated[0];
  ASSERT_FALSE(ExecuteOne(&executor_, free).has_error());
  EXPECT_THAT(ChangedBy(2), IsEmpty());
}

// Written with `watch`: more than the block holds, elsewhere than a block's start, or past
// the budget, the write's answer says it is not watched (and nothing past the block is
// compared, as it is no memory of the block's).
TEST_F(WatchedBlocksTest, AWriteIsWatchedOnlyWithinItsBlockAndTheBudget) {
  const auto written = [this](uint64_t size, uint64_t allocated, uint64_t offset) {
    v1::Request alloc;
    alloc.mutable_alloc_memory()->set_size(allocated);
    v1::Response answer = ExecuteOne(&executor_, alloc);
    EXPECT_FALSE(answer.has_error()) << answer.error().message();
    v1::Request write;
    *write.mutable_write_memory()->mutable_address() = answer.allocated().address();
    write.mutable_write_memory()->mutable_address()->set_address(
        answer.allocated().address().address() + offset);
    write.mutable_write_memory()->set_data(std::string(size, '\1'));
    write.mutable_write_memory()->set_watch(true);
    return ExecuteOne(&executor_, write);
  };
  EXPECT_TRUE(written(64, 64, 0).done().watched());
  // Past the block (into what malloc gave it beyond its size: no other memory written).
  EXPECT_FALSE(written(65, 56, 0).done().watched());
  EXPECT_FALSE(written(8, 64, 8).done().watched());                               // not its start
  EXPECT_FALSE(written(kMaxWatchedBytes, kMaxWatchedBytes, 0).done().watched());  // budget
}

TEST_F(WatchedBlocksTest, BlocksPastTheWatchBudgetAreNotWatched) {
  v1::Request big = KeepPointerCall(7);
  v1::MemoryBlock* block = big.mutable_call()->mutable_blocks(0);
  block->set_size(kMaxWatchedBytes + 16);
  block->set_keep(true);
  block->set_watch(true);
  ASSERT_FALSE(ExecuteOne(&executor_, big).has_error());
  EXPECT_THAT(ChangedBy(3), IsEmpty());
  v1::RemoteAddress small = KeepWatched(1);  // still fits the budget
  EXPECT_THAT(ChangedBy(3), ElementsAre(Pair(small.address(), 2)));
}

// Past the budget, what the client holds is remembered: a call that places the block again
// writes only the bytes the client changed, and what the library wrote since comes back.
TEST_F(WatchedBlocksTest, ABlockPastTheWatchBudgetKeepsTheLibrarysWritesWhenPlacedAgain) {
  v1::Request big = KeepPointerCall(7);
  big.mutable_call()->set_function(4);  // keep_and_bump: 8
  v1::MemoryBlock* block = big.mutable_call()->mutable_blocks(0);
  block->set_size(kMaxWatchedBytes + 16);
  block->set_keep(true);
  block->set_watch(true);
  v1::Response kept = ExecuteOne(&executor_, big);
  ASSERT_FALSE(kept.has_error()) << kept.error().message();
  ASSERT_EQ(kept.call().kept_size(), 1);
  ASSERT_EQ(kept.call().blocks_size(), 1);
  std::string held = kept.call().blocks(0).data();  // what the client holds: 8, then zeros
  ASSERT_EQ(held.size(), kMaxWatchedBytes + 16);
  EXPECT_THAT(ChangedBy(3), IsEmpty());  // bump_kept: 9, not reported
  EXPECT_THAT(ChangedBy(3), IsEmpty());  // 10

  // The client changes a byte far from the library's int and passes the block again.
  held[kMaxWatchedBytes] = 'x';
  v1::Request again = KeepPointerCall(0);
  again.mutable_call()->set_function(4);  // keep_and_bump: 11
  v1::MemoryBlock* placed = again.mutable_call()->mutable_blocks(0);
  placed->set_data(held);
  *placed->mutable_at() = kept.call().kept(0).address();
  placed->set_watch(true);
  v1::Response response = ExecuteOne(&executor_, again);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  ASSERT_EQ(response.call().blocks_size(), 1);
  const std::string& returned = response.call().blocks(0).data();
  ASSERT_EQ(returned.size(), held.size());
  int first = 0;
  std::memcpy(&first, returned.data(), sizeof first);
  EXPECT_EQ(first, 11);  // 9 when the client's 8 went over the library's 10
  EXPECT_EQ(returned[kMaxWatchedBytes], 'x');
  EXPECT_EQ(returned.find_first_not_of('\0', sizeof first), kMaxWatchedBytes);

  // A change of the client's own to the same int wins.
  std::string mine = returned;
  const int forty = 40;
  std::memcpy(mine.data(), &forty, sizeof forty);
  *again.mutable_call()->mutable_blocks(0)->mutable_data() = mine;
  response = ExecuteOne(&executor_, again);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  std::memcpy(&first, response.call().blocks(0).data().data(), sizeof first);
  EXPECT_EQ(first, 41);
}

// A call keeping a block of kMaxWatchedBytes + 16 bytes (past the watch budget: remembered)
// holding `value` (or `data`) with a pointer at `pointer_offset` to a second kept block of 16.
v1::Request KeepRememberedBlockWithPointer(int value, uint64_t pointer_offset,
                                           const std::string& data = "") {
  v1::Request first = KeepPointerCall(value);  // keep_pointer: no write
  v1::MemoryBlock* big = first.mutable_call()->mutable_blocks(0);
  if (!data.empty()) big->set_data(data);
  big->set_size(kMaxWatchedBytes + 16);
  big->set_keep(true);
  big->set_watch(true);
  v1::MemoryBlock* small = first.mutable_call()->add_blocks();
  small->set_size(16);
  small->set_keep(true);
  small->set_watch(true);
  small->set_direction(v1::INOUT);
  v1::Relocation* pointer = big->add_relocations();
  pointer->set_offset(pointer_offset);
  pointer->mutable_target()->set_block(1);
  return first;
}

// `first` again, its two blocks placed where the worker kept them (`kept`).
v1::Request PlacedAgain(const v1::Request& first, const v1::Response& kept) {
  v1::Request again = first;
  for (int i = 0; i < 2; ++i) {
    *again.mutable_call()->mutable_blocks(i)->mutable_at() = kept.call().kept(i).address();
    again.mutable_call()->mutable_blocks(i)->set_keep(false);
  }
  return again;
}

// The merge goes by 8-byte words: a value both sides changed is the client's, never a mix
// of the two (the library's 255 -> 256 and the client's 0 gave 256). A pointer the client left
// as it was (its relocation to the same target) keeps what the library put there, as the
// words beside it do: a library's new buffer and length stay together.
TEST_F(WatchedBlocksTest, ARememberedBlockMergesWholeWordsAndKeepsTheLibrarysPointers) {
  v1::Request first = KeepRememberedBlockWithPointer(255, 8);
  v1::Response kept = ExecuteOne(&executor_, first);
  ASSERT_FALSE(kept.has_error()) << kept.error().message();
  ASSERT_EQ(kept.call().kept_size(), 2);
  const std::string held = kept.call().blocks(0).data();  // 255, then the pointer to `small`
  uint64_t small_address = 0;
  std::memcpy(&small_address, held.data() + 8, sizeof small_address);
  ASSERT_EQ(small_address, kept.call().kept(1).address().address());

  // The library moves int 0 to 256 and points word 1 elsewhere (ints 2 and 3).
  ASSERT_FALSE(ExecuteOne(&executor_, SetKeptInt(0, 256)).has_error());
  ASSERT_FALSE(ExecuteOne(&executor_, SetKeptInt(2, 0x1234)).has_error());
  ASSERT_FALSE(ExecuteOne(&executor_, SetKeptInt(3, 0)).has_error());

  // The client sets int 0 to 0 and leaves its pointer to `small` as it was.
  std::string mine = held;
  const int zero = 0;
  std::memcpy(mine.data(), &zero, sizeof zero);
  v1::Request again = PlacedAgain(first, kept);
  again.mutable_call()->mutable_blocks(0)->set_data(mine);
  v1::Response response = ExecuteOne(&executor_, again);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  const std::string& returned = response.call().blocks(0).data();
  int first_int = -1;
  std::memcpy(&first_int, returned.data(), sizeof first_int);
  EXPECT_EQ(first_int, 0);  // 256 when merged byte by byte
  uint64_t word = 0;
  std::memcpy(&word, returned.data() + 8, sizeof word);
  EXPECT_EQ(word, 0x1234u);  // the library's, not the client's pointer to `small`

  // A pointer the client changed (to `small`'s second word) goes in.
  v1::Request moved = again;
  moved.mutable_call()->mutable_blocks(0)->mutable_relocations(0)->mutable_target()->set_offset(8);
  response = ExecuteOne(&executor_, moved);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  std::memcpy(&word, response.call().blocks(0).data().data() + 8, sizeof word);
  EXPECT_EQ(word, small_address + 8);
}

// A packed pointer across two words: the client's bytes there are its own address, which
// are not a change of the words' other bytes (the library's field beside it was lost).
TEST_F(WatchedBlocksTest, APackedPointerAcrossWordsKeepsTheLibrarysFieldBesideIt) {
  std::string bytes(kMaxWatchedBytes + 16, '\0');
  const uint64_t local_address = 0x00005555deadbee0ULL;  // the client's own address
  std::memcpy(bytes.data() + 4, &local_address, sizeof local_address);
  // The pointer at bytes 4..11, across words 0 and 1.
  v1::Request first = KeepRememberedBlockWithPointer(0, 4, bytes);
  v1::Response kept = ExecuteOne(&executor_, first);
  ASSERT_FALSE(kept.has_error()) << kept.error().message();
  ASSERT_EQ(kept.call().kept_size(), 2);
  ASSERT_FALSE(ExecuteOne(&executor_, SetKeptInt(3, 0x55)).has_error());  // bytes 12..15

  // The client's object again, unchanged.
  v1::Response response = ExecuteOne(&executor_, PlacedAgain(first, kept));
  ASSERT_FALSE(response.has_error()) << response.error().message();
  int field = -1;
  std::memcpy(&field, response.call().blocks(0).data().data() + 12, sizeof field);
  EXPECT_EQ(field, 0x55);
  uint64_t address = 0;
  std::memcpy(&address, response.call().blocks(0).data().data() + 4, sizeof address);
  EXPECT_EQ(address, kept.call().kept(1).address().address());
}

TEST_F(WatchedBlocksTest, EachWatchedBlockTakesWholeWordsOfTheBudget) {
  // A block 12 bytes short of the budget takes all but one word of it; each 4-byte block
  // then takes a word: one more fits, the next does not (counted in bytes, it would). So
  // the blocks of one result report at most kMaxWatchedBytes / 8 runs (core/encoding_limits.h).
  v1::Request big = KeepPointerCall(7);
  v1::MemoryBlock* block = big.mutable_call()->mutable_blocks(0);
  block->set_size(kMaxWatchedBytes - 12);
  block->set_keep(true);
  block->set_watch(true);
  ASSERT_FALSE(ExecuteOne(&executor_, big).has_error());
  v1::RemoteAddress fits = KeepWatched(1);
  EXPECT_THAT(ChangedBy(3), ElementsAre(Pair(fits.address(), 2)));
  KeepWatched(1);  // past the budget: the library now writes here, unseen
  EXPECT_THAT(ChangedBy(3), IsEmpty());
}

class WatchedReadsTest : public LastingBlocksTest {
 protected:
  void SetUp() override {
    LastingBlocksTest::SetUp();
    for (auto [function, handle] :
         {std::pair<void*, uint64_t>{reinterpret_cast<void*>(&set_library_int), 6},
          {reinterpret_cast<void*>(&set_library_byte), 7}}) {
      v1::Request set = ResolveVoid(function, v1::VOID, false);
      *set.mutable_resolve_function()->mutable_signature()->add_params() = ScalarType(v1::INT);
      *set.mutable_resolve_function()->mutable_signature()->add_params() = ScalarType(v1::INT);
      ASSERT_FALSE(ExecuteOne(&executor_, set, handle).has_error());
    }
    std::fill(std::begin(library_ints), std::end(library_ints), 0);
    std::fill(std::begin(library_bytes), std::end(library_bytes), 0);
  }

  // Reads `size` bytes at `address`, watching them, after unwatching `unwatch`.
  v1::Response ReadWatched(const void* address, uint64_t size,
                           std::initializer_list<uint64_t> unwatch = {}) {
    v1::Request read;
    read.mutable_read_memory()->mutable_address()->set_address(reinterpret_cast<uint64_t>(address));
    read.mutable_read_memory()->mutable_address()->set_generation(kGeneration);
    read.mutable_read_memory()->set_size(size);
    read.mutable_read_memory()->set_watch(true);
    for (uint64_t at : unwatch) read.mutable_read_memory()->add_unwatch(at);
    return ExecuteOne(&executor_, read);
  }

  // The changed runs a call of `handle`(index, value) reports, as (address, offset, bytes).
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> ChangedBySetting(uint64_t handle,
                                                                            int index, int value) {
    v1::Request call = PlainCall(handle);
    call.mutable_call()->add_args()->set_int_value(index);
    call.mutable_call()->add_args()->set_int_value(value);
    v1::Response response = ExecuteOne(&executor_, call);
    EXPECT_FALSE(response.has_error()) << response.error().message();
    std::vector<std::tuple<uint64_t, uint64_t, std::string>> changed;
    for (const v1::ChangedBlock& run : response.call().changed()) {
      EXPECT_EQ(run.address().generation(), kGeneration);
      changed.emplace_back(run.address().address(), run.offset(), run.data());
    }
    return changed;
  }

  static std::string Ints(std::initializer_list<int> values) {
    return std::string(reinterpret_cast<const char*>(std::data(values)),
                       values.size() * sizeof(int));
  }
};

using ::testing::FieldsAre;

TEST_F(WatchedReadsTest, WhatTheLibraryRewritesInItsOwnMemoryIsReportedOnce) {
  const uint64_t at = reinterpret_cast<uint64_t>(library_ints);
  library_ints[4] = 9;
  v1::Response read = ReadWatched(library_ints, sizeof library_ints);
  ASSERT_FALSE(read.has_error()) << read.error().message();
  EXPECT_EQ(read.memory().data(), Ints({0, 0, 0, 0, 9, 0}));

  EXPECT_THAT(ChangedBySetting(6, 1, 5), ElementsAre(FieldsAre(at, 0u, Ints({0, 5}))));
  EXPECT_THAT(ChangedBySetting(6, 1, 5), IsEmpty());  // the same again: nothing changed
  // Two words apart: two runs, each of whole words.
  library_ints[0] = 1;
  EXPECT_THAT(ChangedBySetting(6, 5, 3),
              ElementsAre(FieldsAre(at, 0u, Ints({1, 5})), FieldsAre(at, 16u, Ints({9, 3}))));
}

TEST_F(WatchedReadsTest, AnUnwatchedReadIsNoLongerReported) {
  const uint64_t at = reinterpret_cast<uint64_t>(library_ints);
  ASSERT_TRUE(ReadWatched(library_ints, sizeof library_ints).memory().watched());
  // Unwatched by another read, which is itself watched.
  ASSERT_FALSE(ReadWatched(library_bytes, 8, {at, 12345}).has_error());
  EXPECT_THAT(ChangedBySetting(6, 0, 7), IsEmpty());
  EXPECT_THAT(ChangedBySetting(7, 0, 1),
              ElementsAre(FieldsAre(reinterpret_cast<uint64_t>(library_bytes), 0u,
                                    std::string("\1\0\0\0\0\0\0\0", 8))));
}

TEST_F(WatchedReadsTest, AReadOfUnmappedMemoryIsNoLongerWatched) {
  const size_t page = sysconf(_SC_PAGESIZE);
  void* mapped = mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  ASSERT_FALSE(ReadWatched(mapped, 16).has_error());
  ASSERT_FALSE(ReadWatched(library_ints, 8).has_error());
  ASSERT_EQ(munmap(mapped, page), 0);
  // The other watched read is still reported; the unmapped one neither crashes nor is.
  EXPECT_THAT(ChangedBySetting(6, 0, 4),
              ElementsAre(FieldsAre(reinterpret_cast<uint64_t>(library_ints), 0u, Ints({4, 0}))));
  // Mapped again at the same place, it is not watched any more.
  void* again =
      mmap(mapped, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  ASSERT_EQ(again, mapped);
  static_cast<char*>(again)[0] = 1;
  EXPECT_THAT(ChangedBySetting(6, 0, 4), IsEmpty());
  munmap(again, page);
}

TEST_F(WatchedReadsTest, ReadsPastTheirCountAreNotWatched) {
  for (size_t i = 0; i < kMaxWatchedReads + 1; ++i) {
    ASSERT_FALSE(ReadWatched(library_bytes + i, 1).has_error());
  }
  const uint64_t last = reinterpret_cast<uint64_t>(library_bytes) + kMaxWatchedReads;
  EXPECT_THAT(ChangedBySetting(7, kMaxWatchedReads, 1), IsEmpty());  // the one past the count
  EXPECT_THAT(ChangedBySetting(7, kMaxWatchedReads - 1, 1),
              ElementsAre(FieldsAre(last - 1, 0u, std::string("\1"))));
  // Unwatching one makes room.
  ASSERT_FALSE(ReadWatched(library_bytes + kMaxWatchedReads, 1, {last - 1}).has_error());
  EXPECT_THAT(ChangedBySetting(7, kMaxWatchedReads, 2),
              ElementsAre(FieldsAre(last, 0u, std::string("\2"))));
}

TEST_F(WatchedReadsTest, ReadsHaveAWatchBudgetOfTheirOwn) {
  // Lasting blocks watched up to their budget take nothing of the reads'.
  v1::Request big = KeepPointerCall(7);
  v1::MemoryBlock* block = big.mutable_call()->mutable_blocks(0);
  block->set_size(kMaxWatchedBytes);
  block->set_keep(true);
  block->set_watch(true);
  ASSERT_FALSE(ExecuteOne(&executor_, big).has_error());
  v1::Response read = ReadWatched(library_ints, 16);
  ASSERT_FALSE(read.has_error()) << read.error().message();
  EXPECT_TRUE(read.memory().watched());
  // A read larger than the reads' budget is read, and not watched.
  std::vector<char> large(kMaxWatchedReadBytes + 8);
  read = ReadWatched(large.data(), large.size());
  ASSERT_FALSE(read.has_error()) << read.error().message();
  EXPECT_FALSE(read.memory().watched());
  EXPECT_THAT(ChangedBySetting(6, 0, 1),
              ElementsAre(FieldsAre(reinterpret_cast<uint64_t>(library_ints), 0u, Ints({1, 0}))));
}

TEST_F(WatchedReadsTest, ReadsOfOneAddressAndTwoSizesAreWatchedSideBySide) {
  const uint64_t at = reinterpret_cast<uint64_t>(library_ints);
  ASSERT_TRUE(ReadWatched(library_ints, sizeof library_ints).memory().watched());
  ASSERT_TRUE(ReadWatched(library_ints, 8).memory().watched());
  EXPECT_THAT(ChangedBySetting(6, 4, 2), ElementsAre(FieldsAre(at, 16u, Ints({2, 0}))));
  EXPECT_THAT(ChangedBySetting(6, 1, 3),
              ElementsAre(FieldsAre(at, 0u, Ints({0, 3})), FieldsAre(at, 0u, Ints({0, 3}))));
  // An unwatch ends both, even from a read that then fails (past the size limit).
  v1::Response refused = ReadWatched(library_bytes, kMaxMemoryRequestBytes + 1, {at});
  EXPECT_TRUE(refused.has_error());
  EXPECT_THAT(ChangedBySetting(6, 1, 4), IsEmpty());
}

TEST_F(WatchedReadsTest, WhatTheClientWritesAsHeldIsNotAChange) {
  const uint64_t at = reinterpret_cast<uint64_t>(library_ints);
  ASSERT_TRUE(ReadWatched(library_ints, sizeof library_ints).memory().watched());
  v1::Request write;
  write.mutable_write_memory()->mutable_address()->set_address(at + 4);
  write.mutable_write_memory()->mutable_address()->set_generation(kGeneration);
  write.mutable_write_memory()->set_data(Ints({5}));
  write.mutable_write_memory()->set_held(true);
  ASSERT_FALSE(ExecuteOne(&executor_, write).has_error());
  EXPECT_THAT(ChangedBySetting(6, 5, 0), IsEmpty());  // only the client's write since
  // The library putting back what was there before the client wrote is a change.
  EXPECT_THAT(ChangedBySetting(6, 1, 0), ElementsAre(FieldsAre(at, 0u, Ints({0, 0}))));
  // A write that is not what the client holds (a fill, a write without `held`: through a
  // view of worker memory) is reported, as the library's would be.
  v1::Request fill;
  fill.mutable_fill_memory()->mutable_address()->set_address(at + 16);
  fill.mutable_fill_memory()->mutable_address()->set_generation(kGeneration);
  fill.mutable_fill_memory()->set_byte(1);
  fill.mutable_fill_memory()->set_size(4);
  ASSERT_FALSE(ExecuteOne(&executor_, fill).has_error());
  write.mutable_write_memory()->set_held(false);
  ASSERT_FALSE(ExecuteOne(&executor_, write).has_error());
  EXPECT_THAT(ChangedBySetting(6, 5, 0), ElementsAre(FieldsAre(at, 0u, Ints({0, 5})),
                                                     FieldsAre(at, 16u, Ints({0x01010101, 0}))));
}

TEST_F(LastingBlocksTest, ABlockKeptByOneCallOfABatchIsThereForTheNext) {
  v1::Request request;
  v1::Call* keep = request.mutable_batch()->add_calls();
  *keep = KeepPointerCall(21).call();
  keep->mutable_blocks(0)->set_keep(true);
  *request.mutable_batch()->add_calls() = ReadKeptCall().call();
  v1::Response response = ExecuteOne(&executor_, request);
  ASSERT_FALSE(response.has_error()) << response.error().message();
  ASSERT_EQ(response.batch().results_size(), 2);
  EXPECT_EQ(response.batch().results(0).kept_size(), 1);
  EXPECT_EQ(response.batch().results(1).result().int_value(), 21);
}

}  // namespace
}  // namespace ffibox

// The arena a Batch builds its request in, with blocks kept for the next batch.
//
// A batch of thousands of calls takes a few hundred KiB of arena. Given back to malloc when
// the batch goes, that memory sits at the top of the heap, glibc returns it to the kernel,
// and the next batch faults every page of it back in: measured on batches of 4096 calls
// (bench/call_bench.cc), that was a fifth of the whole round trip's CPU time. The blocks are
// therefore all of one size and the process keeps up to kKeptBatchArenaBlocks of them for
// the next batch, whichever thread builds it.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_BATCH_ARENA_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_BATCH_ARENA_H_

#include <cstddef>
#include <memory>

#include "google/protobuf/arena.h"

namespace ffibox {
namespace client_internal {

// The size of a batch arena's blocks (larger single allocations get a block of their own,
// which is not kept).
inline constexpr size_t kBatchArenaBlockBytes = 64 << 10;
// How many free blocks the process keeps: 4 MiB, a few of the largest batches' requests.
inline constexpr size_t kKeptBatchArenaBlocks = 64;

// A new arena whose blocks come from, and go back to, the kept ones.
std::unique_ptr<google::protobuf::Arena> NewBatchArena();

// How many free blocks are kept now.
size_t KeptBatchArenaBlocks();

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_BATCH_ARENA_H_

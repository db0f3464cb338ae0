// CallBlocks: the MemoryBlocks shipped with one call, placed in the worker.
//
// PreparedFunction::Invoke (core/call.h) validates the untrusted `Call.blocks`, allocates
// each block (16-aligned, zero-filled) in the call's arena, copies IN/INOUT data in, patches
// relocations with absolute addresses, resolves BlockRefs of pointer arguments, and after
// the call copies OUT/INOUT blocks back into the CallResult.
#ifndef FFIBOX_CORE_BLOCKS_H_
#define FFIBOX_CORE_BLOCKS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/arena.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

class CallBlocks {
 public:
  CallBlocks() = default;
  CallBlocks(const CallBlocks&) = delete;
  CallBlocks& operator=(const CallBlocks&) = delete;

  // Validates and places `blocks` in `arena` (which must outlive this object and the call),
  // then applies their relocations. `blocks` must stay alive while this object is used.
  // Returns INVALID_ARGUMENT naming "call.blocks[i]..." for a bad direction, data longer
  // than size, or a relocation out of bounds; RESOURCE_EXHAUSTED when the count, the total
  // size or the relocation count exceeds `limits`, or memory runs out.
  absl::Status Place(const google::protobuf::RepeatedPtrField<v1::MemoryBlock>& blocks,
                     const TypeLimits& limits, CallArena* arena);

  // The worker address `ref` designates. Returns INVALID_ARGUMENT with field "block" or
  // "offset" (relative; callers prefix their path) when the index or offset is out of range.
  absl::StatusOr<uint64_t> AddressOf(const v1::BlockRef& ref) const;

  // Appends the full contents of every OUT, INOUT and DIRECTION_UNSPECIFIED block to
  // `result->blocks`, in block order, each with its `pointers`: every word at a block offset
  // that is a multiple of 8 whose value lies in [start, start + size] of any block of the
  // call (IN blocks included), as a Relocation {offset, target {block, offset}}, in
  // increasing offset. A value that is both one block's end and another's start is reported
  // as the start of the other. At most limits.max_relocations pointers are reported per
  // call (the rest are omitted); the scan costs O(words * log blocks).
  void CopyOut(v1::CallResult* result) const;

 private:
  struct PlacedBlock {
    unsigned char* data;
    uint64_t size;
  };

  const google::protobuf::RepeatedPtrField<v1::MemoryBlock>* blocks_ = nullptr;
  PlacedBlock* placed_ = nullptr;  // in the arena, one per block
  int count_ = 0;
  size_t max_reported_pointers_ = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_BLOCKS_H_

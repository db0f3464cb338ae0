// CallBlocks: the MemoryBlocks shipped with one call, placed in the worker.
//
// PreparedFunction::Invoke (core/call.h) validates the untrusted `Call.blocks`, allocates
// each block (16-aligned, zero-filled) in the call's arena, copies IN/INOUT data in, patches
// relocations with absolute addresses, resolves BlockRefs of pointer arguments, and after
// the call copies OUT/INOUT blocks back into the CallResult.
#ifndef FFIBOX_CORE_BLOCKS_H_
#define FFIBOX_CORE_BLOCKS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/arena.h"
#include "core/call_shape.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

class CallbackResolver;  // core/marshal.h

// Worker memory that outlives a call: where MemoryBlock.keep places a block and
// MemoryBlock.at finds it again. Implemented by the worker's MemoryRequests.
class LastingMemory {
 public:
  virtual ~LastingMemory() = default;
  // `size` zeroed bytes, 16-aligned, kept until Release. RESOURCE_EXHAUSTED when out of
  // memory.
  virtual absl::StatusOr<uint64_t> AllocateLasting(uint64_t size) = 0;
  // The lasting memory at `address` after checking its generation and that it holds at
  // least `size` bytes: STALE_HANDLE, NOT_FOUND (not lasting memory) or INVALID_ARGUMENT
  // (too small), naming `field` (the request's path to the address).
  virtual absl::StatusOr<uint64_t> FindLasting(const v1::RemoteAddress& address, uint64_t size,
                                               absl::string_view field) const = 0;
  // Frees lasting memory at `address` when there is some; anything else is ignored.
  virtual void ReleaseLastingIfPresent(uint64_t address) = 0;
  // Frees memory AllocateLasting returned during a call that then failed.
  virtual void ReleaseLastingAddress(uint64_t address) = 0;

  // Watching (MemoryBlock.watch; at most kMaxWatchedBytes, core/call_shape.h). A call
  // placed the lasting block at `address`: `contents` is what the client holds of it
  // (remember it, within the watch budget), or, when the block was placed without `watch`,
  // nullptr (stop watching it).
  virtual void Watch(uint64_t address, const absl::string_view* contents) = 0;
  // A call places the lasting block at `address` again with the client's bytes `sent` (a
  // block that copies in and out): writes the words the client changed since it was told
  // what the block holds (Watch; remembered past the watch budget too) over what the library
  // left there, so that what the library wrote since, which the client has not seen, stays;
  // true. The 8 bytes at each of `pointers` (the offsets its relocations set, in increasing
  // order; the client's bytes there are its own addresses) are neither compared nor written.
  // False, with nothing written, when nothing of `sent.size()` bytes is remembered.
  virtual bool PlaceClientChanges(uint64_t address, absl::string_view sent,
                                  const std::vector<uint64_t>& pointers) = 0;
  // Whether what the client was told the lasting block at `address` holds has `value` at
  // `offset` (a pointer the client did not change since: its relocation to the same target
  // leaves what the library put there).
  virtual bool HeldWordIs(uint64_t address, uint64_t offset, uint64_t value) = 0;
  // After a call: appends to `result->changed` the runs of changed words (CallResult.changed)
  // of every watched block not among `placed` (the lasting addresses the call placed) whose
  // memory differs from what was remembered, and remembers it as it is now.
  virtual void ReportChanged(const std::vector<uint64_t>& placed, uint64_t generation,
                             v1::CallResult* result) = 0;
};

class CallBlocks {
 public:
  CallBlocks() = default;
  CallBlocks(const CallBlocks&) = delete;
  CallBlocks& operator=(const CallBlocks&) = delete;
  // Frees the lasting memory `keep` blocks got unless KeepLasting or CopyOut was called.
  ~CallBlocks();

  // The call ran: the kept blocks stay allocated whatever happens next (the library may
  // hold pointers into them).
  void KeepLasting() { reported_ = true; }

  // Places `blocks` of a call that passed ValidateCallShape (core/call_shape.h: count,
  // directions, sizes, totals) in `arena` (which must outlive this object and the call),
  // or, for `keep` and `at` blocks, in `lasting` memory (nullptr refuses them), then
  // applies their relocations. A block with a `shared_offset` has its bytes in `shared` (the
  // same-host channel's shared area: the call's shape was validated against its size): a
  // lasting one is placed as any lasting block and its bytes copied in from there (IN,
  // INOUT), any other is placed there, and zeroed when OUT. A watched IN block is what the client
  // holds as placed: its Watch is told here. `blocks` must stay alive while this object is used.
  // A relocation naming a callback gets its closure's address from `callbacks` (nullptr:
  // such a relocation is UNIMPLEMENTED). Returns INVALID_ARGUMENT naming
  // "call.blocks[i].relocations[j]..." for a relocation out of bounds, the resolver's error
  // for a callback that is not defined or was freed; UNIMPLEMENTED for a lasting block
  // without `lasting`; RESOURCE_EXHAUSTED when memory runs out; FindLasting's errors for `at`.
  absl::Status Place(const google::protobuf::RepeatedPtrField<v1::MemoryBlock>& blocks,
                     const TypeLimits& limits, CallArena* arena, LastingMemory* lasting = nullptr,
                     absl::Span<char> shared = {}, const CallbackResolver* callbacks = nullptr);

  // The worker address `ref` designates. Returns INVALID_ARGUMENT with field "block" or
  // "offset" (relative; callers prefix their path) when the index or offset is out of range.
  absl::StatusOr<uint64_t> AddressOf(const v1::BlockRef& ref) const;

  // Appends the full contents of every OUT, INOUT and DIRECTION_UNSPECIFIED block to
  // `result->blocks`, in block order, each with its `pointers`: every word at a block offset
  // that is a multiple of 8 whose value lies in [start, start + size] of any block of the
  // call (IN blocks included), as a Relocation {offset, target {block, offset}}, in
  // increasing offset; a block with a `shared_offset` is reported as `shared`, without its
  // bytes: a lasting one's bytes are copied to its spot of the area (and scanned as any
  // block's), one placed there is not scanned. A value that is both one block's end and another's
  // start is reported as the start of the other. At most limits.max_relocations pointers are
  // reported per call (the rest are omitted); the scan costs O(words * log blocks). Reports where
  // each `keep` block lives in `result->kept`, stamped with `generation`. Then tells the lasting
  // memory what the client holds of each lasting block the call placed and copies back
  // (LastingMemory::Watch; an IN block's was told by Place) and, with `report_changed`,
  // appends what the library changed outside this call in watched blocks to
  // `result->changed`.
  void CopyOut(v1::CallResult* result, uint64_t generation, bool report_changed = true);

  // While it lives, the blocks `blocks` placed are those of a call running on this thread:
  // EndOfRunningBlock finds them. PreparedFunction::Invoke makes one around the native call,
  // so a callback the library calls on that thread knows which objects its pointer
  // arguments point into. Nests (a call made inside a callback); lives on one thread.
  class Running {
   public:
    explicit Running(const CallBlocks* blocks);
    ~Running();
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;

   private:
    friend class CallBlocks;
    const CallBlocks* const blocks_;
    const Running* const outer_;
    mutable bool kept_told_ = false;  // TellKept told this call's kept blocks
  };

  // The first time it is asked during the innermost call running on this thread (Running):
  // appends where that call placed each block it sent with `keep` to `kept`
  // (CallbackInvoke.kept: one KeptBlock per such block, in block order, stamped with
  // `generation`); later, or with no call running, nothing.
  static void TellKept(uint64_t generation,
                       google::protobuf::RepeatedPtrField<v1::KeptBlock>* kept);

  // One past the last byte of the block that holds `address` (data <= address < data +
  // size) among the blocks of the calls running on this thread (Running), the innermost
  // call's first; 0 when no such block holds it. The scan costs O(blocks of those calls).
  static uint64_t EndOfRunningBlock(uint64_t address);

 private:
  struct PlacedBlock {
    unsigned char* data;
    uint64_t size;
    bool merged;  // only the client's changes went in (LastingMemory::PlaceClientChanges)
  };

  // Appends a KeptBlock for each block sent with `keep`, in block order.
  void AppendKept(uint64_t generation,
                  google::protobuf::RepeatedPtrField<v1::KeptBlock>* kept) const;

  // CopyOut's part for lasting memory: Watch for each lasting block placed, then
  // ReportChanged when `report_changed`.
  void ReportLasting(v1::CallResult* result, uint64_t generation, bool report_changed);

  // Memory for block `index` of `size` bytes: in `arena`, or lasting memory.
  absl::StatusOr<unsigned char*> Allocate(const v1::MemoryBlock& block, uint64_t size, int index,
                                          CallArena* arena, absl::Span<char> shared);

  const google::protobuf::RepeatedPtrField<v1::MemoryBlock>* blocks_ = nullptr;
  PlacedBlock* placed_ = nullptr;  // in the arena, one per block
  int count_ = 0;
  LastingMemory* lasting_ = nullptr;
  absl::Span<char> shared_;  // the same-host channel's shared area, or empty
  bool reported_ = false;    // the kept blocks outlive this object (KeepLasting, CopyOut)
  size_t max_reported_pointers_ = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_BLOCKS_H_

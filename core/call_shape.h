// The shape of an untrusted `ffibox.v1.Call` against its function's signature: the one
// validator of a call message, run by the broker before it forwards a call
// (server/broker/session.cc) and by the worker before it places or marshals anything
// (core/call.h); the broker hands the worker its limits (WorkerSettings.max_block_bytes),
// so both refuse the same calls with the same error. Also the one validator of a memory
// request, run by the broker and, for those a client sends on the same-host channel, by
// the worker.
#ifndef FFIBOX_CORE_CALL_SHAPE_H_
#define FFIBOX_CORE_CALL_SHAPE_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// The most bytes of lasting blocks a worker watches (MemoryBlock.watch): each call compares
// them all, so this bounds what watching adds to a call (about 25 µs per MiB watched,
// docs/python.md) and, with kMaxWatchedReadBytes, what one call's result may report changed
// (core/call_answer.h).
inline constexpr uint64_t kMaxWatchedBytes = uint64_t{4} << 20;
// The most bytes of reads a worker watches (ReadMemory.watch), a budget of their own so that
// they never take the lasting blocks' (and the most bytes of a read reported changed).
inline constexpr uint64_t kMaxWatchedReadBytes = uint64_t{4} << 20;
// The most reads a worker watches: each is read again after every call (SafeReadEach), so
// this bounds that too.
inline constexpr size_t kMaxWatchedReads = 4096;
// The most bytes one call's result may report changed (CallResult.changed): the watched
// blocks' and the watched reads' together.
inline constexpr uint64_t kMaxChangedBytes = kMaxWatchedBytes + kMaxWatchedReadBytes;
// A changed run's offset is checked against kMaxWatchedBytes, whichever it is of.
static_assert(kMaxWatchedReadBytes <= kMaxWatchedBytes);
// The most characters one ReadString returns (and, when it names no max_length, reads).
inline constexpr uint64_t kMaxStringUnits = uint64_t{16} << 20;
// The most runs of changed words one watched block is reported in (CallResult.changed);
// more are reported as one run from the first to the last.
inline constexpr size_t kMaxChangedRuns = 64;

// OK when `call` fits `signature` within `limits`: variadic types only for a variadic
// function, each a valid non-void type; fixed + variadic arguments at most limits.max_args
// and exactly as many args; at most limits.max_blocks blocks and as many releases; each
// block of a known direction, not both kept and placed, watched only when kept or placed,
// its data no longer than its size,
// all blocks together at most limits.max_block_bytes and limits.max_relocations
// relocations. Blocks in a shared area (MemoryBlock.shared_offset) only when `shared_bytes`
// (the size of the area the call may use; 0 on every path but a same-host channel's) is not
// 0: each non-empty, without data, 16-aligned, inside the area and overlapping no other;
// their bytes do not count against limits.max_block_bytes (the area bounds them).
// INVALID_ARGUMENT naming the field, or RESOURCE_EXHAUSTED for a limit.
// Per-value checks (does this value fit that C type?) are the marshalling's.
absl::Status ValidateCallShape(const v1::Call& call, const v1::Signature& signature,
                               const TypeLimits& limits, uint64_t shared_bytes = 0);

// OK when `batch` has at least one call and at most limits.max_batch_calls, and the blocks
// of all its calls together stay within limits.max_block_bytes (a batch is one request: its
// blocks are held and returned together). INVALID_ARGUMENT naming "batch.calls" for an
// empty batch; RESOURCE_EXHAUSTED for too many calls, or naming the call whose blocks pass
// the byte limit (InBatch). Each call's own shape is ValidateCallShape's, with its
// function's signature.
absl::Status ValidateBatchShape(const v1::Batch& batch, const TypeLimits& limits);

// `status`, an error about one call (naming "call..." in its field and message), as the
// error of call `index` of a batch: "batch.calls[index]..." and Error.batch_index = index.
// OK stays OK.
absl::Status InBatch(const absl::Status& status, int index);

// The most reads one read_memory_list holds.
inline constexpr int kMaxReadsPerList = 4096;

// A remote-memory request (read/write/alloc/free/fill/copy memory, read_memory_list,
// read_string): every address it needs is present and `fill_memory.byte` is a byte; a
// read_memory_list holds 1 to kMaxReadsPerList reads, each valid as a read_memory; a
// read_memory unwatches at most kMaxReadsPerList addresses and watches only raw reads. Typed
// reads and writes: the type is valid within `limits` and not void; read_memory.size is 0
// or the type's size; write_memory carries either `data` or `type` + `value`, never both.
// Sizes are capped by the worker (server/worker/memory_requests.h).
absl::Status ValidateMemoryRequest(const v1::Request& request, const TypeLimits& limits);

// The layout size of a validated type (for the checks of typed memory replies).
uint64_t TypeSizeOf(const v1::Type& type);

// The byte size of `block`: its size, or its data's length when the size is 0.
inline uint64_t BlockSize(const v1::MemoryBlock& block) {
  return block.size() != 0 ? block.size() : block.data().size();
}

}  // namespace ffibox

#endif  // FFIBOX_CORE_CALL_SHAPE_H_

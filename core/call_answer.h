// What a worker's answer to a call must look like, from the call alone: the blocks it may
// return (with their sizes), the pointers it may report in them and the kept blocks it must
// name. The broker checks every worker's call results with it (server/broker/worker_reply.h),
// and so does a client that gets the answer straight from the worker on the same-host
// channel (client/cpp/internal/local_path.h). The same for callback invocations and the
// answers to memory operations, which such a client may also get on the channel.
#ifndef FFIBOX_CORE_CALL_ANSWER_H_
#define FFIBOX_CORE_CALL_ANSWER_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// What the worker's result of one call must look like beyond its kind: the blocks it may
// return and the kept blocks it must report.
struct ExpectedCallResult {
  // The size of each block (index = Call.blocks index), kNotReturned for IN blocks, which
  // are not copied back.
  std::vector<uint64_t> returned_block_sizes;
  static constexpr uint64_t kNotReturned = ~uint64_t{0};
  // The size of every block (index = Call.blocks index), the bounds of the pointers the
  // worker reports in returned blocks.
  std::vector<uint64_t> block_sizes;
  // The blocks sent with `keep`; the result reports each once, in this order.
  std::vector<uint32_t> kept_blocks;
  // Whether each block (index = Call.blocks index) has its bytes in the same-host channel's
  // shared area (MemoryBlock.shared_offset): such a block comes back marked `shared`,
  // without data, and without pointers unless it is lasting (kept or placed at lasting
  // memory, whose words are scanned as any block's). Empty: none has.
  std::vector<bool> shared_blocks;
  std::vector<bool> shared_lasting;
};

// The byte size of each of the call's blocks. Requires ValidateCallShape to have passed.
std::vector<uint64_t> BlockSizes(const v1::Call& call);

// The indexes of the call's blocks sent with `keep`, in order.
std::vector<uint32_t> KeptBlocks(const v1::Call& call);

// The byte size of each of the call's blocks that comes back (OUT / INOUT), or
// ExpectedCallResult::kNotReturned for IN blocks. Requires ValidateCallShape to have passed.
std::vector<uint64_t> ReturnedBlockSizes(const v1::Call& call);

// What the worker's result of `call` must look like: the three above, and which blocks are
// in the shared area. Requires
// ValidateCallShape to have passed.
ExpectedCallResult ExpectedResultOf(const v1::Call& call);

// Checks a call's result: only blocks the call sent as OUT/INOUT, each once with its exact
// size (a block in the shared area: marked `shared`, without data, and without pointers
// unless lasting; any other: not marked), pointers reported in them only at increasing 8-aligned
// offsets with the word inside the block and the target inside a block of the call, each kept block
// reported once, in order, and changed blocks (watched lasting memory and reads) non-empty, at
// non-zero addresses, at most kMaxChangedBytes in all (which they are only the client knows).
// INVALID_ARGUMENT describing the violation.
absl::Status CheckCallResult(const v1::CallResult& result, const ExpectedCallResult& expected);

// Where a call's `keep` blocks were placed (CallResult.kept, CallbackInvoke.kept): one
// KeptBlock per block of `expected` (the call's kept blocks), in that order, each at a
// non-zero address; else INVALID_ARGUMENT starting with `what`.
absl::Status CheckKeptBlocks(const google::protobuf::RepeatedPtrField<v1::KeptBlock>& kept,
                             const std::vector<uint32_t>& expected, absl::string_view what);

// Most bytes of pointee data a CallbackInvoke may carry in all (following bytes included).
inline constexpr size_t kMaxInvokePointeeBytes = 64 << 20;
// The longest string argument a CallbackInvoke carries (bytes of a CSTRING's, characters of
// a WSTRING's: its UTF-8 is at most four bytes a character); a longer one goes as its
// address.
inline constexpr size_t kMaxInvokeStringBytes = 1 << 20;
// The most DefineCallback.buffer_bytes may ask for.
inline constexpr uint32_t kMaxCallbackBufferBytes = 64 << 10;

// Checks a CallbackInvoke against the signature of the callback it names and the
// buffer_bytes it was defined with: a non-zero invocation id, exactly one argument per
// parameter, each of a kind a worker sends for it (a string's contents only for a string
// parameter, at most kMaxInvokeStringBytes; a record's bytes no more than its size; no
// aggregate), and pointee data only for pointer parameters, at most once per argument, each
// exactly the pointee type's size, followed by no more than buffer_bytes from the pointer on
// (none unless the pointee is smaller than buffer_bytes). Does not
// check the ids against the session (the broker's session, or the client on the same-host
// channel, does). On success `shipped` holds (argument index, size) of every pointee, which
// the client's CallbackReturn may write back. INVALID_ARGUMENT describing the violation.
absl::Status CheckCallbackInvoke(const v1::CallbackInvoke& invoke, const v1::Signature& signature,
                                 uint32_t buffer_bytes,
                                 std::vector<std::pair<uint32_t, uint64_t>>* shipped);

// Checks what read_memory returned: exactly `size` bytes in `data` (untyped), or, when
// `typed`, a value and no data, a raw value exactly `size` bytes (the type's size).
absl::Status CheckReadResult(const v1::MemoryData& memory, uint64_t size, bool typed);

// What the answer to one read_memory must hold: `size` bytes of data, or, when `typed`, a
// value of the type of that size.
struct ExpectedRead {
  uint64_t size = 0;
  bool typed = false;
};
ExpectedRead ExpectedReadOf(const v1::ReadMemory& read);

// Checks what read_memory_list returned for reads expecting `reads`: one MemoryData per
// read, each as CheckReadResult checks a read_memory's.
absl::Status CheckReadListResult(const v1::MemoryDataList& list,
                                 absl::Span<const ExpectedRead> reads);

// The result a successful answer to a request of operation `op` carries (RESULT_NOT_SET for
// operations the worker is never sent).
v1::Response::ResultCase ExpectedResult(v1::Request::OpCase op);

// Checks an answer that carries an error: an error the worker may report (CheckWorkerError),
// no result, no batch call named. INVALID_ARGUMENT describing the violation.
absl::Status CheckErrorAnswer(const v1::Response& response);

// Checks a worker's answer to `request`, one of the requests other than calls a client may
// send on the same-host channel inside a callback invocation (read_memory,
// read_memory_list, read_string, write_memory, get_layout): an error with a code the worker
// may report and no result, or the result the operation produces (reads checked by
// CheckReadResult and CheckReadListResult). INVALID_ARGUMENT
// describing the violation; FAILED_PRECONDITION for a request of another operation.
absl::Status CheckNestedAnswer(const v1::Request& request, const v1::Response& response);

// Checks an error a worker sent: a known code, none of those only the broker reports
// (WORKER_CRASHED, SANDBOX_VIOLATION, JAIL_UNAVAILABLE), and not `never_reached_worker`, which
// only the broker knows (a client sends such a call's releases again). INVALID_ARGUMENT
// otherwise.
absl::Status CheckWorkerError(const v1::Error& error);

}  // namespace ffibox

#endif  // FFIBOX_CORE_CALL_ANSWER_H_

// Conversion between what native code passes to (and expects from) a callback closure and
// the messages of the callback exchange: arguments and shipped pointees out
// (CallbackInvoke), the client's result and pointee write-backs in (CallbackReturn).
//
// The worker's closure handler (server/worker/dispatcher.h) calls these around each
// invocation. The arguments come from native code, which ffibox does not trust either: every
// memory access behind a pointer goes through core/safe_memory.h. The CallbackReturn comes
// from the client and is validated here like any other value.
#ifndef FFIBOX_CORE_CALLBACK_VALUES_H_
#define FFIBOX_CORE_CALLBACK_VALUES_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "core/call_answer.h"
#include "core/marshal.h"
#include "core/scalar_wire.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Pointees larger than this are not shipped with an invoke (the client reads them through
// remote memory instead); nor more than this from a pointer on with its following bytes
// (DefineCallback.buffer_bytes).
inline constexpr uint64_t kMaxShippedPointeeBytes = 64 << 10;
// CSTRING / WSTRING arguments longer than this (bytes; characters for WSTRING) are sent as
// their address instead of their contents (what the broker allows, core/call_answer.h).
inline constexpr size_t kMaxCallbackStringBytes = kMaxInvokeStringBytes;

// Memory behind a pointer argument that was shipped with an invoke, remembered so the
// client's new contents can be written back.
struct ShippedPointee {
  uint32_t arg = 0;      // parameter index
  uint64_t address = 0;  // where the pointer points
  uint64_t size = 0;     // exactly the bytes shipped
};

// True when the signature's result is void (unset or VOID).
bool ReturnsVoid(const v1::Signature& signature);

// Fills `invoke->args` (one per parameter) and `invoke->pointees` from the libffi argument
// pointers of a closure with the validated, non-variadic `signature`, and records each
// shipped pointee in `shipped`. Encodings:
//   - scalars as results are (UnmarshalResult); records by value as `raw`;
//   - pointers, arrays (decayed), function pointers and void* as RemoteAddress stamped with
//     `generation` (or pointer.null);
//   - CSTRING as bytes_value (the string read safely, without the NUL), WSTRING as
//     text_value; NULL as pointer.null; an unreadable string, one longer than
//     kMaxCallbackStringBytes or a wide one that is not valid Unicode as its RemoteAddress;
//   - for a PointerType parameter whose pointee is a record, an array or a scalar, and for
//     an array parameter (its whole length), the pointee's bytes as PointeeData when the
//     pointer is not NULL, the memory is readable and it is at most kMaxShippedPointeeBytes;
//     with `buffer_bytes` (DefineCallback.buffer_bytes) beyond the pointee's size, also the
//     bytes that follow it as PointeeData.following: up to `buffer_bytes` from the pointer
//     on, as far as they are readable (up to the first page that cannot be read), and no
//     further than the end of the block that holds the pointer when it points into a block
//     of a call running on this thread (CallBlocks::EndOfRunningBlock: memory the client
//     passed, such as the array qsort sorts).
// Returns INVALID_ARGUMENT / UNIMPLEMENTED only for types layout cannot handle.
absl::Status DecodeCallbackArguments(const v1::Signature& signature, void* const* args,
                                     uint64_t generation, uint64_t buffer_bytes,
                                     v1::CallbackInvoke* invoke,
                                     std::vector<ShippedPointee>* shipped);

// The arguments of a closure with the validated, non-variadic `signature` whose parameters
// are all scalars that are not pointers or strings, each encoded as DecodeCallbackArguments
// encodes it, when each of those Values is a bool, an integer or a double (ScalarBitsOfValue):
// what a scalar invocation carries (core/scalar_wire.h). False for any other signature or
// encoding (a parameter that is a pointer, a string or a record): the invocation then goes
// as a message.
bool DecodeScalarArguments(const v1::Signature& signature, void* const* args, uint64_t generation,
                           absl::InlinedVector<ScalarBits, 8>* out);

// Writes the client's new contents of a shipped pointee back to native memory. Returns
// INVALID_ARGUMENT (field "pointees[i]" relative; callers prefix) when `pointee.arg` names no
// shipped pointee or the data is not exactly the shipped size, MEMORY_FAULT when the memory
// is no longer writable. Nothing is written on error.
absl::Status WriteBackPointee(const std::vector<ShippedPointee>& shipped,
                              const v1::PointeeData& pointee);

// Stores the client's `result` (nullptr when absent) as the return value of a closure with
// the validated `signature` into libffi's closure return storage. Integer results narrower
// than ffi_arg (char, short, bool, int, ...) are written as a whole ffi_arg, sign- or
// zero-extended as libffi requires; records exactly their layout size; long double 16 bytes.
// A void signature ignores `result`. Values are checked as MarshalArgument checks them;
// string values and block pointers are refused (no storage outlives the invocation);
// callback ids resolve through `context.callbacks`. On error (INVALID_ARGUMENT with a path
// relative to the value, "" for an absent value; or the resolver's error) the storage holds
// the zero result.
absl::Status StoreCallbackResult(const v1::Signature& signature, const v1::Value* result,
                                 const MarshalContext& context, void* storage);

// Stores zero (0, 0.0, NULL, an all-zero record) as the return value of a closure with the
// validated `signature`: what native code receives when the callback failed.
void StoreZeroResult(const v1::Signature& signature, void* storage);

}  // namespace ffibox

#endif  // FFIBOX_CORE_CALLBACK_VALUES_H_

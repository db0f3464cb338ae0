// Conversion between `ffibox.v1.Value`s and the C representation libffi passes and returns.
//
// PreparedFunction::Invoke (core/call.h) calls MarshalArgument for every argument (the
// Value is untrusted: its kind is checked against the type and integers must fit the C type
// exactly) and UnmarshalResult for the return value. Strings, blocks and remote addresses
// are resolved through the call's arena and CallBlocks.
#ifndef FFIBOX_CORE_MARSHAL_H_
#define FFIBOX_CORE_MARSHAL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/arena.h"
#include "core/blocks.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// The longest string a CSTRING result may hold (bytes) before the call fails with
// RESOURCE_EXHAUSTED; WSTRING results are capped at a quarter of it in characters.
inline constexpr size_t kMaxResultStringBytes = 16u << 20;

// What a value conversion needs from the surrounding call.
struct MarshalContext {
  CallArena* arena = nullptr;          // owns string copies
  const CallBlocks* blocks = nullptr;  // resolves BlockRefs
  uint64_t generation = 0;             // required on every RemoteAddress received
};

// Writes `value` as the C type `type` into `slot`, which is 16-aligned and holds at least
// max(16, sizeof type) bytes. `type` is a validated parameter type (an array is passed as a
// pointer to its first element). Returns INVALID_ARGUMENT with a field path relative to the
// value (callers prefix "call.args[i]") for a wrong kind, an out-of-range integer or bad
// UTF-8; STALE_HANDLE for an address of another generation; UNIMPLEMENTED for callbacks and
// field-by-field aggregates; RESOURCE_EXHAUSTED when the arena cannot hold a string.
absl::Status MarshalArgument(const v1::Type& type, const v1::Value& value,
                             const MarshalContext& context, void* slot);

// Converts the return value libffi stored at `storage` for the validated non-void result
// type `type` into `out`. Pointers come back as RemoteAddresses stamped with `generation`.
// Strings are read with SafeReadCString / SafeReadWString: MEMORY_FAULT for a bad address,
// RESOURCE_EXHAUSTED beyond kMaxResultStringBytes, INVALID_ARGUMENT (field
// "signature.result") for a wide string holding a value that is not a Unicode scalar value.
absl::Status UnmarshalResult(const v1::Type& type, const void* storage, uint64_t generation,
                             v1::Value* out);

}  // namespace ffibox

#endif  // FFIBOX_CORE_MARSHAL_H_

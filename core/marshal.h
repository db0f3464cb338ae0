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
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/arena.h"
#include "core/blocks.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// The longest string a CSTRING result may hold (bytes) before the call fails with
// RESOURCE_EXHAUSTED; WSTRING results are capped at a quarter of it in characters.
inline constexpr size_t kMaxResultStringBytes = 16u << 20;

// Turns a callback id (PointerValue.callback) into the native address of its closure. The
// worker's callback table implements it; core only asks.
class CallbackResolver {
 public:
  virtual ~CallbackResolver() = default;
  // The closure address of callback `id`. Returns NOT_FOUND for an id never defined and
  // FAILED_PRECONDITION for a freed one (field "pointer.callback" in both).
  virtual absl::StatusOr<uint64_t> AddressOf(uint64_t id) const = 0;
};

// What a value conversion needs from the surrounding call.
struct MarshalContext {
  CallArena* arena = nullptr;          // owns string copies; nullptr refuses string values
  const CallBlocks* blocks = nullptr;  // resolves BlockRefs; nullptr refuses them
  uint64_t generation = 0;             // required on every RemoteAddress received
  // Resolves callback ids; nullptr refuses them (UNIMPLEMENTED).
  const CallbackResolver* callbacks = nullptr;
};

// Writes `value` as the C type `type` into `slot`, which is 16-aligned, zeroed, and holds
// at least max(16, sizeof type) bytes. `type` is a validated parameter type (an array is
// passed as a pointer to its first element; a record by value, see MarshalValue). Returns
// INVALID_ARGUMENT with a field path relative to the value (callers prefix "call.args[i]")
// for a wrong kind, an out-of-range integer or bad UTF-8; STALE_HANDLE for an address of
// another generation; the resolver's NOT_FOUND / FAILED_PRECONDITION for an unknown or freed
// callback (UNIMPLEMENTED without a resolver); RESOURCE_EXHAUSTED when the arena cannot hold
// a string.
absl::Status MarshalArgument(const v1::Type& type, const v1::Value& value,
                             const MarshalContext& context, void* slot);

// Writes `value` as a C object of the validated type `type` at `dest`, which holds exactly
// its layout size in bytes and is zeroed (padding and bits the value does not set stay
// zero). Unlike MarshalArgument, arrays are stored inline. Accepted forms:
//   - scalars and pointers as in MarshalArgument;
//   - records and arrays as `raw` (exactly the layout size) or `aggregate`:
//     structs: one element per field in declaration order, including unnamed and
//       zero-width bit fields (a zero-width bit field's element is ignored);
//     unions: exactly ONE element, which sets the member `aggregate.member` names (the
//       first by default, C's initializer rule); the union's other bytes are zeroed;
//     arrays: exactly `length` elements; arrays of 1-byte integers also take bytes_value
//       of at most `length` bytes (the rest stays zero, no NUL is added);
//     nested records and arrays nest aggregates (or raw) the same way;
//   - bit fields: int_value/uint_value (bool_value for BOOL) that fits the field's width,
//     signed (-2^(w-1)..2^(w-1)-1) or unsigned (0..2^w-1) as its declared type, written
//     into exactly its bits.
// Errors as MarshalArgument, with paths such as "aggregate.elements[1].aggregate
// .elements[0]" relative to the value.
absl::Status MarshalValue(const v1::Type& type, const v1::Value& value,
                          const MarshalContext& context, void* dest);

// Decodes the C object of the validated type `type` held in `bytes` (exactly its layout
// size) into `out`: scalars as UnmarshalResult does (strings are read at the pointer);
// records and arrays as `raw`, the bytes in the worker's layout (never field by field: the
// client owns the type and its Layout). INVALID_ARGUMENT when the size is wrong.
absl::Status DecodeValue(const v1::Type& type, absl::string_view bytes, uint64_t generation,
                         v1::Value* out);

// Stores the worker address `address` in `out` as a pointer value: pointer.null for 0, else
// a RemoteAddress stamped with `generation`.
void SetAddress(uint64_t address, uint64_t generation, v1::Value* out);

// Converts the return value libffi stored at `storage` for the validated non-void result
// type `type` into `out`. Records come back as `raw` bytes in the worker's layout (see
// DecodeValue for why). Pointers come back as RemoteAddresses stamped with `generation`.
// Strings are read with SafeReadCString / SafeReadWString: MEMORY_FAULT for a bad address,
// RESOURCE_EXHAUSTED beyond kMaxResultStringBytes; a wide string holding a value that is not
// a Unicode scalar value (no UTF-8 text) comes back as its RemoteAddress.
absl::Status UnmarshalResult(const v1::Type& type, const void* storage, uint64_t generation,
                             v1::Value* out);

}  // namespace ffibox

#endif  // FFIBOX_CORE_MARSHAL_H_

// Limits and validation for the untrusted `ffibox.v1.Type` and `Signature` messages.
//
// Every Type that arrives from a client (ResolveFunction signatures, Call.variadic_types,
// GetLayout) passes through ValidateType / ValidateSignature before layout, libffi type
// construction or marshalling looks at it; those later stages rely on the guarantees stated
// here (known enum values, bounded depth and sizes, no VOID outside results). Also holds the
// facts about C scalars (size, alignment, integer range) that layout and marshalling share.
// Called by the worker (core/call.h, GetLayout) and by tests.
#ifndef FFIBOX_CORE_TYPES_H_
#define FFIBOX_CORE_TYPES_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Caps applied to untrusted types and calls. The defaults suit a worker; tests lower them.
struct TypeLimits {
  int max_depth = 32;                       // nesting of pointer/array/record/function types
  size_t max_fields = 4096;                 // fields of one record
  uint64_t max_array_length = 1u << 28;     // elements of one array type
  uint64_t max_type_size = 1ull << 30;      // size in bytes of any one type
  size_t max_blocks = 4096;                 // MemoryBlocks in one call
  uint64_t max_block_bytes = 256ull << 20;  // total bytes of a call's MemoryBlocks
  size_t max_relocations = 1 << 16;         // relocations across a call's blocks
  size_t max_args = 256;                    // arguments of one call (fixed + variadic)
  size_t max_batch_calls = 4096;            // calls of one Batch
};

// Facts about one C scalar on the worker's ABI (x86-64 System V, LP64).
struct ScalarInfo {
  uint64_t size = 0;        // sizeof; 0 for VOID
  uint64_t alignment = 0;   // alignof; 0 for VOID
  bool is_integer = false;  // CHAR..SSIZE_T and WCHAR (not BOOL, floats or pointers)
  bool is_signed = false;   // for integers
  int64_t min = 0;          // integer range, for signed integers
  uint64_t max = 0;         // integer range (both signed and unsigned)
};

// Returns the facts for `scalar`. Requires a valid, specified enum value (all-zero info
// otherwise).
ScalarInfo GetScalarInfo(v1::Scalar scalar);

// Returns true for the scalars passed as a machine pointer (POINTER, CSTRING, WSTRING).
bool IsPointerScalar(v1::Scalar scalar);

// Checks `type` against `limits`: every kind set, every enum value known, VOID absent,
// depth, field counts, array lengths and sizes (overflow-safe), bit widths, record kind and
// pack. `path` names `type` in errors (e.g. "signature.params[0]"). Returns
// INVALID_ARGUMENT naming the bad part, or UNIMPLEMENTED for registered type ids.
// Type cycles cannot occur: a protobuf message tree is finite and acyclic, and `registered`
// (the only way to refer to another type) is refused, so depth bounds every walk.
absl::Status ValidateType(const v1::Type& type, const TypeLimits& limits, absl::string_view path);

// Checks a signature: the result (unset or VOID means void; arrays cannot be returned) and
// every parameter with ValidateType. Also refuses more than limits.max_args parameters.
absl::Status ValidateSignature(const v1::Signature& sig, const TypeLimits& limits,
                               absl::string_view path);

}  // namespace ffibox

#endif  // FFIBOX_CORE_TYPES_H_

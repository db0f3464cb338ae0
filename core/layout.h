// The worker's ABI layout of a `ffibox.v1.Type`: size, alignment and field offsets as gcc
// lays them out on x86-64 System V, including `pack` (#pragma pack(n) / ctypes `_pack_`) and
// bit fields. Marshalling uses it to size argument storage and raw aggregate values; the
// worker's GetLayout operation reports it to clients.
#ifndef FFIBOX_CORE_LAYOUT_H_
#define FFIBOX_CORE_LAYOUT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Where one field of a record lives. For a bit field, `offset` is the start of the storage
// unit of its declared type that holds it (naturally aligned; in packed records, where a
// field may straddle such units, the byte holding its first bit) and `bit_offset` counts bits
// from the least significant bit of the byte at `offset`, so the field's first bit is always
// at bit `offset * 8 + bit_offset` of the record. `size` and `alignment` are those of the
// declared type, the alignment capped by the record's pack.
struct FieldLayout {
  std::string name;
  uint64_t offset = 0;
  uint32_t bit_offset = 0;
  uint32_t bit_width = 0;  // 0 for ordinary fields
  uint64_t size = 0;
  uint64_t alignment = 0;
};

// Size and alignment of a type; `fields` is filled for records only (their direct fields).
struct TypeLayout {
  uint64_t size = 0;
  uint64_t alignment = 1;
  std::vector<FieldLayout> fields;
};

// Computes the layout of `type`. Requires ValidateType(type, ...) to have succeeded; returns
// INVALID_ARGUMENT for shapes validation would have refused (unset kinds, VOID, arithmetic
// overflow) and UNIMPLEMENTED for registered type ids.
absl::StatusOr<TypeLayout> ComputeLayout(const v1::Type& type);

// Like ComputeLayout but without field details (no allocation); for marshalling.
absl::Status ComputeSizeAndAlignment(const v1::Type& type, uint64_t* size, uint64_t* alignment);

}  // namespace ffibox

#endif  // FFIBOX_CORE_LAYOUT_H_

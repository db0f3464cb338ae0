// libffi type descriptions (`ffi_type`) for validated `ffibox.v1.Type`s.
//
// PreparedFunction (core/call.h) builds the parameter and result types of a signature once,
// at resolve time, and the types of variadic arguments per call. Struct descriptions are
// owned by an FfiTypeArena whose lifetime the caller controls (it must outlive every cif
// prepared with its types).
#ifndef FFIBOX_CORE_FFI_TYPES_H_
#define FFIBOX_CORE_FFI_TYPES_H_

#include <ffi.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// libffi's static type for a scalar (pointer-like scalars map to ffi_type_pointer, VOID to
// ffi_type_void); nullptr for SCALAR_UNSPECIFIED and unknown values.
ffi_type* FfiTypeForScalar(v1::Scalar scalar);

// Owns the ffi_type structures built for records. Pointers it returns stay valid while the
// arena lives. Not thread-safe.
class FfiTypeArena {
 public:
  // The most struct elements one arena builds (arrays inside records count per element).
  static constexpr size_t kMaxElements = 1 << 16;

  FfiTypeArena() = default;
  FfiTypeArena(const FfiTypeArena&) = delete;
  FfiTypeArena& operator=(const FfiTypeArena&) = delete;

  // Returns the libffi type describing a value of `type` passed or returned by value.
  // Requires ValidateType(type) ok. Pointers, strings and function pointers are
  // ffi_type_pointer; STRUCT records become FFI_TYPE_STRUCT with one element per field
  // (arrays inside records as repeated elements) and are checked against ComputeLayout.
  // Returns UNIMPLEMENTED for unions, bit fields and packed records by value, and for records
  // needing more than kMaxElements elements; INVALID_ARGUMENT for a top-level array (callers
  // decay array parameters to pointers) and for VOID.
  absl::StatusOr<ffi_type*> TypeFor(const v1::Type& type);

 private:
  absl::StatusOr<ffi_type*> RecordType(const v1::RecordType& record, int depth);
  absl::Status AppendElements(const v1::Type& type, int depth, std::vector<ffi_type*>* elements);

  std::vector<std::unique_ptr<ffi_type>> types_;
  std::vector<std::unique_ptr<ffi_type*[]>> element_lists_;
  size_t total_elements_ = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_FFI_TYPES_H_

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
#include <cstdint>
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
  // ffi_type_pointer.
  //
  // Records of every shape (structs, unions, pack, bit fields, nested records, arrays
  // inside) get a synthesized FFI_TYPE_STRUCT whose size and alignment are ComputeLayout's
  // and whose elements make libffi's x86-64 System V classifier reach the class gcc gives
  // the C type: over 16 bytes or with a member that is not naturally aligned, MEMORY;
  // otherwise one element per eightbyte, `double` (SSE) when every member byte in it belongs
  // to a float or double member, `uint64` (INTEGER) else. libffi copies at most 8 bytes per
  // eightbyte from the argument, so argument storage must hold max(size, 16) bytes.
  //
  // Records holding a long double (x87 classes) keep libffi's own layout, one element per
  // field, checked against ComputeLayout, and are UNIMPLEMENTED unless they are plain
  // structs. Also UNIMPLEMENTED: empty records, records with an eightbyte of pure padding,
  // records too complex to classify (more than kMaxElements members visited), and any
  // record on other ABIs. INVALID_ARGUMENT for a top-level array (callers decay array
  // parameters to pointers) and for VOID.
  absl::StatusOr<ffi_type*> TypeFor(const v1::Type& type);

 private:
  // The x86-64 System V description of a record without long double members.
  absl::StatusOr<ffi_type*> SynthesizeRecord(const v1::Type& type);
  // libffi's own layout of a plain struct (one element per field).
  absl::StatusOr<ffi_type*> RecordType(const v1::RecordType& record, int depth);
  // An element that makes libffi classify its struct as MEMORY.
  ffi_type* MemoryMarker();
  // A struct of `elements` with a preset size and alignment, owned by the arena.
  ffi_type* NewStruct(const std::vector<ffi_type*>& elements, uint64_t size, uint64_t alignment);
  absl::Status AppendElements(const v1::Type& type, int depth, std::vector<ffi_type*>* elements);

  std::vector<std::unique_ptr<ffi_type>> types_;
  std::vector<std::unique_ptr<ffi_type*[]>> element_lists_;
  size_t total_elements_ = 0;
  ffi_type* memory_marker_ = nullptr;
};

}  // namespace ffibox

#endif  // FFIBOX_CORE_FFI_TYPES_H_

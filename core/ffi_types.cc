#include "core/ffi_types.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/layout.h"

namespace ffibox {

ffi_type* FfiTypeForScalar(v1::Scalar scalar) {
  switch (scalar) {
    case v1::VOID:
      return &ffi_type_void;
    case v1::BOOL:
      return &ffi_type_uint8;
    case v1::CHAR:
    case v1::SCHAR:
    case v1::INT8:
      return &ffi_type_sint8;
    case v1::UCHAR:
    case v1::UINT8:
      return &ffi_type_uint8;
    case v1::SHORT:
    case v1::INT16:
      return &ffi_type_sint16;
    case v1::USHORT:
    case v1::UINT16:
      return &ffi_type_uint16;
    case v1::INT:
    case v1::INT32:
    case v1::WCHAR:
      return &ffi_type_sint32;
    case v1::UINT:
    case v1::UINT32:
      return &ffi_type_uint32;
    case v1::LONG:
    case v1::LONGLONG:
    case v1::INT64:
    case v1::SSIZE_T:
      return &ffi_type_sint64;
    case v1::ULONG:
    case v1::ULONGLONG:
    case v1::UINT64:
    case v1::SIZE_T:
      return &ffi_type_uint64;
    case v1::FLOAT:
      return &ffi_type_float;
    case v1::DOUBLE:
      return &ffi_type_double;
    case v1::LONGDOUBLE:
      return &ffi_type_longdouble;
    case v1::POINTER:
    case v1::CSTRING:
    case v1::WSTRING:
      return &ffi_type_pointer;
    default:
      return nullptr;
  }
}

absl::StatusOr<ffi_type*> FfiTypeArena::TypeFor(const v1::Type& type) {
  switch (type.kind_case()) {
    case v1::Type::kScalar: {
      ffi_type* scalar = FfiTypeForScalar(type.scalar());
      if (scalar == nullptr || scalar == &ffi_type_void) {
        return InvalidArgumentAt("", "VOID or unknown scalar cannot be passed by value");
      }
      return scalar;
    }
    case v1::Type::kPointer:
    case v1::Type::kFunction:
      return &ffi_type_pointer;
    case v1::Type::kArray:
      return InvalidArgumentAt("", "an array cannot be passed by value (it decays to a pointer)");
    case v1::Type::kRecord:
      return RecordType(type.record(), 0);
    case v1::Type::kRegistered:
      return ErrorStatus(v1::UNIMPLEMENTED, "registered types are not supported yet");
    case v1::Type::KIND_NOT_SET:
      break;
  }
  return InvalidArgumentAt("", "type kind is not set");
}

absl::StatusOr<ffi_type*> FfiTypeArena::RecordType(const v1::RecordType& record, int depth) {
  if (record.kind() != v1::RecordType::STRUCT) {
    return ErrorStatus(v1::UNIMPLEMENTED,
                       "passing or returning a union by value is not "
                       "supported yet; pass it by pointer");
  }
  if (record.pack() != 0 && record.pack() < 16) {
    return ErrorStatus(v1::UNIMPLEMENTED,
                       "passing or returning a packed struct by value is "
                       "not supported yet; pass it by pointer");
  }
  if (depth > 1000) return InvalidArgumentAt("", "type nesting is too deep");
  std::vector<ffi_type*> elements;
  for (const v1::Field& field : record.fields()) {
    if (field.has_bit_width()) {
      return ErrorStatus(v1::UNIMPLEMENTED,
                         "passing or returning a struct with bit fields by "
                         "value is not supported yet; pass it by pointer");
    }
    absl::Status status = AppendElements(field.type(), depth + 1, &elements);
    if (!status.ok()) return status;
  }
  if (elements.empty()) {
    return ErrorStatus(v1::UNIMPLEMENTED, "an empty struct cannot be passed by value");
  }
  auto list = std::make_unique<ffi_type*[]>(elements.size() + 1);
  std::memcpy(list.get(), elements.data(), elements.size() * sizeof(ffi_type*));
  list[elements.size()] = nullptr;
  auto described = std::make_unique<ffi_type>();
  described->size = 0;
  described->alignment = 0;
  described->type = FFI_TYPE_STRUCT;
  described->elements = list.get();
  // libffi computes size and alignment itself; refuse anything it lays out differently from
  // the gcc layout clients see, rather than pass garbage.
  std::vector<size_t> offsets(elements.size());
  if (ffi_get_struct_offsets(FFI_DEFAULT_ABI, described.get(), offsets.data()) != FFI_OK) {
    return ErrorStatus(v1::UNIMPLEMENTED, "libffi cannot describe this struct");
  }
  v1::Type as_type;
  *as_type.mutable_record() = record;
  uint64_t size = 0;
  uint64_t alignment = 0;
  absl::Status status = ComputeSizeAndAlignment(as_type, &size, &alignment);
  if (!status.ok()) return status;
  if (described->size != size || described->alignment != alignment) {
    return ErrorStatus(
        v1::UNIMPLEMENTED,
        absl::StrCat("libffi lays this struct out as ", described->size, "/", described->alignment,
                     " bytes instead of ", size, "/", alignment, "; pass it by pointer"));
  }
  element_lists_.push_back(std::move(list));
  types_.push_back(std::move(described));
  return types_.back().get();
}

absl::Status FfiTypeArena::AppendElements(const v1::Type& type, int depth,
                                          std::vector<ffi_type*>* elements) {
  if (type.kind_case() == v1::Type::kArray) {
    const v1::ArrayType& array = type.array();
    if (array.length() == 0) {
      return ErrorStatus(v1::UNIMPLEMENTED,
                         "a struct with a zero-length array cannot be passed by value");
    }
    if (array.length() > kMaxElements - total_elements_) {
      return ErrorStatus(v1::UNIMPLEMENTED, "struct has too many elements to pass by value");
    }
    ffi_type* element = nullptr;
    if (array.element().kind_case() == v1::Type::kArray) {
      // Nested arrays flatten: append the inner array `length` times.
      for (uint64_t i = 0; i < array.length(); ++i) {
        absl::Status status = AppendElements(array.element(), depth + 1, elements);
        if (!status.ok()) return status;
      }
      return absl::OkStatus();
    }
    if (array.element().kind_case() == v1::Type::kRecord) {
      absl::StatusOr<ffi_type*> record = RecordType(array.element().record(), depth + 1);
      if (!record.ok()) return record.status();
      element = *record;
    } else {
      absl::StatusOr<ffi_type*> scalar = TypeFor(array.element());
      if (!scalar.ok()) return scalar.status();
      element = *scalar;
    }
    elements->insert(elements->end(), array.length(), element);
    total_elements_ += array.length();
    return absl::OkStatus();
  }
  if (total_elements_ >= kMaxElements) {
    return ErrorStatus(v1::UNIMPLEMENTED, "struct has too many elements to pass by value");
  }
  absl::StatusOr<ffi_type*> member =
      type.kind_case() == v1::Type::kRecord ? RecordType(type.record(), depth + 1) : TypeFor(type);
  if (!member.ok()) return member.status();
  elements->push_back(*member);
  ++total_elements_;
  return absl::OkStatus();
}

}  // namespace ffibox

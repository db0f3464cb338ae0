#include "core/ffi_types.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/types.h"

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

namespace {

// What the System V classification needs to know about a record of at most 16 bytes: for
// each of its bytes whether it holds part of a float/double member, part of any other member
// (integers, pointers, bit fields), or only padding; and whether a member is not naturally
// aligned (which sends the record to memory).
class EightbyteClassifier {
 public:
  enum Class { kNone, kInteger, kSse };

  // Marks the bytes of `type` placed at `offset`. `check_alignment` follows gcc: array
  // elements after the first are not checked for alignment. Requires offset + size <= 16.
  absl::Status Walk(const v1::Type& type, uint64_t offset, bool check_alignment, int depth) {
    if (depth > 1000 || ++visited_ > FfiTypeArena::kMaxElements) {
      return ErrorStatus(v1::UNIMPLEMENTED, "record is too complex to pass by value");
    }
    switch (type.kind_case()) {
      case v1::Type::kScalar: {
        const v1::Scalar scalar = type.scalar();
        const ScalarInfo info = GetScalarInfo(scalar);
        if (info.size == 0) return InvalidArgumentAt("", "VOID or unknown scalar in a record");
        const bool sse = scalar == v1::FLOAT || scalar == v1::DOUBLE;
        if (check_alignment && offset % info.alignment != 0) unaligned_ = true;
        return Mark(offset, info.size, sse ? kFloatByte : kIntegerByte);
      }
      case v1::Type::kPointer:
      case v1::Type::kFunction:
        if (check_alignment && offset % 8 != 0) unaligned_ = true;
        return Mark(offset, 8, kIntegerByte);
      case v1::Type::kArray: {
        uint64_t element_size = 0;
        uint64_t element_alignment = 0;
        absl::Status status =
            ComputeSizeAndAlignment(type.array().element(), &element_size, &element_alignment);
        if (!status.ok()) return status;
        if (element_size == 0) return absl::OkStatus();
        for (uint64_t i = 0; i < type.array().length(); ++i) {
          status = Walk(type.array().element(), offset + i * element_size,
                        check_alignment && i == 0, depth + 1);
          if (!status.ok()) return status;
        }
        return absl::OkStatus();
      }
      case v1::Type::kRecord: {
        absl::StatusOr<TypeLayout> layout = ComputeLayout(type);
        if (!layout.ok()) return layout.status();
        for (int i = 0; i < type.record().fields_size(); ++i) {
          const v1::Field& field = type.record().fields(i);
          const FieldLayout& placed = layout->fields[i];
          absl::Status status;
          if (field.has_bit_width()) {
            // gcc classifies every bit field as INTEGER, wherever it sits.
            if (placed.bit_width == 0) continue;
            const uint64_t first_bit = (offset + placed.offset) * 8 + placed.bit_offset;
            const uint64_t last_bit = first_bit + placed.bit_width - 1;
            status = Mark(first_bit / 8, last_bit / 8 - first_bit / 8 + 1, kIntegerByte);
          } else {
            status = Walk(field.type(), offset + placed.offset, check_alignment, depth + 1);
          }
          if (!status.ok()) return status;
        }
        return absl::OkStatus();
      }
      default:
        break;
    }
    return ErrorStatus(v1::UNIMPLEMENTED, "this member cannot be passed by value");
  }

  bool unaligned() const { return unaligned_; }

  // The class of eightbyte `word`: INTEGER if any byte holds a non-float member, SSE if its
  // bytes hold only float/double members (and padding), none if it is all padding.
  Class ClassOf(uint64_t word) const {
    bool any_float = false;
    for (uint64_t i = word * 8; i < word * 8 + 8 && i < sizeof bytes_; ++i) {
      if (bytes_[i] == kIntegerByte) return kInteger;
      if (bytes_[i] == kFloatByte) any_float = true;
    }
    return any_float ? kSse : kNone;
  }

 private:
  enum ByteKind : unsigned char { kPaddingByte = 0, kFloatByte, kIntegerByte };

  absl::Status Mark(uint64_t offset, uint64_t size, ByteKind kind) {
    if (offset > sizeof bytes_ || size > sizeof bytes_ - offset) {
      return InvalidArgumentAt("", "member lies outside its record (validate the type first)");
    }
    for (uint64_t i = offset; i < offset + size; ++i) {
      // Integer data wins: an eightbyte is SSE only when nothing else shares it.
      if (bytes_[i] != kIntegerByte) bytes_[i] = kind;
    }
    return absl::OkStatus();
  }

  ByteKind bytes_[16] = {};
  bool unaligned_ = false;
  size_t visited_ = 0;
};

// Whether a LONGDOUBLE is stored inside a value of `type` (not behind a pointer).
absl::StatusOr<bool> ContainsLongDouble(const v1::Type& type, int depth, size_t* budget) {
  if (depth > 1000 || *budget == 0) {
    return ErrorStatus(v1::UNIMPLEMENTED, "record is too complex to pass by value");
  }
  --*budget;
  switch (type.kind_case()) {
    case v1::Type::kScalar:
      return type.scalar() == v1::LONGDOUBLE;
    case v1::Type::kArray:
      return ContainsLongDouble(type.array().element(), depth + 1, budget);
    case v1::Type::kRecord:
      for (const v1::Field& field : type.record().fields()) {
        absl::StatusOr<bool> found = ContainsLongDouble(field.type(), depth + 1, budget);
        if (!found.ok() || *found) return found;
      }
      return false;
    default:
      return false;
  }
}

// Whether a record and the records inside it are plain structs: no unions, bit fields or
// pack, so libffi's own struct layout describes them.
bool IsPlainRecord(const v1::RecordType& record, int depth) {
  if (depth > 1000 || record.kind() != v1::RecordType::STRUCT ||
      (record.pack() != 0 && record.pack() < 16)) {
    return false;
  }
  for (const v1::Field& field : record.fields()) {
    if (field.has_bit_width()) return false;
    const v1::Type* type = &field.type();
    while (type->kind_case() == v1::Type::kArray) type = &type->array().element();
    if (type->kind_case() == v1::Type::kRecord && !IsPlainRecord(type->record(), depth + 1)) {
      return false;
    }
  }
  return true;
}

}  // namespace

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
    case v1::Type::kRecord: {
      size_t budget = kMaxElements;
      absl::StatusOr<bool> long_double = ContainsLongDouble(type, 0, &budget);
      if (!long_double.ok()) return long_double.status();
      if (!*long_double) return SynthesizeRecord(type);
      if (!IsPlainRecord(type.record(), 0)) {
        return ErrorStatus(v1::UNIMPLEMENTED,
                           "passing or returning a union, packed or bit-field record holding a "
                           "long double by value is not supported; pass it by pointer");
      }
      return RecordType(type.record(), 0);
    }
    case v1::Type::kRegistered:
      return ErrorStatus(v1::UNIMPLEMENTED, "registered types are not supported yet");
    case v1::Type::KIND_NOT_SET:
      break;
  }
  return InvalidArgumentAt("", "type kind is not set");
}

absl::StatusOr<ffi_type*> FfiTypeArena::SynthesizeRecord(const v1::Type& type) {
#if defined(__x86_64__) && !defined(_WIN32)
  uint64_t size = 0;
  uint64_t alignment = 0;
  absl::Status status = ComputeSizeAndAlignment(type, &size, &alignment);
  if (!status.ok()) return status;
  if (size == 0) {
    return ErrorStatus(v1::UNIMPLEMENTED, "an empty record cannot be passed by value");
  }
  EightbyteClassifier classifier;
  // The System V rules: over two eightbytes (there are no vector members) or with a member
  // that is not naturally aligned, a record travels in memory.
  bool in_memory = size > 16;
  if (!in_memory) {
    status = classifier.Walk(type, 0, /*check_alignment=*/true, 0);
    if (!status.ok()) return status;
    in_memory = classifier.unaligned();
  }
  std::vector<ffi_type*> elements;
  if (in_memory) {
    elements.push_back(MemoryMarker());
  } else {
    for (uint64_t word = 0; word * 8 < size; ++word) {
      switch (classifier.ClassOf(word)) {
        case EightbyteClassifier::kInteger:
          elements.push_back(&ffi_type_uint64);
          break;
        case EightbyteClassifier::kSse:
          elements.push_back(&ffi_type_double);
          break;
        case EightbyteClassifier::kNone:
          return ErrorStatus(v1::UNIMPLEMENTED,
                             "a record with an eightbyte of only padding cannot be passed by "
                             "value; pass it by pointer");
      }
    }
  }
  return NewStruct(elements, size, alignment);
#else
  (void)type;
  return ErrorStatus(v1::UNIMPLEMENTED,
                     "records by value are only supported on x86-64 System V; pass by pointer");
#endif
}

ffi_type* FfiTypeArena::MemoryMarker() {
  if (memory_marker_ == nullptr) {
    // libffi's x86-64 classifier sends any struct holding an element over 32 bytes to
    // memory; the marker is never laid out or copied, only classified.
    static ffi_type* marker_elements[] = {&ffi_type_uint8, nullptr};
    auto marker = std::make_unique<ffi_type>();
    marker->size = 64;
    marker->alignment = 1;
    marker->type = FFI_TYPE_STRUCT;
    marker->elements = marker_elements;
    memory_marker_ = marker.get();
    types_.push_back(std::move(marker));
  }
  return memory_marker_;
}

ffi_type* FfiTypeArena::NewStruct(const std::vector<ffi_type*>& elements, uint64_t size,
                                  uint64_t alignment) {
  auto list = std::make_unique<ffi_type*[]>(elements.size() + 1);
  std::memcpy(list.get(), elements.data(), elements.size() * sizeof(ffi_type*));
  list[elements.size()] = nullptr;
  auto described = std::make_unique<ffi_type>();
  // A non-zero size tells libffi the type is already laid out: it keeps the C size and
  // alignment and only classifies the elements.
  described->size = size;
  described->alignment = static_cast<unsigned short>(alignment);
  described->type = FFI_TYPE_STRUCT;
  described->elements = list.get();
  element_lists_.push_back(std::move(list));
  types_.push_back(std::move(described));
  return types_.back().get();
}

absl::StatusOr<ffi_type*> FfiTypeArena::RecordType(const v1::RecordType& record, int depth) {
  if (!IsPlainRecord(record, 0)) {
    return ErrorStatus(v1::UNIMPLEMENTED, "not a plain struct (internal: use SynthesizeRecord)");
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

#include "core/types.h"

#include <cwchar>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {
namespace {

template <typename T>
constexpr ScalarInfo IntegerInfo() {
  ScalarInfo info;
  info.size = sizeof(T);
  info.alignment = alignof(T);
  info.is_integer = true;
  info.is_signed = std::numeric_limits<T>::is_signed;
  info.min = static_cast<int64_t>(std::numeric_limits<T>::min());
  info.max = static_cast<uint64_t>(std::numeric_limits<T>::max());
  return info;
}

template <typename T>
constexpr ScalarInfo PlainInfo() {
  ScalarInfo info;
  info.size = sizeof(T);
  info.alignment = alignof(T);
  return info;
}

// An upper bound of a type's size and its exact alignment, computed while validating so
// that later stages never see a type whose layout arithmetic could overflow. For records the
// bound lays every bit field out as a whole field of its declared type, which can only be
// larger than the real layout.
struct SizeBound {
  uint64_t size = 0;
  uint64_t alignment = 1;
};

uint64_t RoundUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

class TypeValidator {
 public:
  explicit TypeValidator(const TypeLimits& limits) : limits_(limits) {}

  absl::Status Validate(const v1::Type& type, int depth, const std::string& path,
                        SizeBound* bound) {
    if (depth > limits_.max_depth) {
      return InvalidArgumentAt(
          path, absl::StrCat("type nesting exceeds the limit of ", limits_.max_depth, " levels"));
    }
    switch (type.kind_case()) {
      case v1::Type::kScalar:
        return ValidateScalar(type.scalar(), path, bound);
      case v1::Type::kPointer: {
        if (!type.pointer().has_pointee()) {
          return InvalidArgumentAt(path + ".pointer.pointee", "pointee type is not set");
        }
        SizeBound ignored;
        absl::Status status =
            Validate(type.pointer().pointee(), depth + 1, path + ".pointer.pointee", &ignored);
        if (!status.ok()) return status;
        *bound = {8, 8};
        return absl::OkStatus();
      }
      case v1::Type::kArray:
        return ValidateArray(type.array(), depth, path + ".array", bound);
      case v1::Type::kRecord:
        return ValidateRecord(type.record(), depth, path + ".record", bound);
      case v1::Type::kFunction: {
        absl::Status status = ValidateSig(type.function(), depth + 1, path + ".function");
        if (!status.ok()) return status;
        *bound = {8, 8};
        return absl::OkStatus();
      }
      case v1::Type::kRegistered:
        return ErrorStatus(v1::UNIMPLEMENTED,
                           absl::StrCat(path, ": registered types are not supported yet"));
      case v1::Type::KIND_NOT_SET:
        break;
    }
    return InvalidArgumentAt(path, "type kind is not set");
  }

  absl::Status ValidateSig(const v1::Signature& sig, int depth, const std::string& path) {
    if (depth > limits_.max_depth) {
      return InvalidArgumentAt(
          path, absl::StrCat("type nesting exceeds the limit of ", limits_.max_depth, " levels"));
    }
    if (static_cast<size_t>(sig.params_size()) > limits_.max_args) {
      return InvalidArgumentAt(path + ".params",
                               absl::StrCat("more than ", limits_.max_args, " parameters"));
    }
    const v1::Type& result = sig.result();
    bool is_void =
        sig.has_result() && result.kind_case() == v1::Type::kScalar && result.scalar() == v1::VOID;
    if (sig.has_result() && !is_void) {
      if (result.kind_case() == v1::Type::kArray) {
        return InvalidArgumentAt(path + ".result", "a C function cannot return an array");
      }
      SizeBound ignored;
      absl::Status status = Validate(result, depth + 1, path + ".result", &ignored);
      if (!status.ok()) return status;
    }
    for (int i = 0; i < sig.params_size(); ++i) {
      SizeBound ignored;
      absl::Status status =
          Validate(sig.params(i), depth + 1, absl::StrCat(path, ".params[", i, "]"), &ignored);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

 private:
  absl::Status ValidateScalar(v1::Scalar scalar, const std::string& path, SizeBound* bound) {
    if (!v1::Scalar_IsValid(scalar)) {
      return InvalidArgumentAt(path, absl::StrCat("unknown scalar type ", scalar));
    }
    if (scalar == v1::SCALAR_UNSPECIFIED) {
      return InvalidArgumentAt(path, "scalar type is SCALAR_UNSPECIFIED");
    }
    if (scalar == v1::VOID) {
      return InvalidArgumentAt(path,
                               "VOID is only allowed as a function result (use POINTER for void*)");
    }
    ScalarInfo info = GetScalarInfo(scalar);
    *bound = {info.size, info.alignment};
    return absl::OkStatus();
  }

  absl::Status ValidateArray(const v1::ArrayType& array, int depth, const std::string& path,
                             SizeBound* bound) {
    if (!array.has_element()) {
      return InvalidArgumentAt(path + ".element", "element type is not set");
    }
    if (array.length() > limits_.max_array_length) {
      return InvalidArgumentAt(
          path + ".length", absl::StrCat("array length ", array.length(), " exceeds the limit of ",
                                         limits_.max_array_length));
    }
    SizeBound element;
    absl::Status status = Validate(array.element(), depth + 1, path + ".element", &element);
    if (!status.ok()) return status;
    uint64_t size = 0;
    if (__builtin_mul_overflow(element.size, array.length(), &size) ||
        size > limits_.max_type_size) {
      return InvalidArgumentAt(path, absl::StrCat("array of ", array.length(),
                                                  " elements exceeds the type size limit of ",
                                                  limits_.max_type_size, " bytes"));
    }
    *bound = {size, element.alignment};
    return absl::OkStatus();
  }

  absl::Status ValidateRecord(const v1::RecordType& record, int depth, const std::string& path,
                              SizeBound* bound) {
    if (record.kind() != v1::RecordType::STRUCT && record.kind() != v1::RecordType::UNION) {
      return InvalidArgumentAt(path + ".kind", "record kind must be STRUCT or UNION");
    }
    uint32_t pack = record.pack();
    if (pack != 0 && pack != 1 && pack != 2 && pack != 4 && pack != 8 && pack != 16) {
      return InvalidArgumentAt(path + ".pack",
                               absl::StrCat("pack must be 0, 1, 2, 4, 8 or 16, not ", pack));
    }
    if (record.fields_size() == 0) {
      return InvalidArgumentAt(path + ".fields", "a record needs at least one field");
    }
    if (static_cast<size_t>(record.fields_size()) > limits_.max_fields) {
      return InvalidArgumentAt(
          path + ".fields",
          absl::StrCat(record.fields_size(), " fields exceed the limit of ", limits_.max_fields));
    }
    bool is_union = record.kind() == v1::RecordType::UNION;
    uint64_t size = 0;
    uint64_t alignment = 1;
    for (int i = 0; i < record.fields_size(); ++i) {
      const v1::Field& field = record.fields(i);
      std::string field_path = absl::StrCat(path, ".fields[", i, "]");
      if (!field.has_type()) {
        return InvalidArgumentAt(field_path + ".type", "field type is not set");
      }
      SizeBound member;
      absl::Status status = Validate(field.type(), depth + 1, field_path + ".type", &member);
      if (!status.ok()) return status;
      if (field.has_bit_width()) {
        status = ValidateBitWidth(field, field_path);
        if (!status.ok()) return status;
      }
      uint64_t member_alignment = member.alignment;
      if (pack != 0 && member_alignment > pack) member_alignment = pack;
      // Zero-width bit fields align to their full type even under pack (gcc).
      if (field.has_bit_width() && field.bit_width() == 0) member_alignment = member.alignment;
      if (member_alignment > alignment) alignment = member_alignment;
      uint64_t end = 0;
      uint64_t start = is_union ? 0 : RoundUp(size, member_alignment);
      if (__builtin_add_overflow(start, member.size, &end) || end > limits_.max_type_size) {
        return InvalidArgumentAt(field_path, absl::StrCat("record exceeds the type size limit of ",
                                                          limits_.max_type_size, " bytes"));
      }
      if (!is_union || end > size) size = end;
    }
    size = RoundUp(size, alignment);
    if (size > limits_.max_type_size) {
      return InvalidArgumentAt(path, absl::StrCat("record exceeds the type size limit of ",
                                                  limits_.max_type_size, " bytes"));
    }
    *bound = {size, alignment};
    return absl::OkStatus();
  }

  absl::Status ValidateBitWidth(const v1::Field& field, const std::string& path) {
    const v1::Type& type = field.type();
    bool integer_like = type.kind_case() == v1::Type::kScalar &&
                        (type.scalar() == v1::BOOL || GetScalarInfo(type.scalar()).is_integer);
    if (!integer_like) {
      return InvalidArgumentAt(path + ".bit_width", "only integer fields can be bit fields");
    }
    int64_t max_bits =
        type.scalar() == v1::BOOL ? 1 : static_cast<int64_t>(GetScalarInfo(type.scalar()).size * 8);
    if (field.bit_width() < 0 || field.bit_width() > max_bits) {
      return InvalidArgumentAt(path + ".bit_width",
                               absl::StrCat("bit width ", field.bit_width(), " is outside 0..",
                                            max_bits, " for this type"));
    }
    return absl::OkStatus();
  }

  const TypeLimits& limits_;
};

}  // namespace

ScalarInfo GetScalarInfo(v1::Scalar scalar) {
  switch (scalar) {
    case v1::BOOL:
      return PlainInfo<bool>();
    case v1::CHAR:
      return IntegerInfo<char>();
    case v1::SCHAR:
      return IntegerInfo<signed char>();
    case v1::UCHAR:
      return IntegerInfo<unsigned char>();
    case v1::SHORT:
      return IntegerInfo<short>();
    case v1::USHORT:
      return IntegerInfo<unsigned short>();
    case v1::INT:
      return IntegerInfo<int>();
    case v1::UINT:
      return IntegerInfo<unsigned int>();
    case v1::LONG:
      return IntegerInfo<long>();
    case v1::ULONG:
      return IntegerInfo<unsigned long>();
    case v1::LONGLONG:
      return IntegerInfo<long long>();
    case v1::ULONGLONG:
      return IntegerInfo<unsigned long long>();
    case v1::INT8:
      return IntegerInfo<int8_t>();
    case v1::UINT8:
      return IntegerInfo<uint8_t>();
    case v1::INT16:
      return IntegerInfo<int16_t>();
    case v1::UINT16:
      return IntegerInfo<uint16_t>();
    case v1::INT32:
      return IntegerInfo<int32_t>();
    case v1::UINT32:
      return IntegerInfo<uint32_t>();
    case v1::INT64:
      return IntegerInfo<int64_t>();
    case v1::UINT64:
      return IntegerInfo<uint64_t>();
    case v1::SIZE_T:
      return IntegerInfo<size_t>();
    case v1::SSIZE_T:
      return IntegerInfo<ssize_t>();
    case v1::WCHAR:
      return IntegerInfo<wchar_t>();
    case v1::FLOAT:
      return PlainInfo<float>();
    case v1::DOUBLE:
      return PlainInfo<double>();
    case v1::LONGDOUBLE:
      return PlainInfo<long double>();
    case v1::POINTER:
      return PlainInfo<void*>();
    case v1::CSTRING:
      return PlainInfo<char*>();
    case v1::WSTRING:
      return PlainInfo<wchar_t*>();
    default:
      return ScalarInfo();
  }
}

bool IsPointerScalar(v1::Scalar scalar) {
  return scalar == v1::POINTER || scalar == v1::CSTRING || scalar == v1::WSTRING;
}

absl::Status ValidateType(const v1::Type& type, const TypeLimits& limits, absl::string_view path) {
  SizeBound bound;
  return TypeValidator(limits).Validate(type, 0, std::string(path), &bound);
}

absl::Status ValidateSignature(const v1::Signature& sig, const TypeLimits& limits,
                               absl::string_view path) {
  return TypeValidator(limits).ValidateSig(sig, 0, std::string(path));
}

}  // namespace ffibox

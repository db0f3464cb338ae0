#include "core/marshal.h"

#include <ffi.h>

#include <cstring>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/errors.h"
#include "core/layout.h"
#include "core/safe_memory.h"
#include "core/types.h"
#include "core/utf8.h"

namespace ffibox {
namespace {

const char* KindName(const v1::Value& value) {
  switch (value.kind_case()) {
    case v1::Value::kBoolValue:
      return "bool_value";
    case v1::Value::kIntValue:
      return "int_value";
    case v1::Value::kUintValue:
      return "uint_value";
    case v1::Value::kFloatValue:
      return "float_value";
    case v1::Value::kBytesValue:
      return "bytes_value";
    case v1::Value::kTextValue:
      return "text_value";
    case v1::Value::kPointer:
      return "pointer";
    case v1::Value::kAggregate:
      return "aggregate";
    case v1::Value::kRaw:
      return "raw";
    case v1::Value::KIND_NOT_SET:
      break;
  }
  return "no value";
}

absl::Status WrongKind(const v1::Value& value, absl::string_view type_name,
                       absl::string_view accepted) {
  return InvalidArgumentAt("", absl::StrCat("got ", KindName(value), " for a ", type_name,
                                            " argument; expected ", accepted));
}

absl::Status MarshalInteger(v1::Scalar scalar, const v1::Value& value, void* slot) {
  const ScalarInfo info = GetScalarInfo(scalar);
  // Named in errors only: the name is a descriptor lookup, too slow for every argument.
  auto type_name = [scalar] { return v1::Scalar_Name(scalar); };
  uint64_t bits = 0;
  switch (value.kind_case()) {
    case v1::Value::kIntValue: {
      const int64_t v = value.int_value();
      bool fits = info.is_signed ? (v >= info.min && v <= static_cast<int64_t>(info.max))
                                 : (v >= 0 && static_cast<uint64_t>(v) <= info.max);
      if (!fits) {
        return InvalidArgumentAt("", absl::StrCat(v, " does not fit in ", type_name(), " (",
                                                  info.min, "..", info.max, ")"));
      }
      bits = static_cast<uint64_t>(v);
      break;
    }
    case v1::Value::kUintValue:
      if (value.uint_value() > info.max) {
        return InvalidArgumentAt(
            "", absl::StrCat(value.uint_value(), " does not fit in ", type_name(), " (", info.min,
                             "..", info.max, ")"));
      }
      bits = value.uint_value();
      break;
    case v1::Value::kBytesValue:
      if (scalar == v1::CHAR && value.bytes_value().size() == 1) {
        bits = static_cast<uint64_t>(static_cast<unsigned char>(value.bytes_value()[0]));
        break;
      }
      return InvalidArgumentAt(
          "",
          absl::StrCat("bytes_value of length ", value.bytes_value().size(), " for a ", type_name(),
                       scalar == v1::CHAR ? " argument; expected exactly 1 byte"
                                          : " argument; expected an integer"));
    default:
      return WrongKind(value, type_name(),
                       scalar == v1::CHAR ? "int_value, uint_value or 1-byte bytes_value"
                                          : "int_value or uint_value");
  }
  // Little-endian: the low `size` bytes are the C value.
  std::memcpy(slot, &bits, info.size);
  return absl::OkStatus();
}

// The bytes of a long double that hold its value: 10 for the x87 extended format, which
// x86-64 stores in 16.
constexpr size_t kLongDoubleValueBytes =
    std::numeric_limits<long double>::digits == 64 ? 10 : sizeof(long double);

absl::Status MarshalFloating(v1::Scalar scalar, const v1::Value& value, void* slot) {
  long double v = 0;
  switch (value.kind_case()) {
    case v1::Value::kFloatValue:
      v = value.float_value();
      break;
    case v1::Value::kIntValue:
      v = static_cast<long double>(value.int_value());
      break;
    case v1::Value::kUintValue:
      v = static_cast<long double>(value.uint_value());
      break;
    default:
      return WrongKind(value, v1::Scalar_Name(scalar), "float_value, int_value or uint_value");
  }
  if (scalar == v1::FLOAT) {
    float f = static_cast<float>(v);
    std::memcpy(slot, &f, sizeof f);
  } else if (scalar == v1::DOUBLE) {
    double d = static_cast<double>(v);
    std::memcpy(slot, &d, sizeof d);
  } else {
    // Only the bytes that hold the value: the rest of a long double's storage is padding,
    // which the compiler need not write, and copying it would leak stack bytes into the
    // zeroed slot.
    std::memcpy(slot, &v, kLongDoubleValueBytes);
  }
  return absl::OkStatus();
}

absl::Status MarshalBool(const v1::Value& value, void* slot) {
  bool b = false;
  switch (value.kind_case()) {
    case v1::Value::kBoolValue:
      b = value.bool_value();
      break;
    case v1::Value::kIntValue:
      b = value.int_value() != 0;
      break;
    case v1::Value::kUintValue:
      b = value.uint_value() != 0;
      break;
    default:
      return WrongKind(value, "BOOL", "bool_value, int_value or uint_value");
  }
  *static_cast<unsigned char*>(slot) = b ? 1 : 0;
  return absl::OkStatus();
}

absl::Status MarshalPointer(const v1::PointerValue& pointer, const MarshalContext& context,
                            void* slot) {
  uint64_t address = 0;
  switch (pointer.target_case()) {
    case v1::PointerValue::kNull:
      break;
    case v1::PointerValue::kRemote:
      // Generation 0: a number no worker handed out (the caller's own), nobody's to refuse.
      if (pointer.remote().generation() != 0 &&
          pointer.remote().generation() != context.generation) {
        return ErrorStatus(v1::STALE_HANDLE,
                           absl::StrFormat("address 0x%x belongs to worker generation %u, this "
                                           "worker is generation %u",
                                           pointer.remote().address(),
                                           pointer.remote().generation(), context.generation));
      }
      address = pointer.remote().address();
      break;
    case v1::PointerValue::kBlock: {
      if (context.blocks == nullptr) {
        return InvalidArgumentAt("pointer.block", "block pointers exist only inside a call");
      }
      absl::StatusOr<uint64_t> resolved = context.blocks->AddressOf(pointer.block());
      if (!resolved.ok()) return PrefixField(resolved.status(), "pointer.block");
      address = *resolved;
      break;
    }
    case v1::PointerValue::kCallback: {
      if (context.callbacks == nullptr) {
        return ErrorStatus(v1::UNIMPLEMENTED, "callback pointers are not accepted here");
      }
      absl::StatusOr<uint64_t> resolved = context.callbacks->AddressOf(pointer.callback());
      if (!resolved.ok()) return resolved.status();
      address = *resolved;
      break;
    }
    case v1::PointerValue::TARGET_NOT_SET:
      return InvalidArgumentAt("pointer", "pointer target is not set");
  }
  std::memcpy(slot, &address, sizeof address);
  return absl::OkStatus();
}

absl::Status NoStringStorage() {
  return InvalidArgumentAt("",
                           "a string value needs storage that lives only for a call; "
                           "write a pointer to memory from alloc_memory instead");
}

absl::Status StoreAddress(const void* address, void* slot) {
  std::memcpy(slot, &address, sizeof address);
  return absl::OkStatus();
}

absl::Status MarshalCString(const v1::Value& value, const MarshalContext& context, void* slot) {
  if (value.kind_case() == v1::Value::kPointer) {
    return MarshalPointer(value.pointer(), context, slot);
  }
  if (value.kind_case() != v1::Value::kBytesValue) {
    return WrongKind(value, "CSTRING", "bytes_value or pointer");
  }
  if (context.arena == nullptr) return NoStringStorage();
  const std::string& bytes = value.bytes_value();
  auto* copy = static_cast<char*>(context.arena->Allocate(bytes.size() + 1, 1));
  if (copy == nullptr) return ErrorStatus(v1::RESOURCE_EXHAUSTED, "out of memory for a string");
  std::memcpy(copy, bytes.data(), bytes.size());  // the arena zeroed the NUL
  return StoreAddress(copy, slot);
}

absl::Status MarshalWString(const v1::Value& value, const MarshalContext& context, void* slot) {
  if (value.kind_case() == v1::Value::kPointer) {
    return MarshalPointer(value.pointer(), context, slot);
  }
  if (value.kind_case() != v1::Value::kTextValue) {
    return WrongKind(value, "WSTRING", "text_value or pointer");
  }
  if (context.arena == nullptr) return NoStringStorage();
  const std::string& text = value.text_value();
  // At most one wchar_t per byte, plus the NUL (zeroed by the arena).
  auto* wide = static_cast<wchar_t*>(
      context.arena->Allocate((text.size() + 1) * sizeof(wchar_t), alignof(wchar_t)));
  if (wide == nullptr) return ErrorStatus(v1::RESOURCE_EXHAUSTED, "out of memory for a string");
  size_t count = 0;
  absl::Status status = DecodeUtf8(text, wide, &count);
  if (!status.ok()) return status;
  return StoreAddress(wide, slot);
}

absl::Status MarshalObject(const v1::Type& type, const v1::Value& value,
                           const MarshalContext& context, unsigned char* dest, int depth);

// Writes an integer `value` into the bit field `field` (placed by `placed`) of the record
// at `dest`, after checking that it fits the field's width.
absl::Status MarshalBitField(const v1::Field& field, const FieldLayout& placed,
                             const v1::Value& value, unsigned char* dest) {
  const uint32_t width = placed.bit_width;
  if (width == 0) return absl::OkStatus();  // closes a unit; holds no value
  const v1::Scalar scalar = field.type().scalar();
  const bool is_signed = scalar != v1::BOOL && GetScalarInfo(scalar).is_signed;
  const uint64_t max = is_signed ? (uint64_t{1} << (width - 1)) - 1
                                 : (width == 64 ? ~uint64_t{0} : (uint64_t{1} << width) - 1);
  const int64_t min = !is_signed ? 0 : (width == 64 ? INT64_MIN : -(int64_t{1} << (width - 1)));
  auto out_of_range = [&](const std::string& shown) {
    return InvalidArgumentAt(
        "", absl::StrCat(shown, " does not fit in a ", width, "-bit ",
                         is_signed ? "signed" : "unsigned", " bit field (", min, "..", max, ")"));
  };
  uint64_t bits = 0;
  if (scalar == v1::BOOL && value.kind_case() == v1::Value::kBoolValue) {
    bits = value.bool_value() ? 1 : 0;
  } else if (value.kind_case() == v1::Value::kIntValue) {
    const int64_t v = value.int_value();
    if (v < min || (v >= 0 && static_cast<uint64_t>(v) > max)) {
      return out_of_range(absl::StrCat(v));
    }
    bits = static_cast<uint64_t>(v);
  } else if (value.kind_case() == v1::Value::kUintValue) {
    if (value.uint_value() > max) return out_of_range(absl::StrCat(value.uint_value()));
    bits = value.uint_value();
  } else {
    return WrongKind(
        value, "bit field",
        scalar == v1::BOOL ? "bool_value, int_value or uint_value" : "int_value or uint_value");
  }
  const uint64_t first = placed.offset * 8 + placed.bit_offset;
  for (uint32_t i = 0; i < width; ++i) {
    const uint64_t bit = first + i;
    const unsigned char mask = static_cast<unsigned char>(1u << (bit % 8));
    if ((bits >> i) & 1) {
      dest[bit / 8] |= mask;
    } else {
      dest[bit / 8] &= static_cast<unsigned char>(~mask);
    }
  }
  return absl::OkStatus();
}

absl::Status MarshalRaw(const v1::Value& value, uint64_t size, unsigned char* dest) {
  if (value.raw().size() != size) {
    return InvalidArgumentAt("raw", absl::StrCat("raw value is ", value.raw().size(),
                                                 " bytes; the type's layout size is ", size));
  }
  std::memcpy(dest, value.raw().data(), size);
  return absl::OkStatus();
}

bool IsByteScalar(const v1::Type& type) {
  if (type.kind_case() != v1::Type::kScalar) return false;
  switch (type.scalar()) {
    case v1::CHAR:
    case v1::SCHAR:
    case v1::UCHAR:
    case v1::INT8:
    case v1::UINT8:
      return true;
    default:
      return false;
  }
}

absl::Status MarshalArray(const v1::Type& type, const v1::Value& value,
                          const MarshalContext& context, unsigned char* dest, int depth) {
  const v1::ArrayType& array = type.array();
  uint64_t element_size = 0;
  uint64_t element_alignment = 0;
  absl::Status status = ComputeSizeAndAlignment(array.element(), &element_size, &element_alignment);
  if (!status.ok()) return status;
  if (value.kind_case() == v1::Value::kRaw) {
    return MarshalRaw(value, element_size * array.length(), dest);
  }
  if (value.kind_case() == v1::Value::kBytesValue && IsByteScalar(array.element())) {
    if (value.bytes_value().size() > array.length()) {
      return InvalidArgumentAt("bytes_value",
                               absl::StrCat(value.bytes_value().size(),
                                            " bytes do not fit in an array of ", array.length()));
    }
    std::memcpy(dest, value.bytes_value().data(), value.bytes_value().size());
    return absl::OkStatus();
  }
  if (value.kind_case() != v1::Value::kAggregate) {
    return WrongKind(value, "array", "aggregate or raw");
  }
  if (value.aggregate().member() != 0) {
    return InvalidArgumentAt("aggregate.member", "names a member of a union; this is an array");
  }
  const auto& elements = value.aggregate().elements();
  if (static_cast<uint64_t>(elements.size()) != array.length()) {
    return InvalidArgumentAt(
        "aggregate.elements",
        absl::StrCat("the array has ", array.length(), " elements, the value ", elements.size()));
  }
  for (int i = 0; i < elements.size(); ++i) {
    status = MarshalObject(array.element(), elements[i], context,
                           dest + static_cast<uint64_t>(i) * element_size, depth + 1);
    if (!status.ok()) {
      return PrefixField(status, absl::StrCat("aggregate.elements[", i, "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status MarshalRecord(const v1::Type& type, const v1::Value& value,
                           const MarshalContext& context, unsigned char* dest, int depth) {
  absl::StatusOr<TypeLayout> layout = ComputeLayout(type);
  if (!layout.ok()) return layout.status();
  if (value.kind_case() == v1::Value::kRaw) return MarshalRaw(value, layout->size, dest);
  if (value.kind_case() != v1::Value::kAggregate) {
    return WrongKind(value, "record", "aggregate or raw");
  }
  const v1::RecordType& record = type.record();
  const auto& elements = value.aggregate().elements();
  auto set_field = [&](int field_index, int element_index) {
    const v1::Field& field = record.fields(field_index);
    const FieldLayout& placed = layout->fields[field_index];
    absl::Status status = field.has_bit_width()
                              ? MarshalBitField(field, placed, elements[element_index], dest)
                              : MarshalObject(field.type(), elements[element_index], context,
                                              dest + placed.offset, depth + 1);
    if (status.ok()) return status;
    return PrefixField(status, absl::StrCat("aggregate.elements[", element_index, "]"));
  };
  if (record.kind() == v1::RecordType::UNION) {
    // One member, the one the aggregate names (the first by default, as C's initializer);
    // the union's other bytes are zero.
    const uint32_t member = value.aggregate().member();
    if (member >= static_cast<uint32_t>(record.fields_size())) {
      return InvalidArgumentAt("aggregate.member",
                               absl::StrCat("is ", member, "; the union has ", record.fields_size(),
                                            " members (0 to ", record.fields_size() - 1, ")"));
    }
    if (elements.size() != 1) {
      return InvalidArgumentAt(
          "aggregate.elements",
          absl::StrCat("a union's aggregate holds exactly one element (the value of the member "
                       "it names), got ",
                       elements.size()));
    }
    std::memset(dest, 0, layout->size);
    return set_field(static_cast<int>(member), 0);
  }
  if (value.aggregate().member() != 0) {
    return InvalidArgumentAt("aggregate.member", "names a member of a union; this is a struct");
  }
  if (elements.size() != record.fields_size()) {
    return InvalidArgumentAt("aggregate.elements",
                             absl::StrCat("the struct has ", record.fields_size(),
                                          " fields, the value has ", elements.size(), " elements"));
  }
  for (int i = 0; i < record.fields_size(); ++i) {
    absl::Status status = set_field(i, i);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status MarshalObject(const v1::Type& type, const v1::Value& value,
                           const MarshalContext& context, unsigned char* dest, int depth) {
  // Validated types are far shallower; this keeps an unvalidated one from recursing forever.
  if (depth > 1000) return InvalidArgumentAt("", "value nesting is too deep");
  switch (type.kind_case()) {
    case v1::Type::kArray:
      return MarshalArray(type, value, context, dest, depth);
    case v1::Type::kRecord:
      return MarshalRecord(type, value, context, dest, depth);
    default:
      // Scalars and pointers: MarshalArgument writes exactly sizeof(type) bytes.
      return MarshalArgument(type, value, context, dest);
  }
}

absl::Status UnmarshalString(v1::Scalar scalar, uint64_t address, uint64_t generation,
                             v1::Value* out) {
  if (scalar == v1::CSTRING) {
    absl::StatusOr<std::string> text = SafeReadCString(address, kMaxResultStringBytes + 1);
    if (!text.ok()) return text.status();
    if (text->size() > kMaxResultStringBytes) {
      return ErrorStatus(v1::RESOURCE_EXHAUSTED, absl::StrCat("the returned string is longer than ",
                                                              kMaxResultStringBytes, " bytes"));
    }
    *out->mutable_bytes_value() = std::move(*text);
    return absl::OkStatus();
  }
  constexpr size_t kMaxChars = kMaxResultStringBytes / 4;
  absl::StatusOr<std::u32string> wide = SafeReadWString(address, kMaxChars + 1);
  if (!wide.ok()) return wide.status();
  if (wide->size() > kMaxChars) {
    return ErrorStatus(
        v1::RESOURCE_EXHAUSTED,
        absl::StrCat("the returned wide string is longer than ", kMaxChars, " characters"));
  }
  std::string utf8;
  if (!EncodeUtf8(*wide, &utf8)) {
    // Text is UTF-8 on the wire: a unit that is no Unicode scalar value (a lone surrogate)
    // comes back as the string's address, whose units the client reads raw and decodes as
    // its language does.
    SetAddress(address, generation, out);
    return absl::OkStatus();
  }
  *out->mutable_text_value() = std::move(utf8);
  return absl::OkStatus();
}

}  // namespace

void SetAddress(uint64_t address, uint64_t generation, v1::Value* out) {
  if (address == 0) {
    out->mutable_pointer()->set_null(true);
    return;
  }
  v1::RemoteAddress* remote = out->mutable_pointer()->mutable_remote();
  remote->set_address(address);
  remote->set_generation(generation);
}

absl::Status MarshalArgument(const v1::Type& type, const v1::Value& value,
                             const MarshalContext& context, void* slot) {
  switch (type.kind_case()) {
    case v1::Type::kScalar: {
      const v1::Scalar scalar = type.scalar();
      switch (scalar) {
        case v1::BOOL:
          return MarshalBool(value, slot);
        case v1::FLOAT:
        case v1::DOUBLE:
        case v1::LONGDOUBLE:
          return MarshalFloating(scalar, value, slot);
        case v1::CSTRING:
          return MarshalCString(value, context, slot);
        case v1::WSTRING:
          return MarshalWString(value, context, slot);
        case v1::POINTER:
          if (value.kind_case() != v1::Value::kPointer) {
            return WrongKind(value, "POINTER", "pointer");
          }
          return MarshalPointer(value.pointer(), context, slot);
        default:
          if (GetScalarInfo(scalar).is_integer) return MarshalInteger(scalar, value, slot);
          return InvalidArgumentAt("", "type cannot be passed as an argument");
      }
    }
    case v1::Type::kPointer:
    case v1::Type::kArray:
    case v1::Type::kFunction:
      if (value.kind_case() != v1::Value::kPointer) {
        return WrongKind(value, "pointer", "pointer");
      }
      return MarshalPointer(value.pointer(), context, slot);
    case v1::Type::kRecord:
      return MarshalRecord(type, value, context, static_cast<unsigned char*>(slot), 0);
    case v1::Type::kRegistered:
      return ErrorStatus(v1::UNIMPLEMENTED, "registered types are not supported yet");
    case v1::Type::KIND_NOT_SET:
      break;
  }
  return InvalidArgumentAt("", "type kind is not set");
}

absl::Status UnmarshalResult(const v1::Type& type, const void* storage, uint64_t generation,
                             v1::Value* out) {
  uint64_t raw = 0;
  std::memcpy(&raw, storage, sizeof raw);  // libffi widens integer results to ffi_arg
  switch (type.kind_case()) {
    case v1::Type::kScalar: {
      const v1::Scalar scalar = type.scalar();
      const ScalarInfo info = GetScalarInfo(scalar);
      switch (scalar) {
        case v1::BOOL:
          out->set_bool_value((raw & 0xFF) != 0);
          return absl::OkStatus();
        case v1::FLOAT: {
          float f;
          std::memcpy(&f, storage, sizeof f);
          out->set_float_value(f);
          return absl::OkStatus();
        }
        case v1::DOUBLE: {
          double d;
          std::memcpy(&d, storage, sizeof d);
          out->set_float_value(d);
          return absl::OkStatus();
        }
        case v1::LONGDOUBLE: {
          long double ld;
          std::memcpy(&ld, storage, sizeof ld);
          out->set_float_value(static_cast<double>(ld));
          return absl::OkStatus();
        }
        case v1::POINTER:
          SetAddress(raw, generation, out);
          return absl::OkStatus();
        case v1::CSTRING:
        case v1::WSTRING:
          if (raw == 0) {
            out->mutable_pointer()->set_null(true);
            return absl::OkStatus();
          }
          return UnmarshalString(scalar, raw, generation, out);
        default:
          break;
      }
      if (!info.is_integer) return InvalidArgumentAt("signature.result", "not a value type");
      const int shift = static_cast<int>(64 - info.size * 8);
      if (info.is_signed) {
        // Sign-extend the low `size` bytes, whatever libffi left in the upper ones.
        out->set_int_value(static_cast<int64_t>(raw << shift) >> shift);
      } else {
        out->set_uint_value(shift == 0 ? raw : raw & ((uint64_t{1} << (64 - shift)) - 1));
      }
      return absl::OkStatus();
    }
    case v1::Type::kPointer:
    case v1::Type::kFunction:
      SetAddress(raw, generation, out);
      return absl::OkStatus();
    case v1::Type::kRecord: {
      uint64_t size = 0;
      uint64_t alignment = 0;
      absl::Status status = ComputeSizeAndAlignment(type, &size, &alignment);
      if (!status.ok()) return status;
      out->set_raw(static_cast<const char*>(storage), size);
      return absl::OkStatus();
    }
    default:
      break;
  }
  return InvalidArgumentAt("signature.result", "this type cannot be returned");
}

absl::Status MarshalValue(const v1::Type& type, const v1::Value& value,
                          const MarshalContext& context, void* dest) {
  return MarshalObject(type, value, context, static_cast<unsigned char*>(dest), 0);
}

absl::Status DecodeValue(const v1::Type& type, absl::string_view bytes, uint64_t generation,
                         v1::Value* out) {
  uint64_t size = 0;
  uint64_t alignment = 0;
  absl::Status status = ComputeSizeAndAlignment(type, &size, &alignment);
  if (!status.ok()) return status;
  if (bytes.size() != size) {
    return InvalidArgumentAt("", absl::StrCat("the value is ", bytes.size(),
                                              " bytes; the type's layout size is ", size));
  }
  if (type.kind_case() == v1::Type::kArray || type.kind_case() == v1::Type::kRecord) {
    out->set_raw(bytes.data(), bytes.size());
    return absl::OkStatus();
  }
  // UnmarshalResult reads a widened 8-byte (16 for long double) slot: hand it a zeroed one.
  alignas(16) unsigned char storage[16] = {};
  if (size > sizeof storage) return InvalidArgumentAt("", "scalar larger than 16 bytes");
  std::memcpy(storage, bytes.data(), size);
  return UnmarshalResult(type, storage, generation, out);
}

}  // namespace ffibox

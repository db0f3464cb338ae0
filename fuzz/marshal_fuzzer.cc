// Fuzzes the worker's type handling and marshalling (core/types.h, core/layout.h,
// core/ffi_types.h, core/marshal.h): any Type with any Value must give a value or a typed
// error, never undefined behaviour.
//
// Input: a serialized v1::WriteMemory, the request that carries a Type and a Value together
// (`address.generation` is the worker generation pointers are checked against). The type is
// validated with the server's limits; a type validation refuses must still get a typed error
// from ComputeLayout. A validated type must have a consistent layout (fields inside the
// record, aligned as reported) and a libffi description of the same size, or a typed error.
// The value, and another made for the type from the input (fuzz/typed_values.h), are then
// marshalled with MarshalValue into a buffer of exactly the layout's size and with
// MarshalArgument into an argument slot, and decoded back with DecodeValue /
// UnmarshalResult: every scalar, pointer, string, bit field and raw run must come back as
// it went in, field by field at the layout's offsets, and bytes the value does not set
// (padding) must stay zero.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "core/arena.h"
#include "core/errors.h"
#include "core/ffi_types.h"
#include "core/layout.h"
#include "core/marshal.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "fuzz/fuzz_checks.h"
#include "fuzz/proto_mutator.h"
#include "fuzz/typed_values.h"

namespace ffibox {
namespace {

using fuzz::CheckTypedError;

// Larger layouts are validated and laid out, but not marshalled (the input cannot fill them
// with anything but zeros anyway).
constexpr uint64_t kMaxMarshalledBytes = 1 << 20;

// The bytes of an x87 long double that hold its value; the other 6 of its 16 are padding.
constexpr uint64_t kLongDoubleValueBytes = 10;

void CheckLayout(const v1::Type& type, const TypeLayout& layout, const TypeLimits& limits) {
  FUZZ_CHECK(layout.size <= limits.max_type_size, "a validated type of ", layout.size, " bytes");
  const uint64_t alignment = layout.alignment;
  FUZZ_CHECK(alignment >= 1 && alignment <= 16 && (alignment & (alignment - 1)) == 0, "alignment ",
             alignment);
  FUZZ_CHECK(layout.size % alignment == 0, "size ", layout.size, " alignment ", alignment);
  uint64_t size = 0;
  uint64_t same_alignment = 0;
  FUZZ_CHECK(ComputeSizeAndAlignment(type, &size, &same_alignment).ok() && size == layout.size &&
                 same_alignment == alignment,
             "ComputeSizeAndAlignment disagrees with ComputeLayout");
  if (type.kind_case() != v1::Type::kRecord) {
    FUZZ_CHECK(layout.fields.empty(), "fields for a type that is not a record");
    return;
  }
  const v1::RecordType& record = type.record();
  FUZZ_CHECK(layout.fields.size() == static_cast<size_t>(record.fields_size()), "field count");
  for (int i = 0; i < record.fields_size(); ++i) {
    const v1::Field& field = record.fields(i);
    const FieldLayout& placed = layout.fields[i];
    FUZZ_CHECK(placed.name == field.name(), "field ", i, " name");
    if (record.kind() == v1::RecordType::UNION) {
      FUZZ_CHECK(placed.offset == 0, "union member ", i, " at offset ", placed.offset);
    }
    if (field.has_bit_width()) {
      FUZZ_CHECK(placed.bit_width == static_cast<uint32_t>(field.bit_width()), "bit width");
      FUZZ_CHECK(placed.bit_width <= placed.size * 8, "bit field wider than its type");
      const uint64_t end = placed.offset * 8 + placed.bit_offset + placed.bit_width;
      FUZZ_CHECK(end <= layout.size * 8, "bit field ", i, " ends at bit ", end, " of a ",
                 layout.size, "-byte record");
      continue;
    }
    FUZZ_CHECK(placed.offset % placed.alignment == 0, "field ", i, " at offset ", placed.offset,
               " is not aligned to ", placed.alignment);
    FUZZ_CHECK(placed.offset + placed.size <= layout.size, "field ", i, " at ", placed.offset,
               " of ", placed.size, " bytes overruns the ", layout.size, "-byte record");
  }
}

void CheckFfiType(const v1::Type& type, const TypeLayout& layout) {
  FfiTypeArena arena;
  absl::StatusOr<ffi_type*> described = arena.TypeFor(type);
  if (!described.ok()) {
    CheckTypedError(described.status(), {v1::INVALID_ARGUMENT, v1::UNIMPLEMENTED}, "TypeFor",
                    /*needs_field=*/false);
    FUZZ_CHECK(type.kind_case() == v1::Type::kArray || type.kind_case() == v1::Type::kRecord,
               "TypeFor refused a scalar or pointer: ", described.status().ToString());
    return;
  }
  FUZZ_CHECK(type.kind_case() != v1::Type::kArray, "TypeFor described an array");
  if (type.kind_case() == v1::Type::kRecord) {
    FUZZ_CHECK((*described)->size == layout.size && (*described)->alignment == layout.alignment,
               "libffi describes a record as ", (*described)->size, "/", (*described)->alignment,
               ", its layout is ", layout.size, "/", layout.alignment);
  } else {
    FUZZ_CHECK((*described)->size == layout.size, "libffi scalar size");
  }
}

// Records which bits of a marshalled object a value set, to check that the rest stayed zero.
class SetBits {
 public:
  explicit SetBits(uint64_t size) : mask_(size, 0) {}
  void Bytes(uint64_t offset, uint64_t count) {
    for (uint64_t i = offset; i < offset + count; ++i) mask_[i] = 0xFF;
  }
  void Bits(uint64_t first_bit, uint64_t count) {
    for (uint64_t bit = first_bit; bit < first_bit + count; ++bit) {
      mask_[bit / 8] |= static_cast<unsigned char>(1u << (bit % 8));
    }
  }
  // The offset of the first byte with a bit set outside the mask, or -1.
  int64_t FirstStray(absl::string_view bytes) const {
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (static_cast<unsigned char>(bytes[i]) & ~mask_[i]) return static_cast<int64_t>(i);
    }
    return -1;
  }

 private:
  std::vector<unsigned char> mask_;
};

bool Truthy(const v1::Value& value) {
  switch (value.kind_case()) {
    case v1::Value::kBoolValue:
      return value.bool_value();
    case v1::Value::kIntValue:
      return value.int_value() != 0;
    default:
      return value.uint_value() != 0;
  }
}

bool SameDouble(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || std::memcmp(&a, &b, sizeof a) == 0;
}

// The pointer `value` was marshalled from (null, or a remote address of the right
// generation, or of generation 0: a number no worker handed out, which comes back as the
// worker's, `generation`) came back as `decoded`.
void CheckPointer(const v1::Value& value, const v1::Value& decoded, uint64_t generation,
                  const std::string& path) {
  const v1::PointerValue& pointer = value.pointer();
  const bool null = pointer.has_null() || pointer.remote().address() == 0;
  FUZZ_CHECK(pointer.has_null() || pointer.has_remote(), path, ": marshalled pointer kind ",
             pointer.target_case());
  if (null) {
    FUZZ_CHECK(decoded.pointer().has_null(), path, ": NULL came back as ",
               decoded.ShortDebugString());
    return;
  }
  const uint64_t sent = pointer.remote().generation();
  FUZZ_CHECK(decoded.pointer().remote().address() == pointer.remote().address() &&
                 decoded.pointer().remote().generation() == (sent != 0 ? sent : generation),
             path, ": ", value.ShortDebugString(), " came back as ", decoded.ShortDebugString());
}

// `decoded` is the scalar `value` became when marshalled as `scalar` and decoded back.
void CheckScalar(v1::Scalar scalar, const v1::Value& value, const v1::Value& decoded,
                 uint64_t generation, const std::string& path) {
  const ScalarInfo info = GetScalarInfo(scalar);
  if (scalar == v1::BOOL) {
    FUZZ_CHECK(decoded.bool_value() == Truthy(value), path, ": bool ", value.ShortDebugString(),
               " came back as ", decoded.ShortDebugString());
  } else if (info.is_integer) {
    int64_t sent = 0;  // the C value's bits, sign-extended
    if (value.kind_case() == v1::Value::kBytesValue) {
      sent = static_cast<signed char>(value.bytes_value()[0]);
    } else if (value.kind_case() == v1::Value::kIntValue) {
      sent = value.int_value();
    } else {
      sent = static_cast<int64_t>(value.uint_value());
    }
    const bool same = info.is_signed ? decoded.int_value() == sent
                                     : decoded.uint_value() == static_cast<uint64_t>(sent);
    FUZZ_CHECK(same, path, ": ", v1::Scalar_Name(scalar), " ", value.ShortDebugString(),
               " came back as ", decoded.ShortDebugString());
  } else if (scalar == v1::FLOAT || scalar == v1::DOUBLE || scalar == v1::LONGDOUBLE) {
    long double sent =
        value.kind_case() == v1::Value::kFloatValue ? static_cast<long double>(value.float_value())
        : value.kind_case() == v1::Value::kIntValue ? static_cast<long double>(value.int_value())
                                                    : static_cast<long double>(value.uint_value());
    const double expected = scalar == v1::FLOAT ? static_cast<double>(static_cast<float>(sent))
                                                : static_cast<double>(sent);
    FUZZ_CHECK(SameDouble(decoded.float_value(), expected), path, ": ", v1::Scalar_Name(scalar),
               " ", value.ShortDebugString(), " came back as ", decoded.ShortDebugString());
  } else if (scalar == v1::CSTRING && value.kind_case() == v1::Value::kBytesValue) {
    const std::string& sent = value.bytes_value();
    FUZZ_CHECK(decoded.bytes_value() == sent.substr(0, sent.find('\0')), path,
               ": string came back as ", decoded.ShortDebugString());
  } else if (scalar == v1::WSTRING && value.kind_case() == v1::Value::kTextValue) {
    const std::string& sent = value.text_value();
    FUZZ_CHECK(decoded.text_value() == sent.substr(0, sent.find('\0')), path,
               ": wide string came back as ", decoded.ShortDebugString());
  } else {
    CheckPointer(value, decoded, generation, path);
  }
}

// Whether decoding a pointer-sized object of `type` holding what `value` became would read
// memory at an address the fuzzer does not own (a string type given a remote address).
bool DecodingReadsRemoteMemory(const v1::Type& type, const v1::Value& value) {
  return type.kind_case() == v1::Type::kScalar &&
         (type.scalar() == v1::CSTRING || type.scalar() == v1::WSTRING) &&
         value.kind_case() == v1::Value::kPointer && value.pointer().has_remote() &&
         value.pointer().remote().address() != 0;
}

// Checks that `bytes` (the object at `offset` of the marshalled buffer) decodes back to
// `value`, marshalled as `type`, and marks the bits it set in `set`.
void CheckObject(const v1::Type& type, const v1::Value& value, absl::string_view bytes,
                 uint64_t offset, uint64_t generation, const std::string& path, SetBits* set) {
  if (value.kind_case() == v1::Value::kRaw) {
    FUZZ_CHECK(bytes == value.raw(), path, ": raw bytes changed");
    set->Bytes(offset, bytes.size());
    return;
  }
  switch (type.kind_case()) {
    case v1::Type::kArray: {
      const v1::Type& element = type.array().element();
      uint64_t element_size = 0;
      uint64_t element_alignment = 0;
      FUZZ_CHECK(ComputeSizeAndAlignment(element, &element_size, &element_alignment).ok(), path,
                 ": element layout");
      if (value.kind_case() == v1::Value::kBytesValue) {
        const std::string& sent = value.bytes_value();
        FUZZ_CHECK(bytes.substr(0, sent.size()) == sent, path, ": bytes_value changed");
        set->Bytes(offset, sent.size());
        return;
      }
      for (int i = 0; i < value.aggregate().elements_size(); ++i) {
        CheckObject(element, value.aggregate().elements(i),
                    bytes.substr(i * element_size, element_size), offset + i * element_size,
                    generation, absl::StrCat(path, "[", i, "]"), set);
      }
      return;
    }
    case v1::Type::kRecord: {
      absl::StatusOr<TypeLayout> layout = ComputeLayout(type);
      FUZZ_CHECK(layout.ok(), path, ": record layout");
      // A union's one element is the member the aggregate names.
      const int first = type.record().kind() == v1::RecordType::UNION
                            ? static_cast<int>(value.aggregate().member())
                            : 0;
      for (int e = 0; e < value.aggregate().elements_size(); ++e) {
        const int i = first + e;
        const v1::Field& field = type.record().fields(i);
        const FieldLayout& placed = layout->fields[i];
        const v1::Value& element = value.aggregate().elements(e);
        const std::string field_path = absl::StrCat(path, ".", field.name(), "#", i);
        if (!field.has_bit_width()) {
          CheckObject(field.type(), element, bytes.substr(placed.offset, placed.size),
                      offset + placed.offset, generation, field_path, set);
          continue;
        }
        if (placed.bit_width == 0) continue;
        const uint64_t first = placed.offset * 8 + placed.bit_offset;
        uint64_t bits = 0;
        for (uint32_t b = 0; b < placed.bit_width; ++b) {
          const uint64_t bit = first + b;
          bits |=
              static_cast<uint64_t>((static_cast<unsigned char>(bytes[bit / 8]) >> (bit % 8)) & 1)
              << b;
        }
        // What C reads from the field: the bits, sign-extended for a signed type.
        const v1::Scalar scalar = field.type().scalar();
        const bool is_signed = scalar != v1::BOOL && GetScalarInfo(scalar).is_signed;
        const uint64_t width_mask =
            placed.bit_width == 64 ? ~uint64_t{0} : (uint64_t{1} << placed.bit_width) - 1;
        const bool negative = is_signed && ((bits >> (placed.bit_width - 1)) & 1);
        const uint64_t read = negative ? bits | ~width_mask : bits;
        const uint64_t sent = element.kind_case() == v1::Value::kBoolValue
                                  ? (element.bool_value() ? 1 : 0)
                              : element.kind_case() == v1::Value::kIntValue
                                  ? static_cast<uint64_t>(element.int_value())
                                  : element.uint_value();
        FUZZ_CHECK(read == sent, field_path, ": a ", placed.bit_width, "-bit ",
                   v1::Scalar_Name(scalar), " bit field reads ", static_cast<int64_t>(read),
                   " after writing ", element.ShortDebugString());
        set->Bits(offset * 8 + first, placed.bit_width);
      }
      return;
    }
    default: {
      if (DecodingReadsRemoteMemory(type, value)) {
        set->Bytes(offset, 8);
        return;
      }
      v1::Value decoded;
      absl::Status status = DecodeValue(type, bytes, generation, &decoded);
      FUZZ_CHECK(status.ok(), path, ": DecodeValue of a marshalled value: ", status.ToString());
      if (type.kind_case() == v1::Type::kScalar) {
        CheckScalar(type.scalar(), value, decoded, generation, path);
        const v1::Scalar scalar = type.scalar();
        set->Bytes(offset, scalar == v1::LONGDOUBLE ? kLongDoubleValueBytes
                           : scalar == v1::BOOL     ? 1
                                                    : bytes.size());
      } else {
        CheckPointer(value, decoded, generation, path);
        set->Bytes(offset, bytes.size());
      }
      return;
    }
  }
}

// Marshals `value` as an argument of `type` (not an array: those decay to pointers) and
// checks that it agrees with MarshalValue's `object`.
void CheckArgument(const v1::Type& type, const v1::Value& value, const MarshalContext& context,
                   uint64_t size, const absl::Status& object_status) {
  const uint64_t slot_size = (std::max<uint64_t>(size, 16) + 15) / 16 * 16;
  std::unique_ptr<void, decltype(&std::free)> slot(std::aligned_alloc(16, slot_size), &std::free);
  std::memset(slot.get(), 0, slot_size);
  absl::Status status = MarshalArgument(type, value, context, slot.get());
  FUZZ_CHECK(status.ok() == object_status.ok(), "MarshalArgument (", status.ToString(),
             ") and MarshalValue (", object_status.ToString(), ") disagree");
  if (!status.ok()) return;
  if (type.kind_case() == v1::Type::kRecord) {
    SetBits set(size);
    CheckObject(type, value, absl::string_view(static_cast<const char*>(slot.get()), size), 0,
                context.generation, "argument", &set);
    return;
  }
  if (DecodingReadsRemoteMemory(type, value)) return;
  // The slot as libffi would have widened a result into it.
  v1::Value decoded;
  status = UnmarshalResult(type, slot.get(), context.generation, &decoded);
  FUZZ_CHECK(status.ok(), "UnmarshalResult of a marshalled argument: ", status.ToString());
  if (type.kind_case() == v1::Type::kScalar) {
    CheckScalar(type.scalar(), value, decoded, context.generation, "argument");
  } else {
    CheckPointer(value, decoded, context.generation, "argument");
  }
}

// Marshals `value` as an object of the validated `type` (laid out as `layout`) and checks
// that it decodes back to what was sent.
void CheckMarshalled(const v1::Type& type, const TypeLayout& layout, const v1::Value& value,
                     uint64_t generation) {
  const uint64_t size = layout.size;
  std::unique_ptr<unsigned char[]> object(new unsigned char[size]());  // exactly its size
  CallArena arena;
  MarshalContext context;
  context.arena = &arena;
  context.generation = generation;
  absl::Status status = MarshalValue(type, value, context, object.get());
  CheckTypedError(
      status, {v1::INVALID_ARGUMENT, v1::STALE_HANDLE, v1::UNIMPLEMENTED, v1::RESOURCE_EXHAUSTED},
      "MarshalValue", /*needs_field=*/false);
  if (type.kind_case() != v1::Type::kArray) CheckArgument(type, value, context, size, status);
  if (!status.ok()) return;

  const absl::string_view bytes(reinterpret_cast<const char*>(object.get()), size);
  SetBits set(size);
  CheckObject(type, value, bytes, 0, generation, "value", &set);
  const int64_t stray = set.FirstStray(bytes);
  FUZZ_CHECK(stray < 0, "byte ", stray, " of the marshalled object holds bits the value does ",
             "not set (padding must stay zero)");
  if (type.kind_case() == v1::Type::kArray || type.kind_case() == v1::Type::kRecord) {
    v1::Value decoded;
    FUZZ_CHECK(DecodeValue(type, bytes, generation, &decoded).ok() && decoded.raw() == bytes,
               "an aggregate does not decode to its raw bytes");
  }
}

void FuzzMarshal(const v1::WriteMemory& input, uint64_t input_hash) {
  const v1::Type& type = input.type();
  const TypeLimits limits;  // the worker's
  absl::Status valid = ValidateType(type, limits, "type");
  CheckTypedError(valid, {v1::INVALID_ARGUMENT, v1::UNIMPLEMENTED}, "ValidateType");
  absl::StatusOr<TypeLayout> layout = ComputeLayout(type);
  if (!valid.ok()) {
    // Shapes validation refuses may still have a layout; otherwise a typed error.
    if (!layout.ok()) {
      CheckTypedError(layout.status(), {v1::INVALID_ARGUMENT, v1::UNIMPLEMENTED}, "ComputeLayout",
                      /*needs_field=*/false);
    }
    return;
  }
  FUZZ_CHECK(layout.ok(), "a validated type has no layout: ", layout.status().ToString());
  CheckLayout(type, *layout, limits);
  CheckFfiType(type, *layout);
  if (layout->size > kMaxMarshalledBytes) return;

  const uint64_t generation = input.address().generation();
  CheckMarshalled(type, *layout, input.value(), generation);
  // And a value made for the type, from the input's bytes.
  std::mt19937_64 random(input_hash);
  int budget = 4096;
  CheckMarshalled(type, *layout, fuzz::TypedValue(type, generation, &random, &budget), generation);
}

}  // namespace
}  // namespace ffibox

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ffibox::v1::WriteMemory input;
  if (!input.ParseFromArray(data, static_cast<int>(size))) return 0;
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  ffibox::FuzzMarshal(input, std::hash<std::string>()(bytes));
  return 0;
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return ffibox::fuzz::MutateMessageInput(ffibox::v1::WriteMemory::default_instance(), data, size,
                                          max_size, seed);
}

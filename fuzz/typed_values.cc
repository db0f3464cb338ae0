#include "fuzz/typed_values.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <string>

#include "core/layout.h"
#include "core/types.h"

namespace ffibox {
namespace fuzz {
namespace {

constexpr uint64_t kMaxRawBytes = 4096;

uint64_t Below(std::mt19937_64* random, uint64_t n) { return n == 0 ? 0 : (*random)() % n; }

// An integer in [min, max] (signed types) or [0, max]: an end, zero, one, or any.
v1::Value IntegerIn(bool is_signed, int64_t min, uint64_t max, std::mt19937_64* random) {
  v1::Value value;
  switch (Below(random, 6)) {
    case 0:
      if (is_signed) {
        value.set_int_value(min);
      } else {
        value.set_uint_value(0);
      }
      break;
    case 1:
      value.set_uint_value(max);
      break;
    case 2:
      value.set_int_value(is_signed && Below(random, 2) ? -1 : 1);
      break;
    case 3:
      value.set_int_value(0);
      break;
    default: {
      const uint64_t bits = (*random)();
      if (!is_signed) {
        value.set_uint_value(max == std::numeric_limits<uint64_t>::max() ? bits : bits % (max + 1));
      } else {
        // [min, max] spans max - min + 1 values, 2^64 for int64.
        const uint64_t span = max - static_cast<uint64_t>(min) + 1;
        value.set_int_value(
            static_cast<int64_t>(static_cast<uint64_t>(min) + (span == 0 ? bits : bits % span)));
      }
    }
  }
  return value;
}

double AnyDouble(std::mt19937_64* random) {
  if (Below(random, 2)) {
    const uint64_t bits = (*random)();
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
  static const double kValues[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.5,
                                   3.4e38,
                                   1e39,
                                   1e308,
                                   4.9e-324,
                                   1.18e-38,
                                   1.4e-45,
                                   1e-40,
                                   std::numeric_limits<double>::infinity(),
                                   std::numeric_limits<double>::quiet_NaN()};
  return kValues[Below(random, sizeof kValues / sizeof kValues[0])];
}

v1::Value PointerValue(uint64_t generation, std::mt19937_64* random) {
  v1::Value value;
  if (Below(random, 3) == 0) {
    value.mutable_pointer()->set_null(true);
  } else {
    v1::RemoteAddress* remote = value.mutable_pointer()->mutable_remote();
    remote->set_address(Below(random, 4) == 0 ? 0 : (*random)());
    remote->set_generation(generation);
  }
  return value;
}

std::string SomeBytes(std::mt19937_64* random) {
  std::string bytes(Below(random, 12), '\0');
  for (char& c : bytes) c = static_cast<char>(Below(random, 4) == 0 ? 0 : (*random)());
  return bytes;
}

std::string SomeUtf8(std::mt19937_64* random) {
  static const char* const kPieces[] = {
      "a", "\0", "\xc3\xa9", "\xe2\x98\x83", "\xf4\x8f\xbf\xbf", "\x7f", "\xef\xbf\xbf"};
  std::string text;
  for (uint64_t i = Below(random, 8); i > 0; --i) {
    const char* piece = kPieces[Below(random, sizeof kPieces / sizeof kPieces[0])];
    text.append(piece, *piece == '\0' ? 1 : std::strlen(piece));
  }
  return text;
}

v1::Value ScalarValue(v1::Scalar scalar, uint64_t generation, std::mt19937_64* random) {
  const ScalarInfo info = GetScalarInfo(scalar);
  v1::Value value;
  switch (scalar) {
    case v1::BOOL:
      value.set_bool_value(Below(random, 2));
      return value;
    case v1::FLOAT:
    case v1::DOUBLE:
    case v1::LONGDOUBLE:
      value.set_float_value(AnyDouble(random));
      return value;
    case v1::POINTER:
      return PointerValue(generation, random);
    case v1::CSTRING:
      if (Below(random, 4) == 0) return PointerValue(generation, random);
      value.set_bytes_value(SomeBytes(random));
      return value;
    case v1::WSTRING:
      if (Below(random, 4) == 0) return PointerValue(generation, random);
      value.set_text_value(SomeUtf8(random));
      return value;
    default:
      if (scalar == v1::CHAR && Below(random, 4) == 0) {
        value.set_bytes_value(std::string(1, static_cast<char>((*random)())));
        return value;
      }
      return IntegerIn(info.is_signed, info.min, info.max, random);
  }
}

// A value for a bit field of `width` bits declared as `scalar`.
v1::Value BitFieldValue(v1::Scalar scalar, uint32_t width, std::mt19937_64* random) {
  if (width == 0) return v1::Value();  // ignored
  if (scalar == v1::BOOL && Below(random, 2)) {
    v1::Value value;
    value.set_bool_value(Below(random, 2));
    return value;
  }
  const bool is_signed = scalar != v1::BOOL && GetScalarInfo(scalar).is_signed;
  if (!is_signed) {
    return IntegerIn(false, 0, width == 64 ? ~uint64_t{0} : (uint64_t{1} << width) - 1, random);
  }
  const uint64_t max = (uint64_t{1} << (width - 1)) - 1;
  return IntegerIn(true, -static_cast<int64_t>(max) - 1, max, random);
}

v1::Value RawValue(const v1::Type& type, std::mt19937_64* random) {
  uint64_t size = 0;
  uint64_t alignment = 0;
  v1::Value value;
  if (!ComputeSizeAndAlignment(type, &size, &alignment).ok() || size > kMaxRawBytes) return value;
  std::string raw(size, '\0');
  for (char& c : raw) c = static_cast<char>((*random)());
  value.set_raw(raw);
  return value;
}

bool IsByteScalar(const v1::Type& type) {
  if (type.kind_case() != v1::Type::kScalar) return false;
  const v1::Scalar s = type.scalar();
  return s == v1::CHAR || s == v1::SCHAR || s == v1::UCHAR || s == v1::INT8 || s == v1::UINT8;
}

}  // namespace

v1::Value TypedValue(const v1::Type& type, uint64_t generation, std::mt19937_64* random,
                     int* budget) {
  --*budget;
  switch (type.kind_case()) {
    case v1::Type::kScalar:
      return ScalarValue(type.scalar(), generation, random);
    case v1::Type::kPointer:
    case v1::Type::kFunction:
      return PointerValue(generation, random);
    case v1::Type::kArray: {
      const uint64_t length = type.array().length();
      if (IsByteScalar(type.array().element()) && Below(random, 3) == 0) {
        v1::Value value;
        std::string bytes = SomeBytes(random);
        bytes.resize(std::min<uint64_t>(bytes.size(), length));
        value.set_bytes_value(bytes);
        return value;
      }
      if (length > static_cast<uint64_t>(std::max(*budget, 0)) || Below(random, 8) == 0) {
        return RawValue(type, random);
      }
      v1::Value value;
      v1::Aggregate* aggregate = value.mutable_aggregate();
      for (uint64_t i = 0; i < length; ++i) {
        *aggregate->add_elements() = TypedValue(type.array().element(), generation, random, budget);
      }
      return value;
    }
    case v1::Type::kRecord: {
      const v1::RecordType& record = type.record();
      if (*budget < record.fields_size() || Below(random, 8) == 0) return RawValue(type, random);
      v1::Value value;
      v1::Aggregate* aggregate = value.mutable_aggregate();
      const bool is_union = record.kind() == v1::RecordType::UNION;
      // A union: one member, any of them (none for a union without members).
      const int first = is_union && record.fields_size() > 0
                            ? static_cast<int>(Below(random, record.fields_size()))
                            : 0;
      const int end = is_union ? std::min(first + 1, record.fields_size()) : record.fields_size();
      if (is_union) aggregate->set_member(static_cast<uint32_t>(first));
      for (int i = first; i < end; ++i) {
        const v1::Field& field = record.fields(i);
        *aggregate->add_elements() =
            field.has_bit_width() ? BitFieldValue(field.type().scalar(),
                                                  static_cast<uint32_t>(field.bit_width()), random)
                                  : TypedValue(field.type(), generation, random, budget);
      }
      return value;
    }
    default:
      return v1::Value();
  }
}

}  // namespace fuzz
}  // namespace ffibox

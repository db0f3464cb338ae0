// C++ arithmetic types <-> ffibox `Scalar` and `Value`, for the typed C++ client.
//
// `ScalarOf<T>` names the proto scalar of a C++ type (fixed-width types map through their
// underlying type: int64_t is `long`, size_t is `unsigned long` on x86-64, which have the
// same ABI). `EncodeScalar` fills a Value; `DecodeScalar` reads one the server sent and
// checks that it fits the C++ type, since a server's answer is not trusted to be well formed.
// Used by the parameter and result traits and the value codec; callers of the client never
// need this header directly.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_SCALAR_CODEC_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_SCALAR_CODEC_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "absl/base/casts.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/scalar_wire.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

template <v1::Scalar S>
struct KnownScalar {
  static constexpr bool kKnown = true;
  static constexpr v1::Scalar kScalar = S;
};

// The proto scalar of C++ type T; kKnown is false for types that are not C scalars. An enum
// is its underlying type, as a C enum is an integer of its size.
template <typename T, typename Enable = void>
struct ScalarOf {
  static constexpr bool kKnown = false;
};
template <typename T>
struct ScalarOf<T, std::enable_if_t<std::is_enum_v<T>>> : ScalarOf<std::underlying_type_t<T>> {};
template <>
struct ScalarOf<bool> : KnownScalar<v1::BOOL> {};
template <>
struct ScalarOf<char> : KnownScalar<v1::CHAR> {};
template <>
struct ScalarOf<signed char> : KnownScalar<v1::SCHAR> {};
template <>
struct ScalarOf<unsigned char> : KnownScalar<v1::UCHAR> {};
template <>
struct ScalarOf<short> : KnownScalar<v1::SHORT> {};
template <>
struct ScalarOf<unsigned short> : KnownScalar<v1::USHORT> {};
template <>
struct ScalarOf<int> : KnownScalar<v1::INT> {};
template <>
struct ScalarOf<unsigned int> : KnownScalar<v1::UINT> {};
template <>
struct ScalarOf<long> : KnownScalar<v1::LONG> {};
template <>
struct ScalarOf<unsigned long> : KnownScalar<v1::ULONG> {};
template <>
struct ScalarOf<long long> : KnownScalar<v1::LONGLONG> {};
template <>
struct ScalarOf<unsigned long long> : KnownScalar<v1::ULONGLONG> {};
template <>
struct ScalarOf<float> : KnownScalar<v1::FLOAT> {};
template <>
struct ScalarOf<double> : KnownScalar<v1::DOUBLE> {};
template <>
struct ScalarOf<long double> : KnownScalar<v1::LONGDOUBLE> {};
template <>
struct ScalarOf<wchar_t> : KnownScalar<v1::WCHAR> {};

template <typename T>
inline constexpr bool kIsScalar = ScalarOf<T>::kKnown;

// Whether T is a character type whose pointers mean strings rather than one object.
template <typename T>
inline constexpr bool kIsCharacter =
    std::is_same_v<std::remove_cv_t<T>, char> || std::is_same_v<std::remove_cv_t<T>, wchar_t>;

// A `Type` holding just `scalar`.
inline v1::Type ScalarType(v1::Scalar scalar) {
  v1::Type type;
  type.set_scalar(scalar);
  return type;
}

// A scalar Value without the message (core/scalar_wire.h).
using ::ffibox::ScalarBits;
using ::ffibox::SetScalarBits;

// The Value of `value` the way the proto documents for T's scalar. A long double is sent as a
// double (the protocol's float_value).
template <typename T>
ScalarBits ScalarBitsOf(T value) {
  static_assert(kIsScalar<T>, "not a C scalar type");
  if constexpr (std::is_enum_v<T>) {
    return ScalarBitsOf(static_cast<std::underlying_type_t<T>>(value));
  } else if constexpr (std::is_same_v<T, bool>) {
    return {v1::Value::kBoolValue, value ? uint64_t{1} : uint64_t{0}};
  } else if constexpr (std::is_floating_point_v<T>) {
    return {v1::Value::kFloatValue, absl::bit_cast<uint64_t>(static_cast<double>(value))};
  } else if constexpr (std::is_signed_v<T>) {
    return {v1::Value::kIntValue, static_cast<uint64_t>(static_cast<int64_t>(value))};
  } else {
    return {v1::Value::kUintValue, static_cast<uint64_t>(value)};
  }
}

// Stores `value` in `out` (ScalarBitsOf).
template <typename T>
void EncodeScalar(T value, v1::Value* out) {
  SetScalarBits(ScalarBitsOf(value), out);
}

// Returns the error for a server value of the wrong kind or range (`expected` names the C
// type).
absl::Status UnexpectedValue(const v1::Value& value, absl::string_view expected);

// DecodeScalar of an arithmetic T.
template <typename T>
absl::StatusOr<T> DecodeArithmeticScalar(const v1::Value& value) {
  using Limits = std::numeric_limits<T>;
  if constexpr (std::is_same_v<T, bool>) {
    switch (value.kind_case()) {
      case v1::Value::kBoolValue:
        return value.bool_value();
      case v1::Value::kIntValue:
        return value.int_value() != 0;
      case v1::Value::kUintValue:
        return value.uint_value() != 0;
      default:
        return UnexpectedValue(value, "bool");
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    switch (value.kind_case()) {
      case v1::Value::kFloatValue: {
        const double v = value.float_value();
        if constexpr (std::is_same_v<T, float>) {
          // A C float comes as a double that holds it exactly; any other (out of a float's
          // range, where the conversion is undefined, or between two floats) is no float's.
          if (!std::isnan(v) &&
              (std::fabs(v) > Limits::max() ? !std::isinf(v) : static_cast<float>(v) != v)) {
            return UnexpectedValue(value, "a float");
          }
        }
        return static_cast<T>(v);
      }
      case v1::Value::kIntValue:
        return static_cast<T>(value.int_value());
      case v1::Value::kUintValue:
        return static_cast<T>(value.uint_value());
      default:
        return UnexpectedValue(value, "a floating-point type");
    }
  } else {
    switch (value.kind_case()) {
      case v1::Value::kIntValue: {
        const int64_t v = value.int_value();
        if constexpr (std::is_signed_v<T>) {
          if (v >= static_cast<int64_t>(Limits::min()) && v <= static_cast<int64_t>(Limits::max()))
            return static_cast<T>(v);
        } else {
          if (v >= 0 && static_cast<uint64_t>(v) <= static_cast<uint64_t>(Limits::max()))
            return static_cast<T>(v);
        }
        return UnexpectedValue(value, "an integer type of this width");
      }
      case v1::Value::kUintValue:
        if (value.uint_value() <= static_cast<uint64_t>(Limits::max())) {
          return static_cast<T>(value.uint_value());
        }
        return UnexpectedValue(value, "an integer type of this width");
      case v1::Value::kBoolValue:
        return static_cast<T>(value.bool_value() ? 1 : 0);
      case v1::Value::kBytesValue:
        if (sizeof(T) == 1 && value.bytes_value().size() == 1) {
          return static_cast<T>(value.bytes_value()[0]);
        }
        return UnexpectedValue(value, "a one-byte character");
      default:
        return UnexpectedValue(value, "an integer type");
    }
  }
}

// Reads a T from a value the server sent; INTERNAL if the value is of another kind or does
// not fit T. An enum takes any value of its underlying type, as a C enum holds any (not only
// its enumerators).
template <typename T>
absl::StatusOr<T> DecodeScalar(const v1::Value& value) {
  static_assert(kIsScalar<T>, "not a C scalar type");
  if constexpr (std::is_enum_v<T>) {
    absl::StatusOr<std::underlying_type_t<T>> decoded =
        DecodeArithmeticScalar<std::underlying_type_t<T>>(value);
    if (!decoded.ok()) return decoded.status();
    return static_cast<T>(*decoded);
  } else {
    return DecodeArithmeticScalar<T>(value);
  }
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_SCALAR_CODEC_H_

// How the C++ result types of a typed function become ffibox Types, and the values the server
// returns become C++ values.
//
// `ResultTraits<R>` describes a result type: its proto `Type` (none for void), the C++ value
// the caller gets (`Value`), and how a value the server sent is decoded (checked, never
// trusted). A string result that comes back as a worker address is read with a
// RemoteStringReader (MemoryOps::StringReader). Used by typed calls (typed_call.h),
// Library::Variable and callbacks' results.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_RESULT_TRAITS_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_RESULT_TRAITS_H_

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/internal/layout_verifier.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/internal/type_traits.h"
#include "client/cpp/internal/value_codec.h"
#include "client/cpp/records.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// Reads a string at a remote address (used when a string result comes back as a pointer).
using RemoteStringReader =
    absl::FunctionRef<absl::StatusOr<v1::StringData>(const v1::RemoteAddress&, bool wide)>;

// A CSTRING result: bytes, or nullopt for NULL.
absl::StatusOr<std::optional<std::string>> DecodeCString(const v1::Value& value,
                                                         RemoteStringReader read);
// The characters of a wide string read at a remote address (RemoteStringReader): its UTF-8
// `text`, or its raw units in `data` (a string the server would not send as text: a unit
// that is no Unicode scalar value, such as a lone surrogate). INTERNAL when the text is not
// UTF-8.
absl::StatusOr<std::u32string> WideText(const v1::StringData& read);
// A WSTRING result: text, or nullopt for NULL.
absl::StatusOr<std::optional<std::u32string>> DecodeWString(const v1::Value& value,
                                                            RemoteStringReader read);
// The error for a string result that was NULL where the C++ type cannot hold NULL.
absl::Status NullStringResult();

// UTF-32 as wchar_t text (the same code units on Linux, where wchar_t is 32 bits).
inline std::wstring Utf32ToWide(std::u32string_view text) {
  return std::wstring(text.begin(), text.end());
}

template <typename R, typename Enable = void>
struct ResultTraits {
  static_assert(kAlwaysFalse<R>,
                "ffibox: unsupported result type; see client/cpp/ffibox_client.h (char* "
                "results are std::string or std::optional<std::string>, void* results "
                "are ffibox::RemotePtr)");
};

template <>
struct ResultTraits<void> {
  using Value = void;
  static constexpr bool kHasType = false;
};

template <typename R>
struct ResultTraits<R, std::enable_if_t<kIsScalar<R>>> {
  using Value = R;
  static constexpr bool kHasType = true;
  static v1::Type Type() { return ScalarType(ScalarOf<R>::kScalar); }
  static absl::StatusOr<R> Decode(const v1::Value& value, RemoteStringReader) {
    return DecodeScalar<R>(value);
  }
};

struct PointerResult {
  using Value = RemotePtr;
  static constexpr bool kHasType = true;
  static v1::Type Type() { return ScalarType(v1::POINTER); }
  static absl::StatusOr<RemotePtr> Decode(const v1::Value& value, RemoteStringReader) {
    return DecodePointer(value);
  }
};
template <>
struct ResultTraits<void*> : PointerResult {};
template <>
struct ResultTraits<const void*> : PointerResult {};
template <>
struct ResultTraits<RemotePtr> : PointerResult {};

// std::string: the bytes of a returned char*; a NULL result is an error.
template <>
struct ResultTraits<std::string> {
  using Value = std::string;
  static constexpr bool kHasType = true;
  static v1::Type Type() { return ScalarType(v1::CSTRING); }
  static absl::StatusOr<std::string> Decode(const v1::Value& value, RemoteStringReader read) {
    absl::StatusOr<std::optional<std::string>> text = DecodeCString(value, read);
    if (!text.ok()) return text.status();
    if (!text->has_value()) return NullStringResult();
    return **std::move(text);
  }
};

// std::optional<std::string>: as std::string, with NULL as nullopt.
template <>
struct ResultTraits<std::optional<std::string>> {
  using Value = std::optional<std::string>;
  static constexpr bool kHasType = true;
  static v1::Type Type() { return ScalarType(v1::CSTRING); }
  static absl::StatusOr<Value> Decode(const v1::Value& value, RemoteStringReader read) {
    return DecodeCString(value, read);
  }
};

// Wide strings (wchar_t*): std::u32string / std::wstring, optional for NULL.
template <typename Text>
struct WideResult {
  using Value = Text;
  static constexpr bool kHasType = true;
  static v1::Type Type() { return ScalarType(v1::WSTRING); }
  static absl::StatusOr<Text> Decode(const v1::Value& value, RemoteStringReader read) {
    absl::StatusOr<std::optional<std::u32string>> text = DecodeWString(value, read);
    if (!text.ok()) return text.status();
    if (!text->has_value()) return NullStringResult();
    if constexpr (std::is_same_v<Text, std::wstring>) {
      return Utf32ToWide(**text);
    } else {
      return **std::move(text);
    }
  }
};
template <>
struct ResultTraits<std::u32string> : WideResult<std::u32string> {};
template <>
struct ResultTraits<std::wstring> : WideResult<std::wstring> {};

template <typename Text>
struct OptionalWideResult {
  using Value = std::optional<Text>;
  static constexpr bool kHasType = true;
  static v1::Type Type() { return ScalarType(v1::WSTRING); }
  static absl::StatusOr<Value> Decode(const v1::Value& value, RemoteStringReader read) {
    absl::StatusOr<std::optional<std::u32string>> text = DecodeWString(value, read);
    if (!text.ok()) return text.status();
    if (!text->has_value()) return Value();
    if constexpr (std::is_same_v<Text, std::wstring>) {
      return Value(Utf32ToWide(**text));
    } else {
      return Value(**std::move(text));
    }
  }
};
template <>
struct ResultTraits<std::optional<std::u32string>> : OptionalWideResult<std::u32string> {};
template <>
struct ResultTraits<std::optional<std::wstring>> : OptionalWideResult<std::wstring> {};

// A described record returned by value: `raw` bytes in the worker's layout.
template <typename R>
struct ResultTraits<R, std::enable_if_t<kIsRecord<R>>> {
  using Value = R;
  static constexpr bool kHasType = true;
  static v1::Type Type() { return TypeOf<R>(); }
  static absl::Status Verify(LayoutVerifier& verifier) { return VerifyLayout<R>(verifier); }
  static absl::StatusOr<R> Decode(const v1::Value& value, RemoteStringReader) {
    return DecodeValueOf<R>(value);
  }
};

// What Library::Variable<T> gives: a std::array as it is, anything else as a result.
template <typename T, bool = IsStdArray<T>::value>
struct VariableValue {
  using type = typename ResultTraits<T>::Value;
};
template <typename T>
struct VariableValue<T, true> {
  using type = T;
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_RESULT_TRAITS_H_

// How C++ result types of a typed function become ffibox Types, and server Values results.
//
// `ResultTraits<R>` describes a result type: its proto `Type`, the C++ value the caller gets
// (`Value`), and how a value the server sent is decoded (checked, never trusted).
// `SignatureOf<R, A...>()` builds the protocol signature of R(A...). Used by
// `typed_function.h` and `Library::Variable`; see `ffibox_client.h` for the type table.
#ifndef FFIBOX_CLIENT_CPP_RESULT_TRAITS_H_
#define FFIBOX_CLIENT_CPP_RESULT_TRAITS_H_

#include <initializer_list>
#include <optional>
#include <string>
#include <type_traits>

#include "absl/status/statusor.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/type_mapping.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// ---- Results -------------------------------------------------------------------------

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

template <typename Traits, typename Enable = void>
struct HasVerify : std::false_type {};
template <typename Traits>
struct HasVerify<Traits, std::void_t<decltype(&Traits::Verify)>> : std::true_type {};

// Runs Traits::Verify when the traits carry records (see records.h), else succeeds.
template <typename Traits>
absl::Status VerifyTraits(LayoutVerifier& verifier) {
  if constexpr (HasVerify<Traits>::value) {
    return Traits::Verify(verifier);
  } else {
    return absl::OkStatus();
  }
}

// Checks the worker's layout of every record in R(A...) once per session; FAILED_PRECONDITION
// naming the record and field on a mismatch.
template <typename R, typename... A>
absl::Status VerifyLayouts(LayoutVerifier& verifier) {
  absl::Status status = VerifyTraits<ResultTraits<R>>(verifier);
  (void)std::initializer_list<int>{
      (status.ok() ? (status = VerifyTraits<ArgTraits<A>>(verifier), 0) : 0)...};
  return status;
}

// The proto signature of the C++ function type R(A...).
template <typename R, typename... A>
v1::Signature SignatureOf() {
  v1::Signature signature;
  if constexpr (ResultTraits<R>::kHasType) *signature.mutable_result() = ResultTraits<R>::Type();
  (void)std::initializer_list<int>{(*signature.add_params() = ArgTraits<A>::Type(), 0)...};
  return signature;
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_RESULT_TRAITS_H_

// C++ values <-> protocol Values, for every type that is not a string: scalars as scalars,
// described records and arrays as `raw` bytes in the worker's layout (the client and the
// worker share the x86-64 System V ABI, and the layout is checked, layout_verifier.h), and
// RemotePtr as a remote pointer. Values the server sent are checked, never trusted: a wrong
// kind or size is INTERNAL.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_VALUE_CODEC_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_VALUE_CODEC_H_

#include <cstddef>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// The raw bytes of a layout-compatible object (memcpy of its representation).
template <typename T>
std::string RawBytesOf(const T& object) {
  std::string bytes(sizeof(T), '\0');
  std::memcpy(bytes.data(), &object, sizeof(T));
  return bytes;
}

// The error for raw bytes from the server of the wrong length.
absl::Status WrongRawSize(size_t expected, size_t received);

// Reads a T from `raw` bytes in the worker's layout; INTERNAL if the size is not sizeof(T).
template <typename T>
absl::StatusOr<T> ObjectFromRaw(const std::string& raw) {
  if (raw.size() != sizeof(T)) return WrongRawSize(sizeof(T), raw.size());
  T object;
  std::memcpy(&object, raw.data(), sizeof(T));
  return object;
}

// Encodes a value of T as the protocol expects it for TypeOf<T>(): scalars as scalars,
// records and arrays as raw bytes.
template <typename T>
void EncodeValueOf(const T& value, v1::Value* out) {
  if constexpr (kIsScalar<T>) {
    EncodeScalar<T>(value, out);
  } else {
    out->set_raw(RawBytesOf(value));
  }
}

// Decodes a value of T the server sent for TypeOf<T>(); INTERNAL if it does not fit.
template <typename T>
absl::StatusOr<T> DecodeValueOf(const v1::Value& value) {
  if constexpr (kIsScalar<T>) {
    return DecodeScalar<T>(value);
  } else {
    if (value.kind_case() != v1::Value::kRaw) {
      return UnexpectedValue(value, "raw bytes of a record or array");
    }
    return ObjectFromRaw<T>(value.raw());
  }
}

// The protocol form of a remote pointer.
v1::RemoteAddress ToRemoteAddress(RemotePtr pointer);
// A pointer value the server sent: NULL is RemotePtr(); INTERNAL for anything but a null or
// remote pointer.
absl::StatusOr<RemotePtr> DecodePointer(const v1::Value& value);
// Stores `pointer` in `out`: null, or a remote address.
void EncodePointer(const RemotePtr& pointer, v1::Value* out);

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_VALUE_CODEC_H_

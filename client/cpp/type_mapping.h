// How C++ parameter types of a typed function become ffibox Types and Values.
//
// `ArgTraits<A>` describes one parameter type: its proto `Type`, the C++ type the caller
// passes (`Param`), and how that is appended to a `Call` (scalars as values, strings as
// bytes/text, client pointers and Buffers as MemoryBlocks copied back after the call).
// Result types are in `result_traits.h`. Used by `typed_function.h`; see `ffibox_client.h`
// for the table of supported types.
#ifndef FFIBOX_CLIENT_CPP_TYPE_MAPPING_H_
#define FFIBOX_CLIENT_CPP_TYPE_MAPPING_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/cpp/scalar_codec.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// Accumulates one call's arguments and memory blocks, and what to copy back after it.
class CallBuilder {
 public:
  // Writes a block's returned contents (exactly the block's size) into client memory.
  using CopyBack = std::function<void(const std::string& data)>;

  // The call being built (arguments and blocks so far).
  v1::Call& call() { return call_; }
  // Appends an argument value for the caller to fill.
  v1::Value* AddArg() { return call_.add_args(); }
  // Appends a pointer argument to a new block of `size` bytes starting with `data`;
  // `copy_back` (may be empty) receives the block's contents after an OUT/INOUT call.
  void AddBlockArg(std::string data, uint64_t size, v1::Direction direction, CopyBack copy_back);
  // Appends a NULL pointer argument.
  void AddNullArg();
  // Copies the OUT/INOUT block contents of `result` back into client memory; INTERNAL if
  // the server returned a block the call did not send or of the wrong size.
  absl::Status ApplyBlocks(const v1::CallResult& result) const;

 private:
  v1::Call call_;
  std::vector<CopyBack> copy_backs_;
  std::vector<uint64_t> block_sizes_;
};

// UTF-32 (what wchar_t holds on Linux) to UTF-8; INVALID_ARGUMENT for a surrogate or a
// value beyond U+10FFFF.
absl::StatusOr<std::string> Utf32ToUtf8(std::u32string_view text);
// UTF-8 to UTF-32; INVALID_ARGUMENT for malformed UTF-8.
absl::StatusOr<std::u32string> Utf8ToUtf32(absl::string_view text);
// wchar_t text <-> UTF-32 (the same code units on Linux, where wchar_t is 32 bits).
std::u32string WideToUtf32(std::wstring_view text);
std::wstring Utf32ToWide(std::u32string_view text);

// Reads a string at a remote address (used when a string result comes back as a pointer).
using RemoteStringReader =
    absl::FunctionRef<absl::StatusOr<v1::StringData>(const v1::RemoteAddress&, bool wide)>;

// A CSTRING result: bytes, or nullopt for NULL.
absl::StatusOr<std::optional<std::string>> DecodeCString(const v1::Value& value,
                                                         RemoteStringReader read);
// A WSTRING result: text, or nullopt for NULL.
absl::StatusOr<std::optional<std::u32string>> DecodeWString(const v1::Value& value,
                                                            RemoteStringReader read);
// A pointer result; NULL is RemotePtr().
absl::StatusOr<RemotePtr> DecodePointer(const v1::Value& value);
// Stores `pointer` in `out`: null, or a remote address.
void EncodePointer(const RemotePtr& pointer, v1::Value* out);
// The error for a string result that was NULL where the C++ type cannot hold NULL.
absl::Status NullStringResult();

template <typename T>
inline constexpr bool kAlwaysFalse = false;

// ---- Parameters ----------------------------------------------------------------------

template <typename A, typename Enable = void>
struct ArgTraits {
  static_assert(kAlwaysFalse<A>,
                "ffibox: unsupported parameter type; see client/cpp/ffibox_client.h for the "
                "supported ones (void* parameters take ffibox::RemotePtr)");
};

// Scalars travel by value.
template <typename A>
struct ArgTraits<A, std::enable_if_t<kIsScalar<A>>> {
  using Param = A;
  static v1::Type Type() { return ScalarType(ScalarOf<A>::kScalar); }
  static absl::Status Append(Param value, CallBuilder& builder) {
    EncodeScalar<A>(value, builder.AddArg());
    return absl::OkStatus();
  }
};

// A pointer to one client object: INOUT block (IN for const), copied back; nullptr is NULL.
template <typename T>
struct ArgTraits<T*, std::enable_if_t<kIsScalar<std::remove_const_t<T>> && !kIsCharacter<T>>> {
  using Param = T*;
  static v1::Type Type() {
    v1::Type type;
    *type.mutable_pointer()->mutable_pointee() =
        ScalarType(ScalarOf<std::remove_const_t<T>>::kScalar);
    return type;
  }
  static absl::Status Append(Param pointer, CallBuilder& builder) {
    if (pointer == nullptr) {
      builder.AddNullArg();
      return absl::OkStatus();
    }
    std::string bytes(sizeof(T), '\0');
    std::memcpy(bytes.data(), pointer, sizeof(T));
    if constexpr (std::is_const_v<T>) {
      builder.AddBlockArg(std::move(bytes), sizeof(T), v1::IN, nullptr);
    } else {
      builder.AddBlockArg(
          std::move(bytes), sizeof(T), v1::INOUT,
          [pointer](const std::string& data) { std::memcpy(pointer, data.data(), sizeof(T)); });
    }
    return absl::OkStatus();
  }
};

// A reference to one client object: like a pointer that cannot be NULL.
template <typename T>
struct ArgTraits<T&, std::enable_if_t<kIsScalar<std::remove_const_t<T>>>> {
  using Param = T&;
  static v1::Type Type() { return ArgTraits<T*>::Type(); }
  static absl::Status Append(Param object, CallBuilder& builder) {
    return ArgTraits<T*>::Append(&object, builder);
  }
};

// C strings: bytes (the worker adds the NUL); nullptr is NULL.
struct CStringArg {
  using Param = const char*;
  static v1::Type Type() { return ScalarType(v1::CSTRING); }
  static absl::Status Append(Param text, CallBuilder& builder) {
    if (text == nullptr) {
      builder.AddNullArg();
    } else {
      builder.AddArg()->set_bytes_value(text);
    }
    return absl::OkStatus();
  }
};
template <>
struct ArgTraits<const char*> : CStringArg {};
template <>
struct ArgTraits<char*> : CStringArg {};

struct StdStringArg {
  using Param = absl::string_view;
  static v1::Type Type() { return ScalarType(v1::CSTRING); }
  static absl::Status Append(Param text, CallBuilder& builder) {
    builder.AddArg()->set_bytes_value(text.data(), text.size());
    return absl::OkStatus();
  }
};
template <>
struct ArgTraits<std::string> : StdStringArg {};
template <>
struct ArgTraits<const std::string&> : StdStringArg {};
template <>
struct ArgTraits<absl::string_view> : StdStringArg {};

// Wide strings: UTF-8 text converted to wchar_t by the worker; nullptr is NULL.
struct WStringArg {
  using Param = std::u32string_view;
  static v1::Type Type() { return ScalarType(v1::WSTRING); }
  static absl::Status Append(Param text, CallBuilder& builder) {
    absl::StatusOr<std::string> utf8 = Utf32ToUtf8(text);
    if (!utf8.ok()) return utf8.status();
    builder.AddArg()->set_text_value(*std::move(utf8));
    return absl::OkStatus();
  }
};
struct WCharPointerArg {
  using Param = const wchar_t*;
  static v1::Type Type() { return ScalarType(v1::WSTRING); }
  static absl::Status Append(Param text, CallBuilder& builder) {
    if (text == nullptr) {
      builder.AddNullArg();
      return absl::OkStatus();
    }
    return WStringArg::Append(WideToUtf32(text), builder);
  }
};
struct StdWStringArg {
  using Param = const std::wstring&;
  static v1::Type Type() { return ScalarType(v1::WSTRING); }
  static absl::Status Append(Param text, CallBuilder& builder) {
    return WStringArg::Append(WideToUtf32(text), builder);
  }
};
template <>
struct ArgTraits<const wchar_t*> : WCharPointerArg {};
template <>
struct ArgTraits<wchar_t*> : WCharPointerArg {};
template <>
struct ArgTraits<std::wstring> : StdWStringArg {};
template <>
struct ArgTraits<const std::wstring&> : StdWStringArg {};
template <>
struct ArgTraits<std::u32string> : WStringArg {};
template <>
struct ArgTraits<const std::u32string&> : WStringArg {};

// Pointers into the worker: a RemotePtr (void* parameters take one too); nullptr is NULL.
struct RemotePtrArg {
  using Param = RemotePtr;
  static v1::Type Type() { return ScalarType(v1::POINTER); }
  static absl::Status Append(Param pointer, CallBuilder& builder) {
    EncodePointer(pointer, builder.AddArg());
    return absl::OkStatus();
  }
};
template <>
struct ArgTraits<RemotePtr> : RemotePtrArg {};
template <>
struct ArgTraits<void*> : RemotePtrArg {};
template <>
struct ArgTraits<const void*> : RemotePtrArg {};
template <>
struct ArgTraits<std::nullptr_t> : RemotePtrArg {};

// Client Buffers: a block in the buffer's direction, copied back into `data`.
struct BufferPointerArg {
  using Param = Buffer*;
  static v1::Type Type() { return ScalarType(v1::POINTER); }
  static absl::Status Append(Param buffer, CallBuilder& builder) {
    if (buffer == nullptr) {
      builder.AddNullArg();
      return absl::OkStatus();
    }
    const uint64_t size = buffer->data.size();
    const bool sends_data = buffer->direction != v1::OUT;
    const bool copies_back = buffer->direction != v1::IN;
    builder.AddBlockArg(sends_data ? buffer->data : std::string(), size, buffer->direction,
                        copies_back ? CallBuilder::CopyBack([buffer](const std::string& data) {
                          buffer->data = data;
                        })
                                    : CallBuilder::CopyBack());
    return absl::OkStatus();
  }
};
template <>
struct ArgTraits<Buffer*> : BufferPointerArg {};
template <>
struct ArgTraits<Buffer&> {
  using Param = Buffer&;
  static v1::Type Type() { return ScalarType(v1::POINTER); }
  static absl::Status Append(Param buffer, CallBuilder& builder) {
    return BufferPointerArg::Append(&buffer, builder);
  }
};

// A const Buffer is only read: an IN block whatever its direction says.
struct ConstBufferPointerArg {
  using Param = const Buffer*;
  static v1::Type Type() { return ScalarType(v1::POINTER); }
  static absl::Status Append(Param buffer, CallBuilder& builder) {
    if (buffer == nullptr) {
      builder.AddNullArg();
    } else {
      builder.AddBlockArg(buffer->data, buffer->data.size(), v1::IN, CallBuilder::CopyBack());
    }
    return absl::OkStatus();
  }
};
template <>
struct ArgTraits<const Buffer*> : ConstBufferPointerArg {};
template <>
struct ArgTraits<const Buffer&> {
  using Param = const Buffer&;
  static v1::Type Type() { return ScalarType(v1::POINTER); }
  static absl::Status Append(Param buffer, CallBuilder& builder) {
    return ConstBufferPointerArg::Append(&buffer, builder);
  }
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_TYPE_MAPPING_H_

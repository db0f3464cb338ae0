// How the C++ parameter types of a typed function become ffibox Types and Values.
//
// `ArgTraits<A>` describes one parameter type: its proto `Type`, the C++ type the caller
// passes (`Param`), and how that is appended to a call (CallBuilder: scalars as values, strings
// as bytes/text, client pointers and Buffers as MemoryBlocks copied back after the call). Traits
// of types that carry described records also have a `Verify` member (layout_verifier.h).
// Result types are in result_traits.h, callback parameters in callback_invocation.h. See
// `ffibox_client.h` for the table of supported types.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_ARG_TRAITS_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_ARG_TRAITS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/cpp/block_graph.h"
#include "client/cpp/internal/call_builder.h"
#include "client/cpp/internal/layout_verifier.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/internal/type_traits.h"
#include "client/cpp/internal/value_codec.h"
#include "client/cpp/records.h"
#include "client/cpp/values.h"
#include "core/utf8.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

static_assert(sizeof(wchar_t) == sizeof(char32_t), "ffibox assumes a 32-bit wchar_t (Linux)");

// wchar_t text as UTF-32 (the same code units on Linux, where wchar_t is 32 bits).
inline std::u32string WideToUtf32(std::wstring_view text) {
  return std::u32string(text.begin(), text.end());
}

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
      builder.AddBlockArg(std::move(bytes), sizeof(T), v1::INOUT,
                          [pointer](const v1::BlockContents& contents, uint64_t) {
                            std::memcpy(pointer, contents.data().data(), sizeof(T));
                          });
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
    absl::StatusOr<std::string> utf8 = EncodeUtf8(text);
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
    const bool sends_data = buffer->direction != v1::OUT;
    const bool copies_back = buffer->direction != v1::IN;
    builder.AddBorrowedBlockArg(sends_data ? absl::string_view(buffer->data) : absl::string_view(),
                                buffer->data.size(), buffer->direction,
                                copies_back ? &buffer->data : nullptr);
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
      builder.AddBorrowedBlockArg(buffer->data, buffer->data.size(), v1::IN, nullptr);
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

// Records, arrays, vectors, string arrays and pointer graphs. Traits with a `Verify` member
// check the worker's layout of the records they carry before the first call.

// A pointer to `Object`: pointee type TypeOf<Object>.
template <typename Object>
v1::Type PointerTo() {
  v1::Type type;
  *type.mutable_pointer()->mutable_pointee() = TypeOf<Object>();
  return type;
}

// A described record by value: its bytes in the worker's layout (`raw`).
template <typename T>
struct ArgTraits<T, std::enable_if_t<kIsRecord<T>>> {
  using Param = const T&;
  static v1::Type Type() { return TypeOf<T>(); }
  static absl::Status Verify(LayoutVerifier& verifier) { return VerifyLayout<T>(verifier); }
  static absl::Status Append(Param value, CallBuilder& builder) {
    builder.AddArg()->set_raw(RawBytesOf(value));
    return absl::OkStatus();
  }
};

// Whether a pointer or reference to T carries one object of T as a block (records and
// std::arrays; scalars have their own traits above).
template <typename T>
inline constexpr bool kIsBlockObject =
    kIsRecord<std::remove_const_t<T>> || IsStdArray<std::remove_const_t<T>>::value;

// A pointer to one record or std::array: a block of its bytes, INOUT and copied back (IN for
// const); nullptr is NULL. A `const std::array<int, 5>&` parameter is C's `const int a[5]`.
template <typename T>
struct ArgTraits<T*, std::enable_if_t<kIsBlockObject<T>>> {
  using Object = std::remove_const_t<T>;
  using Param = T*;
  static v1::Type Type() { return PointerTo<Object>(); }
  static absl::Status Verify(LayoutVerifier& verifier) { return VerifyLayout<Object>(verifier); }
  static absl::Status Append(Param pointer, CallBuilder& builder) {
    if (pointer == nullptr) {
      builder.AddNullArg();
    } else if constexpr (std::is_const_v<T>) {
      builder.AddBlockArg(RawBytesOf(*pointer), sizeof(T), v1::IN, nullptr);
    } else {
      builder.AddBlockArg(RawBytesOf(*pointer), sizeof(T), v1::INOUT,
                          [pointer](const v1::BlockContents& contents, uint64_t) {
                            std::memcpy(pointer, contents.data().data(), sizeof(T));
                          });
    }
    return absl::OkStatus();
  }
};

// A reference to one record or std::array: like the pointer, never NULL.
template <typename T>
struct ArgTraits<T&, std::enable_if_t<kIsBlockObject<T>>> {
  using Param = T&;
  static v1::Type Type() { return ArgTraits<T*>::Type(); }
  static absl::Status Verify(LayoutVerifier& verifier) { return ArgTraits<T*>::Verify(verifier); }
  static absl::Status Append(Param object, CallBuilder& builder) {
    return ArgTraits<T*>::Append(&object, builder);
  }
};

// Whether E can be the element of a vector or span argument.
template <typename E>
inline constexpr bool kIsSpanElement = IsLayoutCompatible<std::remove_const_t<E>>() &&
                                       !std::is_same_v<std::remove_const_t<E>, bool>;

// A contiguous run of elements: one block of all of them (pointer to the first); INOUT and
// copied back, IN for const elements; an empty span is NULL.
template <typename E>
struct SpanArg {
  using Element = std::remove_const_t<E>;
  static v1::Type Type() { return PointerTo<Element>(); }
  static absl::Status Verify(LayoutVerifier& verifier) { return VerifyLayout<Element>(verifier); }
  static absl::Status Append(absl::Span<E> elements, CallBuilder& builder) {
    if (elements.empty()) {
      builder.AddNullArg();
      return absl::OkStatus();
    }
    const uint64_t size = elements.size() * sizeof(E);
    std::string bytes(size, '\0');
    std::memcpy(bytes.data(), elements.data(), size);
    if constexpr (std::is_const_v<E>) {
      builder.AddBlockArg(std::move(bytes), size, v1::IN, nullptr);
    } else {
      Element* data = elements.data();
      builder.AddBlockArg(std::move(bytes), size, v1::INOUT,
                          [data, size](const v1::BlockContents& contents, uint64_t) {
                            std::memcpy(data, contents.data().data(), size);
                          });
    }
    return absl::OkStatus();
  }
};
template <typename E>
struct ArgTraits<absl::Span<E>, std::enable_if_t<kIsSpanElement<E>>> : SpanArg<E> {
  using Param = absl::Span<E>;
};
template <typename E>
struct ArgTraits<std::vector<E>&, std::enable_if_t<kIsSpanElement<E>>> {
  using Param = std::vector<E>&;
  static v1::Type Type() { return SpanArg<E>::Type(); }
  static absl::Status Verify(LayoutVerifier& verifier) { return SpanArg<E>::Verify(verifier); }
  static absl::Status Append(Param elements, CallBuilder& builder) {
    return SpanArg<E>::Append(absl::MakeSpan(elements), builder);
  }
};
template <typename E>
struct ArgTraits<const std::vector<E>&, std::enable_if_t<kIsSpanElement<E>>> {
  using Param = const std::vector<E>&;
  static v1::Type Type() { return SpanArg<const E>::Type(); }
  static absl::Status Verify(LayoutVerifier& verifier) {
    return SpanArg<const E>::Verify(verifier);
  }
  static absl::Status Append(Param elements, CallBuilder& builder) {
    return SpanArg<const E>::Append(absl::MakeConstSpan(elements), builder);
  }
};

// An array of strings (`const char**`): an IN block of pointers, NULL-terminated, each
// relocated into one IN block holding the NUL-terminated strings.
template <>
struct ArgTraits<const std::vector<std::string>&> {
  using Param = const std::vector<std::string>&;
  static v1::Type Type() {
    v1::Type type;
    type.mutable_pointer()->mutable_pointee()->set_scalar(v1::CSTRING);
    return type;
  }
  static absl::Status Append(Param strings, CallBuilder& builder);
};

// A pointer into a BlockGraph: the graph's blocks travel with the call (once) and come back
// with the library's changes and links (block_graph.h).
template <>
struct ArgTraits<GraphPointer> {
  using Param = GraphPointer;
  static v1::Type Type() { return ScalarType(v1::POINTER); }
  static absl::Status Append(Param pointer, CallBuilder& builder);
};

// An out-pointer to a worker address (`T**` / `char**` / `void**` that the library fills with
// its own memory): an 8-byte INOUT block; after the call the RemotePtr holds the address the
// library stored, in the generation that ran the call.
template <>
struct ArgTraits<RemotePtr*> {
  using Param = RemotePtr*;
  static v1::Type Type() {
    v1::Type type;
    type.mutable_pointer()->mutable_pointee()->set_scalar(v1::POINTER);
    return type;
  }
  static absl::Status Append(Param pointer, CallBuilder& builder);
};
template <>
struct ArgTraits<RemotePtr&> {
  using Param = RemotePtr&;
  static v1::Type Type() { return ArgTraits<RemotePtr*>::Type(); }
  static absl::Status Append(Param pointer, CallBuilder& builder) {
    return ArgTraits<RemotePtr*>::Append(&pointer, builder);
  }
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_ARG_TRAITS_H_

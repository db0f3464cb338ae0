// Compile-time facts about the C++ types the client maps, before any protocol: whether a type
// is a described record (records.h) or a std::array, where a record's member lies, and the
// false that makes a static_assert fire only when a template is used.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_TYPE_TRAITS_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_TYPE_TRAITS_H_

#include <array>
#include <cstddef>
#include <type_traits>

namespace ffibox {
namespace client_internal {

// False for every T, for a static_assert in a template that must not be instantiated.
template <typename T>
inline constexpr bool kAlwaysFalse = false;

// Whether T was described with FFIBOX_STRUCT, FFIBOX_UNION or FFIBOX_PACKED_STRUCT (found by
// argument-dependent lookup of the FfiboxRecordInfo those macros define).
template <typename T, typename Enable = void>
struct IsDescribedRecord : std::false_type {};
template <typename T>
struct IsDescribedRecord<T, std::void_t<decltype(FfiboxRecordInfo(static_cast<const T*>(nullptr)))>>
    : std::true_type {};

// Whether T is a std::array, and then its element type and length.
template <typename T>
struct IsStdArray : std::false_type {};
template <typename E, size_t N>
struct IsStdArray<std::array<E, N>> : std::true_type {
  using Element = E;
  static constexpr size_t kLength = N;
};

// The byte offset of `member` inside T, computed by the C++ compiler's layout.
template <typename T, typename M>
size_t MemberOffset(M T::*member) {
  alignas(T) static const unsigned char storage[sizeof(T)] = {};
  const T* object = reinterpret_cast<const T*>(storage);
  return static_cast<size_t>(reinterpret_cast<const unsigned char*>(&(object->*member)) - storage);
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_TYPE_TRAITS_H_

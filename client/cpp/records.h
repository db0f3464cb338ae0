// C++ structs and unions described once for ffibox: FFIBOX_STRUCT, TypeOf<T>, layout checks.
//
// Describe a trivially copyable C++ record next to its definition, in the same namespace,
// listing its fields in declaration order:
//
//   struct Point { double x, y; };
//   FFIBOX_STRUCT(Point, x, y)
//   union IntOrFloat { int i; float f; };
//   FFIBOX_UNION(IntOrFloat, i, f)
//   #pragma pack(push, 1)
//   struct Packed { char c; int i; };
//   #pragma pack(pop)
//   FFIBOX_PACKED_STRUCT(Packed, 1, c, i)
//
// Fields may be scalars, described records, std::array and C arrays of those (up to 32
// fields). `ffibox::TypeOf<Point>()` then yields the protocol Type (with field names), and
// Point works in typed signatures (`typed_function.h`): by value (sent and returned as `raw`
// bytes: the client and the worker share the x86-64 System V ABI), as `Point*` / `Point&`
// (an INOUT block), `const Point*` / `const Point&` (an IN block), in std::vector / std::array
// / absl::Span arguments, in Session::Read / Write and Library::Variable.
//
// Because raw bytes are only meaningful if both sides agree on the layout, the client asks
// the worker (GetLayout) once per record type per session and compares size, alignment and
// every field offset with the C++ compiler's; a mismatch fails the first use with
// FAILED_PRECONDITION naming the record and field. Bit fields and pointer members cannot be
// described here (a member pointer cannot name a bit field; a client address means nothing to
// the worker): send such records with an explicitly built v1::Type through RawFunction, or
// link client pointers with a BlockGraph (`block_graph.h`).
#ifndef FFIBOX_CLIENT_CPP_RECORDS_H_
#define FFIBOX_CLIENT_CPP_RECORDS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/scalar_codec.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// What FFIBOX_STRUCT / FFIBOX_UNION record about a C++ record besides its fields.
struct RecordInfo {
  v1::RecordType::Kind kind;
  uint32_t pack;     // 0: natural alignment; else the #pragma pack value
  const char* name;  // the C++ spelling, for messages
};

namespace client_internal {

template <typename T, typename Enable = void>
struct IsDescribedRecord : std::false_type {};
template <typename T>
struct IsDescribedRecord<T, std::void_t<decltype(FfiboxRecordInfo(static_cast<const T*>(nullptr)))>>
    : std::true_type {};

template <typename T>
struct IsStdArray : std::false_type {};
template <typename E, size_t N>
struct IsStdArray<std::array<E, N>> : std::true_type {
  using Element = E;
  static constexpr size_t kLength = N;
};

}  // namespace client_internal

// Whether T was described with FFIBOX_STRUCT, FFIBOX_UNION or FFIBOX_PACKED_STRUCT.
template <typename T>
inline constexpr bool kIsRecord = client_internal::IsDescribedRecord<T>::value;

// Whether values of T can be carried as raw bytes in the worker's layout: scalars, described
// records, and std::array / C arrays of those.
template <typename T>
constexpr bool IsLayoutCompatible() {
  if constexpr (client_internal::kIsScalar<T> || kIsRecord<T>) {
    return true;
  } else if constexpr (std::is_array_v<T>) {
    return IsLayoutCompatible<std::remove_extent_t<T>>();
  } else if constexpr (client_internal::IsStdArray<T>::value) {
    return IsLayoutCompatible<typename client_internal::IsStdArray<T>::Element>();
  } else {
    return false;
  }
}

// The record information of a described T.
template <typename T>
RecordInfo RecordInfoOf() {
  return FfiboxRecordInfo(static_cast<const T*>(nullptr));
}

// Calls `visit(name, offset, FieldTag<M>{})` for each described field of T, in order.
template <typename M>
struct FieldTag {
  using Type = M;
};

namespace client_internal {

// The byte offset of `member` inside T, computed by the C++ compiler's layout.
template <typename T, typename M>
size_t MemberOffset(M T::*member) {
  alignas(T) static const unsigned char storage[sizeof(T)] = {};
  const T* object = reinterpret_cast<const T*>(storage);
  return static_cast<size_t>(reinterpret_cast<const unsigned char*>(&(object->*member)) - storage);
}

}  // namespace client_internal

template <typename T, typename Visitor>
void ForEachField(Visitor&& visit) {
  FfiboxVisitFields(static_cast<const T*>(nullptr), [&](const char* name, auto member) {
    using M = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<const T&>().*member)>>;
    visit(name, client_internal::MemberOffset(member), FieldTag<M>{});
  });
}

// The protocol Type of T (a scalar, a described record with field names, or an array).
template <typename T>
v1::Type TypeOf() {
  static_assert(IsLayoutCompatible<T>(),
                "ffibox::TypeOf: T must be a C scalar, a record described with "
                "FFIBOX_STRUCT/FFIBOX_UNION, or an array of those");
  if constexpr (client_internal::kIsScalar<T>) {
    return client_internal::ScalarType(client_internal::ScalarOf<T>::kScalar);
  } else if constexpr (std::is_array_v<T>) {
    v1::Type type;
    *type.mutable_array()->mutable_element() = TypeOf<std::remove_extent_t<T>>();
    type.mutable_array()->set_length(std::extent_v<T>);
    return type;
  } else if constexpr (client_internal::IsStdArray<T>::value) {
    v1::Type type;
    *type.mutable_array()->mutable_element() =
        TypeOf<typename client_internal::IsStdArray<T>::Element>();
    type.mutable_array()->set_length(client_internal::IsStdArray<T>::kLength);
    return type;
  } else {
    static_assert(std::is_trivially_copyable_v<T>,
                  "ffibox: described records must be trivially copyable");
    const RecordInfo info = RecordInfoOf<T>();
    v1::Type type;
    v1::RecordType* record = type.mutable_record();
    record->set_kind(info.kind);
    record->set_name(info.name);
    record->set_pack(info.pack);
    ForEachField<T>([record](const char* name, size_t, auto tag) {
      v1::Field* field = record->add_fields();
      field->set_name(name);
      *field->mutable_type() = TypeOf<typename decltype(tag)::Type>();
    });
    return type;
  }
}

namespace client_internal {

// Where the client learns the worker's layouts, and remembers which record types it has
// already checked in this session. Implemented by the session stream.
class LayoutVerifier {
 public:
  virtual ~LayoutVerifier() = default;
  // The worker's layout of `type` (a GetLayout request).
  virtual absl::StatusOr<v1::LayoutResult> WorkerLayout(const v1::Type& type) = 0;
  // Whether the record type identified by `key` was already checked in this session.
  virtual bool IsLayoutVerified(const void* key) = 0;
  // Remembers that the record type identified by `key` matched.
  virtual void MarkLayoutVerified(const void* key) = 0;
};

// A unique address per C++ type, used as its key in the verified set.
template <typename T>
struct TypeKey {
  static constexpr char kId = 0;
};

// The error for a record whose C++ layout differs from the worker's.
absl::Status LayoutMismatch(absl::string_view record, absl::string_view what, uint64_t in_cpp,
                            uint64_t in_worker);

// Checks once per session that the worker lays out T (and every record inside it) as the
// C++ compiler does; FAILED_PRECONDITION on a mismatch, the GetLayout error if it failed.
template <typename T>
absl::Status VerifyLayout(LayoutVerifier& verifier) {
  if constexpr (std::is_array_v<T>) {
    return VerifyLayout<std::remove_extent_t<T>>(verifier);
  } else if constexpr (IsStdArray<T>::value) {
    return VerifyLayout<typename IsStdArray<T>::Element>(verifier);
  } else if constexpr (kIsRecord<T>) {
    const void* key = &TypeKey<T>::kId;
    if (verifier.IsLayoutVerified(key)) return absl::OkStatus();
    const RecordInfo info = RecordInfoOf<T>();
    absl::StatusOr<v1::LayoutResult> layout = verifier.WorkerLayout(TypeOf<T>());
    if (!layout.ok()) return layout.status();
    if (layout->size() != sizeof(T)) {
      return LayoutMismatch(info.name, "sizeof", sizeof(T), layout->size());
    }
    if (layout->alignment() != alignof(T)) {
      return LayoutMismatch(info.name, "alignof", alignof(T), layout->alignment());
    }
    absl::Status status;
    int index = 0;
    ForEachField<T>([&](const char* name, size_t offset, auto tag) {
      if (!status.ok()) return;
      if (index >= layout->fields_size()) {
        status =
            LayoutMismatch(info.name, "the number of fields", index + 1, layout->fields_size());
        return;
      }
      const v1::FieldLayout& field = layout->fields(index++);
      if (field.offset() != offset || field.bit_width() != 0) {
        status = LayoutMismatch(info.name, absl::StrCat("the offset of field ", name), offset,
                                field.offset());
        return;
      }
      status = VerifyLayout<typename decltype(tag)::Type>(verifier);
    });
    if (!status.ok()) return status;
    verifier.MarkLayoutVerified(key);
    return absl::OkStatus();
  } else {
    return absl::OkStatus();
  }
}

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
// records and arrays as raw bytes, RemotePtr as a remote pointer.
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

}  // namespace client_internal
}  // namespace ffibox

// ---- Description macros ---------------------------------------------------------------
// Implementation detail: expands M(T, field) for each field name.
#define FFIBOX_PP_ARG_N_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, \
                         _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30,  \
                         _31, _32, N, ...)                                                      \
  N
#define FFIBOX_PP_NARG_(...)                                                                    \
  FFIBOX_PP_ARG_N_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, \
                   16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
#define FFIBOX_PP_CAT_(a, b) FFIBOX_PP_CAT2_(a, b)
#define FFIBOX_PP_CAT2_(a, b) a##b
#define FFIBOX_FOR_EACH_(M, T, ...) \
  FFIBOX_PP_CAT_(FFIBOX_FE_, FFIBOX_PP_NARG_(__VA_ARGS__))(M, T, __VA_ARGS__)
#define FFIBOX_FE_1(M, T, x) M(T, x)
#define FFIBOX_FE_2(M, T, x, ...) M(T, x) FFIBOX_FE_1(M, T, __VA_ARGS__)
#define FFIBOX_FE_3(M, T, x, ...) M(T, x) FFIBOX_FE_2(M, T, __VA_ARGS__)
#define FFIBOX_FE_4(M, T, x, ...) M(T, x) FFIBOX_FE_3(M, T, __VA_ARGS__)
#define FFIBOX_FE_5(M, T, x, ...) M(T, x) FFIBOX_FE_4(M, T, __VA_ARGS__)
#define FFIBOX_FE_6(M, T, x, ...) M(T, x) FFIBOX_FE_5(M, T, __VA_ARGS__)
#define FFIBOX_FE_7(M, T, x, ...) M(T, x) FFIBOX_FE_6(M, T, __VA_ARGS__)
#define FFIBOX_FE_8(M, T, x, ...) M(T, x) FFIBOX_FE_7(M, T, __VA_ARGS__)
#define FFIBOX_FE_9(M, T, x, ...) M(T, x) FFIBOX_FE_8(M, T, __VA_ARGS__)
#define FFIBOX_FE_10(M, T, x, ...) M(T, x) FFIBOX_FE_9(M, T, __VA_ARGS__)
#define FFIBOX_FE_11(M, T, x, ...) M(T, x) FFIBOX_FE_10(M, T, __VA_ARGS__)
#define FFIBOX_FE_12(M, T, x, ...) M(T, x) FFIBOX_FE_11(M, T, __VA_ARGS__)
#define FFIBOX_FE_13(M, T, x, ...) M(T, x) FFIBOX_FE_12(M, T, __VA_ARGS__)
#define FFIBOX_FE_14(M, T, x, ...) M(T, x) FFIBOX_FE_13(M, T, __VA_ARGS__)
#define FFIBOX_FE_15(M, T, x, ...) M(T, x) FFIBOX_FE_14(M, T, __VA_ARGS__)
#define FFIBOX_FE_16(M, T, x, ...) M(T, x) FFIBOX_FE_15(M, T, __VA_ARGS__)
#define FFIBOX_FE_17(M, T, x, ...) M(T, x) FFIBOX_FE_16(M, T, __VA_ARGS__)
#define FFIBOX_FE_18(M, T, x, ...) M(T, x) FFIBOX_FE_17(M, T, __VA_ARGS__)
#define FFIBOX_FE_19(M, T, x, ...) M(T, x) FFIBOX_FE_18(M, T, __VA_ARGS__)
#define FFIBOX_FE_20(M, T, x, ...) M(T, x) FFIBOX_FE_19(M, T, __VA_ARGS__)
#define FFIBOX_FE_21(M, T, x, ...) M(T, x) FFIBOX_FE_20(M, T, __VA_ARGS__)
#define FFIBOX_FE_22(M, T, x, ...) M(T, x) FFIBOX_FE_21(M, T, __VA_ARGS__)
#define FFIBOX_FE_23(M, T, x, ...) M(T, x) FFIBOX_FE_22(M, T, __VA_ARGS__)
#define FFIBOX_FE_24(M, T, x, ...) M(T, x) FFIBOX_FE_23(M, T, __VA_ARGS__)
#define FFIBOX_FE_25(M, T, x, ...) M(T, x) FFIBOX_FE_24(M, T, __VA_ARGS__)
#define FFIBOX_FE_26(M, T, x, ...) M(T, x) FFIBOX_FE_25(M, T, __VA_ARGS__)
#define FFIBOX_FE_27(M, T, x, ...) M(T, x) FFIBOX_FE_26(M, T, __VA_ARGS__)
#define FFIBOX_FE_28(M, T, x, ...) M(T, x) FFIBOX_FE_27(M, T, __VA_ARGS__)
#define FFIBOX_FE_29(M, T, x, ...) M(T, x) FFIBOX_FE_28(M, T, __VA_ARGS__)
#define FFIBOX_FE_30(M, T, x, ...) M(T, x) FFIBOX_FE_29(M, T, __VA_ARGS__)
#define FFIBOX_FE_31(M, T, x, ...) M(T, x) FFIBOX_FE_30(M, T, __VA_ARGS__)
#define FFIBOX_FE_32(M, T, x, ...) M(T, x) FFIBOX_FE_31(M, T, __VA_ARGS__)

#define FFIBOX_VISIT_FIELD_(T, f) ffibox_visit_(#f, &T::f);
#define FFIBOX_RECORD_(T, kind, pack, ...)                                                  \
  [[maybe_unused]] inline ::ffibox::RecordInfo FfiboxRecordInfo(const T*) {                 \
    return ::ffibox::RecordInfo{kind, pack, #T};                                            \
  }                                                                                         \
  template <typename FfiboxVisitor>                                                         \
  [[maybe_unused]] inline void FfiboxVisitFields(const T*, FfiboxVisitor&& ffibox_visit_) { \
    FFIBOX_FOR_EACH_(FFIBOX_VISIT_FIELD_, T, __VA_ARGS__)                                   \
  }

// Describes struct T with its fields in declaration order. Use in T's namespace.
#define FFIBOX_STRUCT(T, ...) FFIBOX_RECORD_(T, ::ffibox::v1::RecordType::STRUCT, 0, __VA_ARGS__)
// Describes union T with its members in declaration order. Use in T's namespace.
#define FFIBOX_UNION(T, ...) FFIBOX_RECORD_(T, ::ffibox::v1::RecordType::UNION, 0, __VA_ARGS__)
// Describes a struct T declared under `#pragma pack(pack)`. Use in T's namespace.
#define FFIBOX_PACKED_STRUCT(T, pack, ...) \
  FFIBOX_RECORD_(T, ::ffibox::v1::RecordType::STRUCT, pack, __VA_ARGS__)

#endif  // FFIBOX_CLIENT_CPP_RECORDS_H_

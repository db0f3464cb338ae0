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

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "client/cpp/internal/record_macros.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/internal/type_traits.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// What FFIBOX_STRUCT / FFIBOX_UNION record about a C++ record besides its fields.
struct RecordInfo {
  v1::RecordType::Kind kind;
  uint32_t pack;     // 0: natural alignment; else the #pragma pack value
  const char* name;  // the C++ spelling, for messages
};

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

// What ForEachField passes for a field of type M.
template <typename M>
struct FieldTag {
  using Type = M;
};

// Calls `visit(name, offset, FieldTag<M>{})` for each described field of T, in order.
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

}  // namespace ffibox

// Describes struct T with its fields in declaration order. Use in T's namespace.
#define FFIBOX_STRUCT(T, ...) FFIBOX_RECORD_(T, ::ffibox::v1::RecordType::STRUCT, 0, __VA_ARGS__)
// Describes union T with its members in declaration order. Use in T's namespace.
#define FFIBOX_UNION(T, ...) FFIBOX_RECORD_(T, ::ffibox::v1::RecordType::UNION, 0, __VA_ARGS__)
// Describes a struct T declared under `#pragma pack(pack)`. Use in T's namespace.
#define FFIBOX_PACKED_STRUCT(T, pack, ...) \
  FFIBOX_RECORD_(T, ::ffibox::v1::RecordType::STRUCT, pack, __VA_ARGS__)

#endif  // FFIBOX_CLIENT_CPP_RECORDS_H_

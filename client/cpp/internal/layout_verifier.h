// The check that the worker lays out a described record (records.h) as the C++ compiler does,
// before its raw bytes cross: size, alignment and every field offset, for the record and every
// record inside it, once per record type per session.
//
// Parameter and result traits with a `Verify` member call VerifyLayout for the records they
// carry (arg_traits.h, result_traits.h, signature.h); so do typed reads and writes
// (memory_ops.h). The session's MemoryOps is the LayoutVerifier.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_LAYOUT_VERIFIER_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_LAYOUT_VERIFIER_H_

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/cpp/internal/type_traits.h"
#include "client/cpp/records.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// Where the client learns the worker's layouts, and remembers which record types it has
// already checked in this session.
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
// Succeeds at once for types without records.
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

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_LAYOUT_VERIFIER_H_

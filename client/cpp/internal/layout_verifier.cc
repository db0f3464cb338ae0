#include "client/cpp/internal/layout_verifier.h"

#include "core/errors.h"

namespace ffibox {
namespace client_internal {

absl::Status LayoutMismatch(absl::string_view record, absl::string_view what, uint64_t in_cpp,
                            uint64_t in_worker) {
  return ErrorStatus(
      v1::FAILED_PRECONDITION,
      absl::StrCat("the C++ record ", record, " does not match the worker's layout: ", what, " is ",
                   in_cpp, " in C++ but ", in_worker,
                   " in the worker; list every field in declaration order in its "
                   "FFIBOX_STRUCT / FFIBOX_UNION and give FFIBOX_PACKED_STRUCT the record's "
                   "#pragma pack"));
}

}  // namespace client_internal
}  // namespace ffibox

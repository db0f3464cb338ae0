// Early returns of an absl::Status, as Abseil's status_macros.h (newer than the Abseil this
// builds against) and sandboxed-api's SAPI_* macros:
//
//   FFIBOX_RETURN_IF_ERROR(ValidateType(type, limits, "call.type"));
//   FFIBOX_ASSIGN_OR_RETURN(uint64_t handle, handles_.AddLibrary(path));
//
// Each evaluates its expression once; on an error the enclosing function returns that
// status (it must return absl::Status or an absl::StatusOr).
#ifndef FFIBOX_CORE_STATUS_MACROS_H_
#define FFIBOX_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FFIBOX_RETURN_IF_ERROR(expr)                     \
  do {                                                   \
    ::absl::Status ffibox_status_macros_status = (expr); \
    if (!ffibox_status_macros_status.ok()) {             \
      return ffibox_status_macros_status;                \
    }                                                    \
  } while (false)

#define FFIBOX_ASSIGN_OR_RETURN(lhs, rexpr) \
  FFIBOX_ASSIGN_OR_RETURN_IMPL(FFIBOX_STATUS_MACROS_CONCAT(ffibox_statusor_, __LINE__), lhs, rexpr)

// Implementation details of the macros above.
#define FFIBOX_STATUS_MACROS_CONCAT_INNER(x, y) x##y
#define FFIBOX_STATUS_MACROS_CONCAT(x, y) FFIBOX_STATUS_MACROS_CONCAT_INNER(x, y)
#define FFIBOX_ASSIGN_OR_RETURN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = *std::move(statusor)

#endif  // FFIBOX_CORE_STATUS_MACROS_H_

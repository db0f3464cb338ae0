// Assertions on absl::Status and absl::StatusOr for tests, as sandboxed-api's testing.h:
//
//   ASSERT_OK(session.Start());
//   ASSERT_OK_AND_ASSIGN(uint64_t handle, table.AddLibrary("/lib/libm.so.6"));
//   EXPECT_OK(status);
//   EXPECT_THAT(table.Lookup(7), StatusIs(v1::NOT_FOUND));   // the ffibox error code
//   EXPECT_THAT(result, IsOk());
//
// A failure prints the status. ASSERT_* return from the test function on failure. The
// matchers take an absl::Status or an absl::StatusOr; StatusIs reads the ffibox error code
// the status carries (core/errors.h: ErrorCodeOf).
#ifndef FFIBOX_TESTS_SUPPORT_STATUS_MATCHERS_H_
#define FFIBOX_TESTS_SUPPORT_STATUS_MATCHERS_H_

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace testing_internal {

inline const absl::Status& StatusOf(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

}  // namespace testing_internal

// Matches an OK status (or a StatusOr holding a value).
MATCHER(IsOk, "is OK") {
  const absl::Status& status = ::ffibox::testing_internal::StatusOf(arg);
  if (!status.ok()) *result_listener << "the status is " << status;
  return status.ok();
}

// Matches a status whose ffibox error code is `code` (v1::ErrorCode).
MATCHER_P(StatusIs, code, std::string("fails with ") + ::ffibox::v1::ErrorCode_Name(code)) {
  const absl::Status& status = ::ffibox::testing_internal::StatusOf(arg);
  *result_listener << "the status is " << status;
  return ::ffibox::ErrorCodeOf(status) == code;
}

}  // namespace ffibox

#define ASSERT_OK(expr) \
  FFIBOX_CHECK_OK_IMPL(FFIBOX_TESTING_CONCAT(ffibox_status_, __LINE__), expr, ASSERT_TRUE)
#define EXPECT_OK(expr) \
  FFIBOX_CHECK_OK_IMPL(FFIBOX_TESTING_CONCAT(ffibox_status_, __LINE__), expr, EXPECT_TRUE)

#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  FFIBOX_ASSERT_OK_AND_ASSIGN_IMPL(FFIBOX_TESTING_CONCAT(ffibox_statusor_, __LINE__), lhs, rexpr)

// Implementation details of the macros above.
#define FFIBOX_TESTING_CONCAT_INNER(x, y) x##y
#define FFIBOX_TESTING_CONCAT(x, y) FFIBOX_TESTING_CONCAT_INNER(x, y)
#define FFIBOX_CHECK_OK_IMPL(status, expr, check)                             \
  do {                                                                        \
    const ::absl::Status status = ::ffibox::testing_internal::StatusOf(expr); \
    check(status.ok()) << status;                                             \
  } while (false)
#define FFIBOX_ASSERT_OK_AND_ASSIGN_IMPL(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                     \
  ASSERT_TRUE(statusor.ok()) << statusor.status();             \
  lhs = *std::move(statusor)

#endif  // FFIBOX_TESTS_SUPPORT_STATUS_MATCHERS_H_

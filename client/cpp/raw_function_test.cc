#include "client/cpp/raw_function.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

TEST(TimeoutMillisTest, RoundsUpAndCaps) {
  EXPECT_EQ(TimeoutMillis(absl::ZeroDuration()), 0u);
  EXPECT_EQ(TimeoutMillis(absl::Microseconds(1)), 1u);
  EXPECT_EQ(TimeoutMillis(absl::Milliseconds(250)), 250u);
  EXPECT_EQ(TimeoutMillis(absl::Hours(24 * 365)), UINT32_MAX);
}

}  // namespace
}  // namespace ffibox

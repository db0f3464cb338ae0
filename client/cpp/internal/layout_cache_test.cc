#include "client/cpp/internal/layout_cache.h"

#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

TEST(LayoutCacheTest, RemembersTheRecordTypesThatMatched) {
  static constexpr char kPoint = 0;
  static constexpr char kShape = 0;
  LayoutCache cache;
  EXPECT_FALSE(cache.Contains(&kPoint));
  cache.Insert(&kPoint);
  EXPECT_TRUE(cache.Contains(&kPoint));
  EXPECT_FALSE(cache.Contains(&kShape));
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

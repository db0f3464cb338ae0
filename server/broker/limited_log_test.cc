#include "server/broker/limited_log.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

// What `write` wrote to stderr, line by line.
template <typename Write>
std::vector<std::string> LinesOf(Write write) {
  testing::internal::CaptureStderr();
  write();
  return absl::StrSplit(testing::internal::GetCapturedStderr(), '\n', absl::SkipEmpty());
}

TEST(LimitedLog, WritesAtMostItsLinesAMinuteAndCountsTheRestInTheNextMinutesFirst) {
  LimitedLog log(3);
  const absl::Time start = absl::FromUnixSeconds(1000000);
  const std::vector<std::string> first = LinesOf([&] {
    for (int i = 0; i < 10; ++i) log.WriteAt(start + absl::Seconds(i), absl::StrCat("hit ", i));
  });
  EXPECT_EQ(first, (std::vector<std::string>{"hit 0", "hit 1", "hit 2"}));
  const std::vector<std::string> next = LinesOf([&] {
    log.WriteAt(start + absl::Seconds(61), "hit 10");
    log.WriteAt(start + absl::Seconds(62), "hit 11");
  });
  EXPECT_EQ(next, (std::vector<std::string>{"hit 10 (7 earlier lines dropped)", "hit 11"}));
}

TEST(LimitedLog, AlwaysWritesALineMarkedAlways) {
  LimitedLog log(1);
  const absl::Time now = absl::FromUnixSeconds(1000000);
  const std::vector<std::string> lines = LinesOf([&] {
    log.WriteAt(now, "first");
    log.WriteAt(now, "dropped");
    log.WriteAt(now, "fatal", /*always=*/true);
  });
  EXPECT_EQ(lines, (std::vector<std::string>{"first", "fatal (1 earlier lines dropped)"}));
}

}  // namespace
}  // namespace ffibox

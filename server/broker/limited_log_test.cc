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

TEST(LimitedLog, ALogWithinASharedOneKeepsItsOwnBudgetAndTheSharedOneBoundsThemAll) {
  LimitedLog process(4);
  LimitedLog noisy(2, &process);
  LimitedLog quiet(2, &process);
  const absl::Time now = absl::FromUnixSeconds(1000000);
  const std::vector<std::string> lines = LinesOf([&] {
    for (int i = 0; i < 10; ++i) noisy.WriteAt(now, absl::StrCat("noisy ", i));
    quiet.WriteAt(now, "quiet 0");
    quiet.WriteAt(now, "quiet 1");
    LimitedLog third(2, &process);
    third.WriteAt(now, "third 0");  // the shared budget is spent
  });
  EXPECT_EQ(lines, (std::vector<std::string>{"noisy 0", "noisy 1", "quiet 0", "quiet 1"}));
  const std::vector<std::string> next = LinesOf([&] {
    noisy.WriteAt(now + absl::Minutes(1), "noisy 10");
    quiet.WriteAt(now + absl::Minutes(1), "quiet 2");
  });
  EXPECT_EQ(next,
            (std::vector<std::string>{
                "noisy 10 (8 more of its lines dropped) (1 earlier lines dropped)", "quiet 2"}));
}

}  // namespace
}  // namespace ffibox

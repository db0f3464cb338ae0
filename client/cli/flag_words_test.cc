#include "client/cli/flag_words.h"

#include <cstdint>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

ABSL_FLAG(int64_t, test_count, 0, "a number");
ABSL_FLAG(bool, test_switch, false, "a switch");

namespace ffibox {
namespace cli {
namespace {

using ::testing::HasSubstr;

TEST(CheckFlagWordsTest, WellFormedFlagsPassAndTakeTheirValues) {
  EXPECT_OK(CheckFlagWords({"--test_count=7", "-test_switch", "--notest_switch", "--"}));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 7);
  EXPECT_OK(CheckFlagWords({}));
}

TEST(CheckFlagWordsTest, AnUnknownFlagIsNamed) {
  absl::Status status = CheckFlagWords({"--test_count=1", "--bogus"});
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(status.message(), HasSubstr("unknown flag '--bogus'"));
  EXPECT_THAT(CheckFlagWords({"--nobogus"}), StatusIs(v1::INVALID_ARGUMENT));
  // --no only turns off a bool flag.
  EXPECT_THAT(CheckFlagWords({"--notest_count"}), StatusIs(v1::INVALID_ARGUMENT));
}

TEST(CheckFlagWordsTest, AValueTheFlagDoesNotTakeIsRefusedWithAbslsReason) {
  absl::Status status = CheckFlagWords({"--test_count=abc"});
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(status.message(), HasSubstr("--test_count=abc"));
  EXPECT_THAT(CheckFlagWords({"--test_switch=maybe"}), StatusIs(v1::INVALID_ARGUMENT));
}

TEST(CheckFlagWordsTest, AFlagThatNeedsAValueAndHasNoneIsRefused) {
  absl::Status status = CheckFlagWords({"--test_count"});
  EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(status.message(), HasSubstr("needs a value"));
}

}  // namespace
}  // namespace cli
}  // namespace ffibox

#include "core/errors.h"

#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

TEST(ValidUtf8Test, KeepsWellFormedTextAndEscapesEveryOtherByte) {
  EXPECT_EQ(ValidUtf8("plain"), "plain");
  EXPECT_EQ(ValidUtf8("h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82"),
            "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82");
  EXPECT_EQ(ValidUtf8("a\xff"
                      "b"),
            "a\\xffb");
  EXPECT_EQ(ValidUtf8("\xc3"), "\\xc3");                             // cut short
  EXPECT_EQ(ValidUtf8("\xc0\xaf"), "\\xc0\\xaf");                    // overlong '/'
  EXPECT_EQ(ValidUtf8("\xed\xa0\x80"), "\\xed\\xa0\\x80");           // a surrogate
  EXPECT_EQ(ValidUtf8("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
  EXPECT_EQ(ValidUtf8(std::string("nul\0inside", 10)), std::string("nul\0inside", 10));
}

TEST(ErrorStatusTest, AMessageQuotingBytesThatAreNotUtf8StillTravels) {
  // A proto string must be UTF-8: a message quoting the user's bytes is made so, and parses
  // back whole (the code once, the text escaped).
  const absl::Status status =
      ErrorStatus(v1::INVALID_ARGUMENT, "'\xff' is not a valid wchar_t*: not UTF-8");
  const v1::Error error = ToProtoError(status);
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_EQ(error.message(), "'\\xff' is not a valid wchar_t*: not UTF-8");
  v1::Error parsed;
  ASSERT_TRUE(parsed.ParseFromString(error.SerializeAsString()));
  EXPECT_EQ(parsed.message(), error.message());
  EXPECT_EQ(ToProtoError(absl::InvalidArgumentError("bad \xfe")).message(), "bad \\xfe");
}

TEST(ErrorStatusTest, TheTextNamesTheCodeOnce) {
  // absl's own code starts what a status prints: ffibox's is added only where it says more.
  const absl::Status refused = ErrorStatus(v1::FAILED_PRECONDITION, "no worker");
  EXPECT_EQ(refused.ToString(absl::StatusToStringMode::kWithNoExtraData),
            "FAILED_PRECONDITION: no worker");
  const absl::Status crashed = ErrorStatus(v1::WORKER_CRASHED, "SIGSEGV");
  EXPECT_EQ(crashed.ToString(absl::StatusToStringMode::kWithNoExtraData),
            "ABORTED: WORKER_CRASHED: SIGSEGV");
  EXPECT_EQ(ToProtoError(crashed).message(), "SIGSEGV");
}

}  // namespace
}  // namespace ffibox

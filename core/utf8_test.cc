#include "core/utf8.h"

#include <string>

#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

TEST(UnicodeTest, RoundTripsAndRejectsMalformedText) {
  const std::u32string text = U"h\u00e9llo \u4e16\u754c \U0001F600";
  absl::StatusOr<std::string> utf8 = EncodeUtf8(text);
  ASSERT_TRUE(utf8.ok());
  EXPECT_EQ(*DecodeUtf8(*utf8), text);
  EXPECT_FALSE(EncodeUtf8(std::u32string(1, char32_t{0xD800})).ok());
  EXPECT_FALSE(EncodeUtf8(std::u32string(1, char32_t{0x110000})).ok());
  EXPECT_FALSE(DecodeUtf8("\xc3").ok());
  EXPECT_FALSE(DecodeUtf8("\xc0\x80").ok());      // overlong NUL
  EXPECT_FALSE(DecodeUtf8("\xed\xa0\x80").ok());  // surrogate
}

TEST(UnicodeTest, ErrorsAreInvalidArgumentNamingWhere) {
  absl::StatusOr<std::string> utf8 = EncodeUtf8(U"ab\xD800");
  EXPECT_EQ(ErrorCodeOf(utf8.status()), v1::INVALID_ARGUMENT);
  EXPECT_EQ(ToProtoError(utf8.status()).message(),
            "wide string holds U+d800 at index 2, which is not a Unicode scalar value");
  absl::StatusOr<std::u32string> text = DecodeUtf8("ok\xff");
  EXPECT_EQ(ErrorCodeOf(text.status()), v1::INVALID_ARGUMENT);
  EXPECT_EQ(ToProtoError(text.status()).message(), "malformed UTF-8 at byte 2");
}

TEST(UnicodeTest, BothFormsAgree) {
  const std::string utf8 = "h\xc3\xa9llo \xf0\x9f\x98\x80";
  wchar_t wide[16];
  size_t count = 0;
  ASSERT_OK(DecodeUtf8(utf8, wide, &count));
  ASSERT_OK_AND_ASSIGN(std::u32string text, DecodeUtf8(utf8));
  EXPECT_EQ(text, std::u32string(wide, wide + count));
  std::string back;
  ASSERT_TRUE(EncodeUtf8(text, &back));
  EXPECT_EQ(back, utf8);
  EXPECT_FALSE(DecodeUtf8("\xed\xa0\x80", wide, &count).ok());
}

}  // namespace
}  // namespace ffibox

#include "client/cli/result_format.h"

#include <string>

#include "core/test_types.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace cli {
namespace {

using ::ffibox::testing::FloatValue;
using ::ffibox::testing::IntValue;

std::string Format(v1::Scalar scalar, const v1::Value& value) {
  v1::Type type;
  type.set_scalar(scalar);
  absl::StatusOr<std::string> text = FormatResult(type, value);
  return text.ok() ? *text : "<error: " + std::string(text.status().message()) + ">";
}

TEST(FormatResultTest, Numbers) {
  EXPECT_EQ(Format(v1::INT, IntValue(-5)), "-5");
  v1::Value big;
  big.set_uint_value(~0ull);
  EXPECT_EQ(Format(v1::ULONGLONG, big), "18446744073709551615");
  EXPECT_EQ(Format(v1::DOUBLE, FloatValue(0.87758256189037276)), "0.87758256189037276");
  EXPECT_EQ(Format(v1::DOUBLE, FloatValue(1)), "1");
  EXPECT_EQ(Format(v1::FLOAT, FloatValue(static_cast<float>(0.1))), "0.100000001");
  EXPECT_EQ(Format(v1::UCHAR, IntValue(44)), "44");
  EXPECT_EQ(Format(v1::INT, FloatValue(1.5)).rfind("<error", 0), 0u);
}

TEST(FormatResultTest, CharactersAndBooleans) {
  EXPECT_EQ(Format(v1::CHAR, IntValue('b')), "'b'");
  EXPECT_EQ(Format(v1::CHAR, IntValue('\'')), "'\\''");
  EXPECT_EQ(Format(v1::CHAR, IntValue(1)), "'\\x01'");
  EXPECT_EQ(Format(v1::WCHAR, IntValue(0xc9)), "L'\xc3\x89'");
  v1::Value flag;
  flag.set_bool_value(true);
  EXPECT_EQ(Format(v1::BOOL, flag), "true");
}

TEST(FormatResultTest, StringsAndPointers) {
  v1::Value text;
  text.set_bytes_value("hi \"you\"\n");
  EXPECT_EQ(Format(v1::CSTRING, text), "\"hi \\\"you\\\"\\n\"");
  v1::Value wide;
  wide.set_text_value("h\xc3\xa9");
  EXPECT_EQ(Format(v1::WSTRING, wide), "L\"h\xc3\xa9\"");
  v1::Value null;
  null.mutable_pointer()->set_null(true);
  EXPECT_EQ(Format(v1::CSTRING, null), "NULL");
  EXPECT_EQ(Format(v1::POINTER, null), "NULL");
  v1::Value pointer;
  pointer.mutable_pointer()->mutable_remote()->set_address(0x7f00dead0000);
  EXPECT_EQ(Format(v1::POINTER, pointer), "0x7f00dead0000");
}

// A library's wide string cannot rewrite the result line: a C1 control (U+009B, a terminal's
// CSI), a bidirectional override, a zero-width space and a lone control are escaped by code
// point; letters of any script print as themselves. So is a wchar_t result.
TEST(FormatResultTest, WideStringsEscapeWhatDoesNotPrintAsItself) {
  v1::Value wide;
  wide.set_text_value(
      "a\xc2\x9b"
      "b\xe2\x80\xae"
      "c\xe2\x80\x8b"
      "\x01\"\xce\xbb\xf0\x9f\x98\x80");
  EXPECT_EQ(Format(v1::WSTRING, wide),
            "L\"a\\u009bb\\u202ec\\u200b\\x01\\\"\xce\xbb\xf0\x9f\x98\x80\"");
  EXPECT_EQ(Format(v1::WCHAR, IntValue(0x9b)), "155");
  EXPECT_EQ(Format(v1::WCHAR, IntValue(0x202e)), "8238");
  EXPECT_EQ(Format(v1::WCHAR, IntValue(0x061c)), "1564");
  EXPECT_EQ(Format(v1::WCHAR, IntValue(0xe0041)), "917569");
  EXPECT_EQ(Format(v1::WCHAR, IntValue(0x3bb)), "L'\xce\xbb'");
}

TEST(CQuoteTest, EscapesNonPrintableBytes) {
  EXPECT_EQ(CQuote(std::string("a\0\xff", 3), false), "\"a\\0\\xff\"");
  EXPECT_EQ(CQuote("\xc3\xa9", true), "\"\xc3\xa9\"");
}

}  // namespace
}  // namespace cli
}  // namespace ffibox

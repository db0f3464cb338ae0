#include "client/cli/argument_values.h"

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace cli {
namespace {

using ::ffibox::testing::ScalarType;

absl::StatusOr<v1::Value> Parse(v1::Scalar scalar, const std::string& text) {
  return ParseArgumentValue(ScalarType(scalar), text, /*generation=*/3);
}

TEST(ParseArgumentValueTest, IntegersAreRangeChecked) {
  EXPECT_EQ(Parse(v1::INT, "-5")->int_value(), -5);
  EXPECT_EQ(Parse(v1::INT, "0x2a")->int_value(), 42);
  EXPECT_EQ(Parse(v1::INT, "2147483647")->int_value(), 2147483647);
  EXPECT_FALSE(Parse(v1::INT, "2147483648").ok());
  EXPECT_EQ(Parse(v1::INT, "-2147483648")->int_value(), -2147483648LL);
  EXPECT_FALSE(Parse(v1::INT, "-2147483649").ok());
  EXPECT_EQ(Parse(v1::UCHAR, "255")->uint_value(), 255u);
  EXPECT_FALSE(Parse(v1::UCHAR, "256").ok());
  EXPECT_FALSE(Parse(v1::UINT, "-1").ok());
  EXPECT_EQ(Parse(v1::ULONGLONG, "18446744073709551615")->uint_value(), ~0ull);
  EXPECT_FALSE(Parse(v1::ULONGLONG, "18446744073709551616").ok());
  EXPECT_EQ(Parse(v1::LONGLONG, "-9223372036854775808")->int_value(), INT64_MIN);
  EXPECT_FALSE(Parse(v1::LONG, "12abc").ok());
  EXPECT_FALSE(Parse(v1::LONG, "").ok());
}

// A number past 64 bits is as much out of range as one past its type's bits: the message says
// so rather than that the word is not an integer.
TEST(ParseArgumentValueTest, IntegersPast64BitsAreOutOfRange) {
  const std::pair<v1::Scalar, const char*> cases[] = {
      {v1::INT, "99999999999999999999999"},   {v1::INT, "-99999999999999999999999"},
      {v1::LONG, "18446744073709551616"},     {v1::ULONGLONG, "18446744073709551616"},
      {v1::ULONGLONG, "0x10000000000000000"}, {v1::CHAR, "99999999999999999999999"},
      {v1::POINTER, "0x10000000000000000"},
  };
  for (const auto& [scalar, text] : cases) {
    absl::StatusOr<v1::Value> refused = Parse(scalar, text);
    ASSERT_FALSE(refused.ok()) << text;
    EXPECT_NE(refused.status().message().find("out of range"), std::string::npos)
        << refused.status();
  }
  // Not a number at all: still said to be one that is expected.
  absl::StatusOr<v1::Value> trailing = Parse(v1::LONG, "99999999999999999999999x");
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.status().message().find("expected an integer"), std::string::npos)
      << trailing.status();
}

TEST(ParseArgumentValueTest, CharactersAndBooleans) {
  EXPECT_EQ(Parse(v1::CHAR, "a")->int_value(), 'a');
  EXPECT_EQ(Parse(v1::CHAR, "7")->int_value(), 7);
  EXPECT_FALSE(Parse(v1::CHAR, "ab").ok());
  absl::StatusOr<v1::Value> two_bytes = Parse(v1::CHAR, "\xc3\xa9");
  ASSERT_FALSE(two_bytes.ok());
  EXPECT_NE(two_bytes.status().message().find("one character of one byte"), std::string::npos)
      << two_bytes.status();
  EXPECT_EQ(Parse(v1::WCHAR, "\xc3\xa9")->int_value(), 0xe9);
  EXPECT_TRUE(Parse(v1::BOOL, "true")->bool_value());
  EXPECT_FALSE(Parse(v1::BOOL, "0")->bool_value());
  EXPECT_FALSE(Parse(v1::BOOL, "yes").ok());
}

TEST(ParseArgumentValueTest, FloatsStringsAndPointers) {
  EXPECT_EQ(Parse(v1::DOUBLE, "0.5")->float_value(), 0.5);
  EXPECT_EQ(Parse(v1::FLOAT, "-1e3")->float_value(), -1000.0);
  EXPECT_FALSE(Parse(v1::DOUBLE, "half").ok());
  // What does not fit is refused, not sent as an infinity or a zero; written as such, it goes.
  for (const char* text : {"1e999", "-1e999", "1e-400"}) {
    absl::StatusOr<v1::Value> refused = Parse(v1::DOUBLE, text);
    ASSERT_FALSE(refused.ok()) << text;
    EXPECT_NE(refused.status().message().find("out of range"), std::string::npos) << text;
  }
  for (const char* text : {"1e40", "-1e39", "1e-50"}) {
    EXPECT_FALSE(Parse(v1::FLOAT, text).ok()) << text;
  }
  EXPECT_EQ(Parse(v1::FLOAT, "3e38")->float_value(), 3e38);
  EXPECT_GT(Parse(v1::FLOAT, "1e-40")->float_value(), 0);
  EXPECT_GT(Parse(v1::DOUBLE, "1e-320")->float_value(), 0);
  EXPECT_TRUE(std::isinf(Parse(v1::DOUBLE, "inf")->float_value()));
  EXPECT_TRUE(std::isnan(Parse(v1::FLOAT, "nan")->float_value()));
  absl::StatusOr<v1::Value> huge_long_double = Parse(v1::LONGDOUBLE, "1e400");
  ASSERT_FALSE(huge_long_double.ok());
  EXPECT_NE(huge_long_double.status().message().find("travels as a double"), std::string::npos);
  EXPECT_EQ(Parse(v1::CSTRING, "a b:c")->bytes_value(), "a b:c");
  EXPECT_EQ(Parse(v1::WSTRING, "h\xc3\xa9")->text_value(), "h\xc3\xa9");
  EXPECT_FALSE(Parse(v1::WSTRING, "\xff").ok());
  // NULL is a null pointer for strings as for other pointers (ERR_error_string(e, NULL),
  // which wrote its message into a copy of the text "NULL"); \NULL is the text.
  EXPECT_TRUE(Parse(v1::CSTRING, "NULL")->pointer().null());
  EXPECT_TRUE(Parse(v1::WSTRING, "NULL")->pointer().null());
  EXPECT_EQ(Parse(v1::CSTRING, "\\NULL")->bytes_value(), "NULL");
  EXPECT_EQ(Parse(v1::WSTRING, "\\NULL")->text_value(), "NULL");
  EXPECT_EQ(Parse(v1::CSTRING, "null")->bytes_value(), "null");
  EXPECT_EQ(Parse(v1::CSTRING, "\\null")->bytes_value(), "\\null");
  EXPECT_TRUE(Parse(v1::POINTER, "NULL")->pointer().null());
  EXPECT_TRUE(Parse(v1::POINTER, "0")->pointer().null());
  absl::StatusOr<v1::Value> address = Parse(v1::POINTER, "0x7f0000001000");
  ASSERT_TRUE(address.ok());
  EXPECT_EQ(address->pointer().remote().address(), 0x7f0000001000u);
  EXPECT_EQ(address->pointer().remote().generation(), 3u);
  EXPECT_FALSE(Parse(v1::POINTER, "somewhere").ok());
}

TEST(BuildCallTest, FixedArguments) {
  absl::StatusOr<CDeclaration> add = ParseCDeclaration("long add(long, long)");
  ASSERT_TRUE(add.ok());
  absl::StatusOr<v1::Call> call = BuildCall(*add, {"1", "-2"}, 1);
  ASSERT_OK(call);
  EXPECT_EQ(call->args_size(), 2);
  EXPECT_EQ(call->args(1).int_value(), -2);
  EXPECT_EQ(call->variadic_types_size(), 0);
  EXPECT_EQ(ErrorCodeOf(BuildCall(*add, {"1"}, 1).status()), v1::INVALID_ARGUMENT);
  EXPECT_EQ(ErrorCodeOf(BuildCall(*add, {"1", "2", "3"}, 1).status()), v1::INVALID_ARGUMENT);
  absl::Status bad = BuildCall(*add, {"1", "x"}, 1).status();
  EXPECT_NE(std::string(bad.message()).find("argument 2"), std::string::npos) << bad;
}

TEST(BuildCallTest, VariadicArgumentsCarryTheirTypesAndArePromoted) {
  absl::StatusOr<CDeclaration> printf = ParseCDeclaration("int printf(const char*, ...)");
  ASSERT_TRUE(printf.ok());
  absl::StatusOr<v1::Call> call =
      BuildCall(*printf, {"%d %g %s %c", "int:5", "float:2.5", "const char*:a:b", "char:x"}, 1);
  ASSERT_OK(call);
  ASSERT_EQ(call->args_size(), 5);
  ASSERT_EQ(call->variadic_types_size(), 4);
  EXPECT_EQ(call->variadic_types(0).scalar(), v1::INT);
  EXPECT_EQ(call->variadic_types(1).scalar(), v1::DOUBLE);
  EXPECT_EQ(call->variadic_types(2).scalar(), v1::CSTRING);
  EXPECT_EQ(call->variadic_types(3).scalar(), v1::INT);
  EXPECT_EQ(call->args(2).float_value(), 2.5);
  EXPECT_EQ(call->args(3).bytes_value(), "a:b");
  EXPECT_EQ(call->args(4).int_value(), 'x');
  EXPECT_FALSE(BuildCall(*printf, {"%d", "5"}, 1).ok());
  EXPECT_FALSE(BuildCall(*printf, {"%d", "struct x:5"}, 1).ok());
  EXPECT_FALSE(BuildCall(*printf, {"%d", "char:300"}, 1).ok());
}

}  // namespace
}  // namespace cli
}  // namespace ffibox

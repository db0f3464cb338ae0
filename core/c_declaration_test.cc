#include "core/c_declaration.h"

#include <string>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

v1::Scalar ResultOf(const std::string& text) {
  absl::StatusOr<CDeclaration> declaration = ParseCDeclaration(text);
  EXPECT_TRUE(declaration.ok()) << text << ": " << declaration.status();
  if (!declaration.ok()) return v1::SCALAR_UNSPECIFIED;
  return declaration->signature.has_result() ? declaration->signature.result().scalar() : v1::VOID;
}

v1::Scalar TypeOf(const std::string& text) {
  absl::StatusOr<v1::Type> type = ParseCType(text);
  EXPECT_TRUE(type.ok()) << text << ": " << type.status();
  return type.ok() ? type->scalar() : v1::SCALAR_UNSPECIFIED;
}

TEST(ParseCDeclarationTest, ParsesCos) {
  absl::StatusOr<CDeclaration> cos = ParseCDeclaration("double cos(double)");
  ASSERT_OK(cos);
  EXPECT_EQ(cos->name, "cos");
  EXPECT_EQ(cos->signature.result().scalar(), v1::DOUBLE);
  ASSERT_EQ(cos->signature.params_size(), 1);
  EXPECT_EQ(cos->signature.params(0).scalar(), v1::DOUBLE);
  EXPECT_FALSE(cos->signature.variadic());
}

TEST(ParseCDeclarationTest, ParameterNamesQualifiersAndSemicolon) {
  absl::StatusOr<CDeclaration> strncmp =
      ParseCDeclaration("int strncmp(const char *s1, const char * restrict s2, size_t n);");
  ASSERT_OK(strncmp);
  EXPECT_EQ(strncmp->name, "strncmp");
  ASSERT_EQ(strncmp->signature.params_size(), 3);
  EXPECT_EQ(strncmp->signature.params(0).scalar(), v1::CSTRING);
  EXPECT_EQ(strncmp->signature.params(1).scalar(), v1::CSTRING);
  EXPECT_EQ(strncmp->signature.params(2).scalar(), v1::SIZE_T);
}

TEST(ParseCDeclarationTest, VoidResultAndNoParameters) {
  for (const char* text : {"void f(void)", "void f()", "void  f ( void ) ;"}) {
    absl::StatusOr<CDeclaration> f = ParseCDeclaration(text);
    ASSERT_TRUE(f.ok()) << text << ": " << f.status();
    EXPECT_FALSE(f->signature.has_result()) << text;
    EXPECT_EQ(f->signature.params_size(), 0) << text;
  }
}

TEST(ParseCDeclarationTest, Variadic) {
  absl::StatusOr<CDeclaration> printf = ParseCDeclaration("int printf(const char *format, ...)");
  ASSERT_OK(printf);
  EXPECT_TRUE(printf->signature.variadic());
  EXPECT_EQ(printf->signature.params_size(), 1);
  EXPECT_FALSE(ParseCDeclaration("int f(...)").ok());
  EXPECT_FALSE(ParseCDeclaration("int f(int, ..., int)").ok());
}

TEST(ParseCDeclarationTest, EveryScalarSpelling) {
  const std::vector<std::pair<std::string, v1::Scalar>> spellings = {
      {"_Bool", v1::BOOL},
      {"bool", v1::BOOL},
      {"char", v1::CHAR},
      {"signed char", v1::SCHAR},
      {"unsigned char", v1::UCHAR},
      {"short", v1::SHORT},
      {"short int", v1::SHORT},
      {"signed short", v1::SHORT},
      {"unsigned short", v1::USHORT},
      {"unsigned short int", v1::USHORT},
      {"int", v1::INT},
      {"signed", v1::INT},
      {"signed int", v1::INT},
      {"unsigned", v1::UINT},
      {"unsigned int", v1::UINT},
      {"long", v1::LONG},
      {"long int", v1::LONG},
      {"unsigned long", v1::ULONG},
      {"long long", v1::LONGLONG},
      {"long long int", v1::LONGLONG},
      {"unsigned long long", v1::ULONGLONG},
      {"long unsigned long int", v1::ULONGLONG},
      {"int8_t", v1::INT8},
      {"uint8_t", v1::UINT8},
      {"int16_t", v1::INT16},
      {"uint16_t", v1::UINT16},
      {"int32_t", v1::INT32},
      {"uint32_t", v1::UINT32},
      {"int64_t", v1::INT64},
      {"uint64_t", v1::UINT64},
      {"size_t", v1::SIZE_T},
      {"ssize_t", v1::SSIZE_T},
      {"float", v1::FLOAT},
      {"double", v1::DOUBLE},
      {"long double", v1::LONGDOUBLE},
      {"wchar_t", v1::WCHAR},
      {"const volatile int", v1::INT},
  };
  for (const auto& [spelling, scalar] : spellings) {
    EXPECT_EQ(TypeOf(spelling), scalar) << spelling;
    EXPECT_EQ(ResultOf(spelling + " f(void)"), scalar) << spelling;
  }
}

TEST(ParseCDeclarationTest, Pointers) {
  EXPECT_EQ(TypeOf("char*"), v1::CSTRING);
  EXPECT_EQ(TypeOf("const char *"), v1::CSTRING);
  EXPECT_EQ(TypeOf("char * const"), v1::CSTRING);
  EXPECT_EQ(TypeOf("wchar_t*"), v1::WSTRING);
  EXPECT_EQ(TypeOf("const wchar_t *"), v1::WSTRING);
  EXPECT_EQ(TypeOf("void*"), v1::POINTER);
  EXPECT_EQ(TypeOf("int *"), v1::POINTER);
  EXPECT_EQ(TypeOf("unsigned char*"), v1::POINTER);
  EXPECT_EQ(TypeOf("char**"), v1::POINTER);
  EXPECT_EQ(ResultOf("void *malloc(size_t size)"), v1::POINTER);
}

// Headers hand out opaque handles as pointers to types the parser cannot know: a pointer to
// any of them is a void*, and an enum is an int.
TEST(ParseCDeclarationTest, PointersToUnknownTypesAreVoidPointersAndEnumsInts) {
  EXPECT_EQ(TypeOf("struct tm *"), v1::POINTER);
  EXPECT_EQ(TypeOf("const struct tm *"), v1::POINTER);
  EXPECT_EQ(TypeOf("union value * const"), v1::POINTER);
  EXPECT_EQ(TypeOf("FILE *"), v1::POINTER);
  EXPECT_EQ(TypeOf("sqlite3 **"), v1::POINTER);
  EXPECT_EQ(TypeOf("enum level"), v1::INT);
  EXPECT_EQ(TypeOf("enum level *"), v1::POINTER);
  absl::StatusOr<CDeclaration> gmtime = ParseCDeclaration("struct tm *gmtime(const time_t *t)");
  ASSERT_THAT(gmtime, IsOk());
  EXPECT_EQ(gmtime->name, "gmtime");
  EXPECT_EQ(gmtime->signature.result().scalar(), v1::POINTER);
  EXPECT_EQ(gmtime->signature.params(0).scalar(), v1::POINTER);
  absl::StatusOr<CDeclaration> open = ParseCDeclaration(
      "int sqlite3_open_v2(const char *filename, sqlite3 **ppDb, int flags, const char *zVfs);");
  ASSERT_THAT(open, IsOk());
  EXPECT_EQ(open->signature.params(1).scalar(), v1::POINTER);
  EXPECT_EQ(open->signature.params_size(), 4);
  // Without a '*', the size is unknown: the message says what to write.
  for (const char* text : {"uLong crc32(uLong crc, const char *buf, unsigned len)",
                           "struct tm mktm(int year)", "int f(struct)"}) {
    absl::StatusOr<CDeclaration> refused = ParseCDeclaration(text);
    EXPECT_EQ(ErrorCodeOf(refused.status()), v1::INVALID_ARGUMENT) << text;
  }
  EXPECT_THAT(ParseCDeclaration("uLong crc32(uLong crc)").status().message(),
              ::testing::HasSubstr("a pointer to an unknown type ('uLong *') is a void*"));
  EXPECT_THAT(ParseCDeclaration("struct tm mktm(int year)").status().message(),
              ::testing::HasSubstr("'struct tm' by value cannot be said in C text"));
}

TEST(ParseCDeclarationTest, RejectsWhatItDoesNotUnderstand) {
  const std::vector<std::string> bad = {
      "",
      "double",
      "double cos",
      "double cos(double",
      "double cos(double) extra",
      "int f(void x)",
      "int f(int,)",
      "long short f(void)",
      "unsigned double f(void)",
      "int f(int (*)(int))",
      "int f(int a[3])",
      "int 3f(void)",
      "char char f(void)",
  };
  for (const std::string& text : bad) {
    absl::StatusOr<CDeclaration> declaration = ParseCDeclaration(text);
    EXPECT_EQ(ErrorCodeOf(declaration.status()), v1::INVALID_ARGUMENT) << "'" << text << "'";
  }
  EXPECT_FALSE(ParseCType("void").ok());
  EXPECT_FALSE(ParseCType("int x").ok());
  EXPECT_FALSE(ParseCType("time_t").ok());
}

TEST(ParseCDeclarationTest, AnUnexpectedByteIsNamedEscapedInAValidUtf8Error) {
  // The first byte of a two-byte UTF-8 character, alone, would not be valid UTF-8.
  absl::StatusOr<CDeclaration> declaration = ParseCDeclaration("double caf\xc3\xa9(double)");
  ASSERT_EQ(ErrorCodeOf(declaration.status()), v1::INVALID_ARGUMENT);
  const v1::Error error = ToProtoError(declaration.status());
  EXPECT_EQ(error.message(), "unexpected '\\xc3' at position 10 of the declaration");
  v1::Error received;
  EXPECT_TRUE(received.ParseFromString(error.SerializeAsString()));
}

v1::ParseDeclaration Request(std::string text) {
  v1::ParseDeclaration request;
  request.set_declaration(std::move(text));
  return request;
}

TEST(ParseDeclarationRequestTest, AnswersTheNameAndSignature) {
  absl::StatusOr<v1::DeclarationParsed> printf =
      ParseDeclarationRequest(Request("int printf(const char *format, ...);"), TypeLimits());
  ASSERT_OK(printf);
  EXPECT_EQ(printf->name(), "printf");
  EXPECT_EQ(printf->signature().result().scalar(), v1::INT);
  ASSERT_EQ(printf->signature().params_size(), 1);
  EXPECT_EQ(printf->signature().params(0).scalar(), v1::CSTRING);
  EXPECT_TRUE(printf->signature().variadic());
}

TEST(ParseDeclarationRequestTest, RefusesADeclarationLongerThanTheCap) {
  std::string text = "int f(int" + std::string(kMaxCDeclarationBytes, ' ') + ")";
  absl::StatusOr<v1::DeclarationParsed> answer =
      ParseDeclarationRequest(Request(text), TypeLimits());
  EXPECT_THAT(answer, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(answer.status()).field(), "parse_declaration.declaration");
}

TEST(ParseDeclarationRequestTest, RefusesMoreParametersThanACallMayHaveArguments) {
  TypeLimits limits;
  limits.max_args = 2;
  EXPECT_OK(ParseDeclarationRequest(Request("int f(int, int)"), limits));
  absl::StatusOr<v1::DeclarationParsed> answer =
      ParseDeclarationRequest(Request("int f(int, int, int)"), limits);
  EXPECT_THAT(answer, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(answer.status()).field(), "parse_declaration.declaration.params");
}

TEST(ParseDeclarationRequestTest, NamesTheBadParameterUnderTheRequestField) {
  absl::StatusOr<v1::DeclarationParsed> answer =
      ParseDeclarationRequest(Request("int f(int, frob)"), TypeLimits());
  EXPECT_THAT(answer, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(ToProtoError(answer.status()).field(), "parse_declaration.declaration.params[1]");
}

TEST(CTypeNameTest, NamesTheCSpelling) {
  v1::Type type;
  type.set_scalar(v1::ULONGLONG);
  EXPECT_EQ(CTypeName(type), "unsigned long long");
  type.set_scalar(v1::CSTRING);
  EXPECT_EQ(CTypeName(type), "char*");
}

}  // namespace
}  // namespace ffibox

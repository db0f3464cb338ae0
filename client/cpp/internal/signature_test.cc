#include "client/cpp/internal/signature.h"

#include <cstdint>
#include <optional>
#include <string>

#include "client/cpp/typed_function.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

TEST(SignatureOfTest, ScalarsMapToTheirCTypes) {
  v1::Signature signature = SignatureOf<double, double>();
  EXPECT_EQ(signature.result().scalar(), v1::DOUBLE);
  ASSERT_EQ(signature.params_size(), 1);
  EXPECT_EQ(signature.params(0).scalar(), v1::DOUBLE);
  EXPECT_FALSE(signature.variadic());

  signature = SignatureOf<unsigned long long, bool, char, signed char, unsigned char, short,
                          unsigned short, unsigned, long, long long, float, long double, wchar_t>();
  EXPECT_EQ(signature.result().scalar(), v1::ULONGLONG);
  const v1::Scalar expected[] = {v1::BOOL,     v1::CHAR,   v1::SCHAR,      v1::UCHAR,
                                 v1::SHORT,    v1::USHORT, v1::UINT,       v1::LONG,
                                 v1::LONGLONG, v1::FLOAT,  v1::LONGDOUBLE, v1::WCHAR};
  ASSERT_EQ(signature.params_size(), 12);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(signature.params(i).scalar(), expected[i]) << i;
}

TEST(SignatureOfTest, FixedWidthTypesUseTheirUnderlyingTypes) {
  v1::Signature signature = SignatureOf<int64_t, uint8_t, int16_t, uint32_t, size_t, ssize_t>();
  EXPECT_EQ(signature.result().scalar(), v1::LONG);
  EXPECT_EQ(signature.params(0).scalar(), v1::UCHAR);
  EXPECT_EQ(signature.params(1).scalar(), v1::SHORT);
  EXPECT_EQ(signature.params(2).scalar(), v1::UINT);
  EXPECT_EQ(signature.params(3).scalar(), v1::ULONG);
  EXPECT_EQ(signature.params(4).scalar(), v1::LONG);
}

TEST(SignatureOfTest, VoidResultLeavesResultUnset) {
  v1::Signature signature = SignatureOf<void, int*>();
  EXPECT_FALSE(signature.has_result());
  ASSERT_EQ(signature.params_size(), 1);
  EXPECT_EQ(signature.params(0).pointer().pointee().scalar(), v1::INT);
}

TEST(SignatureOfTest, StringsPointersAndBuffers) {
  v1::Signature signature = SignatureOf<std::optional<std::string>, const char*, std::string,
                                        const wchar_t*, void*, Buffer&, RemotePtr>();
  EXPECT_EQ(signature.result().scalar(), v1::CSTRING);
  EXPECT_EQ(signature.params(0).scalar(), v1::CSTRING);
  EXPECT_EQ(signature.params(1).scalar(), v1::CSTRING);
  EXPECT_EQ(signature.params(2).scalar(), v1::WSTRING);
  EXPECT_EQ(signature.params(3).scalar(), v1::POINTER);
  EXPECT_EQ(signature.params(4).scalar(), v1::POINTER);
  EXPECT_EQ(signature.params(5).scalar(), v1::POINTER);
  EXPECT_EQ(TypedFunction<std::wstring()>::Signature().result().scalar(), v1::WSTRING);
  EXPECT_EQ(TypedFunction<void*(void*, long)>::Signature().result().scalar(), v1::POINTER);
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

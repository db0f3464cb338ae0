#include "client/cpp/type_mapping.h"

#include <cstdint>
#include <optional>
#include <string>

#include "client/cpp/result_traits.h"
#include "client/cpp/typed_function.h"
#include "core/errors.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

absl::StatusOr<v1::StringData> NoRemoteStrings(const v1::RemoteAddress&, bool) {
  return absl::InternalError("no remote reads expected");
}

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

TEST(ArgTraitsTest, ScalarsAreSentAsProtoScalars) {
  CallBuilder builder;
  ASSERT_TRUE(ArgTraits<int>::Append(-7, builder).ok());
  ASSERT_TRUE(ArgTraits<unsigned long>::Append(~0ul, builder).ok());
  ASSERT_TRUE(ArgTraits<bool>::Append(true, builder).ok());
  ASSERT_TRUE(ArgTraits<double>::Append(0.5, builder).ok());
  ASSERT_TRUE(ArgTraits<char>::Append('a', builder).ok());
  const v1::Call& call = builder.call();
  EXPECT_EQ(call.args(0).int_value(), -7);
  EXPECT_EQ(call.args(1).uint_value(), ~0ull);
  EXPECT_TRUE(call.args(2).bool_value());
  EXPECT_EQ(call.args(3).float_value(), 0.5);
  EXPECT_EQ(call.args(4).int_value(), 'a');
  EXPECT_EQ(call.blocks_size(), 0);
}

TEST(ArgTraitsTest, StringsAndNullPointers) {
  CallBuilder builder;
  ASSERT_TRUE(ArgTraits<const char*>::Append("hi", builder).ok());
  ASSERT_TRUE(ArgTraits<const char*>::Append(nullptr, builder).ok());
  ASSERT_TRUE(ArgTraits<std::string>::Append(std::string("x\0y", 3), builder).ok());
  ASSERT_TRUE(ArgTraits<const wchar_t*>::Append(L"h\u00e9", builder).ok());
  ASSERT_TRUE(ArgTraits<void*>::Append(RemotePtr(0x1000, 2), builder).ok());
  ASSERT_TRUE(ArgTraits<void*>::Append(nullptr, builder).ok());
  const v1::Call& call = builder.call();
  EXPECT_EQ(call.args(0).bytes_value(), "hi");
  EXPECT_TRUE(call.args(1).pointer().null());
  EXPECT_EQ(call.args(2).bytes_value(), std::string("x\0y", 3));
  EXPECT_EQ(call.args(3).text_value(), "h\xc3\xa9");
  EXPECT_EQ(call.args(4).pointer().remote().address(), 0x1000u);
  EXPECT_EQ(call.args(4).pointer().remote().generation(), 2u);
  EXPECT_TRUE(call.args(5).pointer().null());
}

TEST(ArgTraitsTest, ClientPointersTravelAsBlocksAndAreCopiedBack) {
  int quotient = 11;
  const int limit = 5;
  CallBuilder builder;
  ASSERT_TRUE(ArgTraits<int*>::Append(&quotient, builder).ok());
  ASSERT_TRUE(ArgTraits<const int*>::Append(&limit, builder).ok());
  const v1::Call& call = builder.call();
  ASSERT_EQ(call.blocks_size(), 2);
  EXPECT_EQ(call.blocks(0).direction(), v1::INOUT);
  EXPECT_EQ(call.blocks(0).size(), sizeof(int));
  EXPECT_EQ(call.blocks(1).direction(), v1::IN);
  EXPECT_EQ(call.args(0).pointer().block().block(), 0u);
  EXPECT_EQ(call.args(1).pointer().block().block(), 1u);

  v1::CallResult result;
  v1::BlockContents* contents = result.add_blocks();
  contents->set_block(0);
  const int answer = 3;
  contents->set_data(std::string(reinterpret_cast<const char*>(&answer), sizeof(answer)));
  ASSERT_TRUE(builder.ApplyBlocks(result, 1).ok());
  EXPECT_EQ(quotient, 3);
}

TEST(ArgTraitsTest, BuffersFollowTheirDirection) {
  Buffer out = Buffer::Out(4);
  Buffer in = Buffer::In("abc");
  CallBuilder builder;
  ASSERT_TRUE(ArgTraits<Buffer&>::Append(out, builder).ok());
  ASSERT_TRUE(ArgTraits<Buffer*>::Append(&in, builder).ok());
  const v1::Call& call = builder.call();
  EXPECT_EQ(call.blocks(0).direction(), v1::OUT);
  EXPECT_EQ(call.blocks(0).size(), 4u);
  EXPECT_TRUE(call.blocks(0).data().empty());
  EXPECT_EQ(call.blocks(1).direction(), v1::IN);
  EXPECT_EQ(call.blocks(1).data(), "abc");

  v1::CallResult result;
  result.add_blocks()->set_block(0);
  result.mutable_blocks(0)->set_data("zzzz");
  ASSERT_TRUE(builder.ApplyBlocks(result, 1).ok());
  EXPECT_EQ(out.data, "zzzz");
  EXPECT_EQ(in.data, "abc");
}

TEST(ArgTraitsTest, MalformedBlockContentsAreRefused) {
  int value = 0;
  CallBuilder builder;
  ASSERT_TRUE(ArgTraits<int*>::Append(&value, builder).ok());
  v1::CallResult wrong_size;
  wrong_size.add_blocks()->set_data("12345678");
  EXPECT_EQ(ErrorCodeOf(builder.ApplyBlocks(wrong_size, 1)), v1::INTERNAL);
  v1::CallResult wrong_index;
  wrong_index.add_blocks()->set_block(7);
  EXPECT_EQ(ErrorCodeOf(builder.ApplyBlocks(wrong_index, 1)), v1::INTERNAL);
  EXPECT_EQ(value, 0);
}

TEST(ResultTraitsTest, ScalarsAreRangeChecked) {
  v1::Value value;
  value.set_int_value(300);
  EXPECT_FALSE(DecodeScalar<unsigned char>(value).ok());
  EXPECT_EQ(*DecodeScalar<int>(value), 300);
  value.set_int_value(-1);
  EXPECT_FALSE(DecodeScalar<unsigned>(value).ok());
  value.set_uint_value(~0ull);
  EXPECT_EQ(*DecodeScalar<unsigned long long>(value), ~0ull);
  EXPECT_FALSE(DecodeScalar<long>(value).ok());
  value.set_float_value(0.25);
  EXPECT_EQ(*DecodeScalar<float>(value), 0.25f);
  EXPECT_FALSE(DecodeScalar<int>(value).ok());
  value.set_bool_value(true);
  EXPECT_TRUE(*DecodeScalar<bool>(value));
}

TEST(ResultTraitsTest, StringsAndNull) {
  v1::Value value;
  value.set_bytes_value("hello");
  EXPECT_EQ(*ResultTraits<std::string>::Decode(value, NoRemoteStrings), "hello");
  value.mutable_pointer()->set_null(true);
  EXPECT_EQ(ErrorCodeOf(ResultTraits<std::string>::Decode(value, NoRemoteStrings).status()),
            v1::FAILED_PRECONDITION);
  EXPECT_EQ(*ResultTraits<std::optional<std::string>>::Decode(value, NoRemoteStrings),
            std::nullopt);
  value.set_text_value("h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c");
  EXPECT_EQ(*ResultTraits<std::wstring>::Decode(value, NoRemoteStrings),
            L"h\u00e9llo \u4e16\u754c");
}

TEST(ResultTraitsTest, StringReturnedAsPointerIsReadRemotely) {
  v1::Value value;
  value.mutable_pointer()->mutable_remote()->set_address(0x42);
  auto reader = [](const v1::RemoteAddress& address, bool wide) -> absl::StatusOr<v1::StringData> {
    v1::StringData data;
    data.set_data(wide ? "wide" : absl::StrCat("at ", address.address()));
    return data;
  };
  EXPECT_EQ(*ResultTraits<std::string>::Decode(value, reader), "at 66");
}

TEST(ResultTraitsTest, Pointers) {
  v1::Value value;
  value.mutable_pointer()->mutable_remote()->set_address(0x1234);
  value.mutable_pointer()->mutable_remote()->set_generation(3);
  EXPECT_EQ(*ResultTraits<void*>::Decode(value, NoRemoteStrings), RemotePtr(0x1234, 3));
  value.mutable_pointer()->set_null(true);
  EXPECT_TRUE(ResultTraits<void*>::Decode(value, NoRemoteStrings)->is_null());
  value.set_int_value(5);
  EXPECT_FALSE(ResultTraits<void*>::Decode(value, NoRemoteStrings).ok());
}

TEST(TimeoutMillisTest, RoundsUpAndCaps) {
  EXPECT_EQ(TimeoutMillis(absl::ZeroDuration()), 0u);
  EXPECT_EQ(TimeoutMillis(absl::Microseconds(1)), 1u);
  EXPECT_EQ(TimeoutMillis(absl::Milliseconds(250)), 250u);
  EXPECT_EQ(TimeoutMillis(absl::Hours(24 * 365)), UINT32_MAX);
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

// Instantiating every member checks that these signatures compile end to end.
namespace ffibox {
template class TypedFunction<double(double)>;
template class TypedFunction<int(int, int, int*, int*)>;
template class TypedFunction<void(Buffer&, size_t, char)>;
template class TypedFunction<size_t(const Buffer*, size_t)>;
template class TypedFunction<std::optional<std::string>()>;
template class TypedFunction<std::string(const char*)>;
template class TypedFunction<std::wstring()>;
template class TypedFunction<size_t(const wchar_t*)>;
template class TypedFunction<void*(void*, long)>;
template class TypedFunction<long double(long double)>;
template class TypedFunction<void(int&)>;
}  // namespace ffibox

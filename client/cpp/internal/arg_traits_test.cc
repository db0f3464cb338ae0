#include "client/cpp/internal/arg_traits.h"

#include <string>

#include "core/errors.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

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

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

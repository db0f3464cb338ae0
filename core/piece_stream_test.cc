#include "core/piece_stream.h"

#include <algorithm>
#include <string>
#include <vector>

#include "ffibox/v1/ffibox.pb.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

std::vector<absl::string_view> Split(const std::string& bytes, size_t piece) {
  std::vector<absl::string_view> pieces;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    pieces.push_back(absl::string_view(bytes).substr(at, piece));
  }
  return pieces;
}

TEST(PieceInputStream, AMessageInPiecesParsesWholeAndEachPieceIsReleasedInOrder) {
  v1::Response response;
  response.set_id(7);
  v1::BlockContents* block = response.mutable_call()->add_blocks();
  block->set_data(std::string(100000, 'x') + "end");
  block->add_pointers()->set_offset(8);
  const std::string wire = response.SerializeAsString();
  const std::vector<absl::string_view> pieces = Split(wire, 1000);

  std::vector<size_t> released;
  PieceInputStream stream(pieces, [&](size_t i) { released.push_back(i); });
  v1::Response parsed;
  ASSERT_TRUE(parsed.ParseFromZeroCopyStream(&stream));
  EXPECT_EQ(parsed.SerializeAsString(), wire);
  // Every piece went while parsing, in order (the parser asks past the last one to find the
  // end).
  ASSERT_EQ(released.size(), pieces.size());
  for (size_t i = 0; i < released.size(); ++i) EXPECT_EQ(released[i], i);
}

TEST(PieceInputStream, BackUpReturnsBytesOfTheLastPieceAndSkipCrossesPieces) {
  const std::string bytes = "abcdefghij";
  int releases = 0;
  PieceInputStream stream(Split(bytes, 4), [&](size_t) { ++releases; });
  const void* data;
  int size;
  ASSERT_TRUE(stream.Next(&data, &size));
  EXPECT_EQ(absl::string_view(static_cast<const char*>(data), size), "abcd");
  stream.BackUp(2);
  EXPECT_EQ(stream.ByteCount(), 2);
  ASSERT_TRUE(stream.Next(&data, &size));
  EXPECT_EQ(absl::string_view(static_cast<const char*>(data), size), "cd");
  EXPECT_EQ(releases, 0);
  ASSERT_TRUE(stream.Skip(3));  // efg
  EXPECT_EQ(releases, 1);
  ASSERT_TRUE(stream.Next(&data, &size));
  EXPECT_EQ(absl::string_view(static_cast<const char*>(data), size), "h");
  ASSERT_TRUE(stream.Next(&data, &size));
  EXPECT_EQ(absl::string_view(static_cast<const char*>(data), size), "ij");
  EXPECT_EQ(stream.ByteCount(), 10);
  EXPECT_FALSE(stream.Next(&data, &size));
  EXPECT_FALSE(stream.Skip(1));
  EXPECT_EQ(releases, 3);
}

// Parses `wire` from pieces of `piece` bytes with fields over `large` bytes placed apart, and
// checks every piece was released once; `order` gets the order of the releases.
template <typename M>
M ParseInPieces(const std::string& wire, size_t piece, size_t large, bool* ok,
                std::vector<size_t>* order = nullptr) {
  const std::vector<absl::string_view> pieces = Split(wire, piece);
  std::vector<size_t> released;
  M parsed;
  *ok = ParseFromPieces(
      pieces, [&](size_t i) { released.push_back(i); }, &parsed, large);
  std::vector<size_t> sorted = released;
  std::sort(sorted.begin(), sorted.end());
  std::vector<size_t> each(pieces.size());
  for (size_t i = 0; i < each.size(); ++i) each[i] = i;
  EXPECT_EQ(sorted, each) << "every piece released once";
  if (order != nullptr) *order = released;
  return parsed;
}

TEST(ParseFromPieces, LargeFieldsArePlacedWhereTheyWereAndSizedExactly) {
  v1::Response response;
  response.set_id(5);
  v1::CallResult* call = response.mutable_call();
  call->mutable_result()->set_bytes_value(std::string(700, 'v'));  // a oneof member
  call->add_blocks()->set_data(std::string(1000, 'a'));
  call->add_blocks()->set_data("small");
  v1::BlockContents* third = call->add_blocks();
  third->set_block(2);
  third->set_data(std::string(3000, 'c'));
  third->add_pointers()->set_offset(16);
  call->set_errno_value(4);
  const std::string wire = response.SerializeAsString();
  for (size_t piece : {1, 7, 64, 5000}) {
    bool ok = false;
    std::vector<size_t> order;
    v1::Response parsed = ParseInPieces<v1::Response>(wire, piece, 100, &ok, &order);
    ASSERT_TRUE(ok) << piece;
    EXPECT_EQ(parsed.SerializeAsString(), wire) << piece;
    EXPECT_EQ(parsed.call().blocks(2).data().capacity(), 3000u);
    // The large fields' pieces went after the rest was parsed: not in order.
    if (piece < 5000) {
      EXPECT_FALSE(std::is_sorted(order.begin(), order.end())) << piece;
    }
  }
}

TEST(ParseFromPieces, EncodingsWhereTheLastFieldWinsParseTheOrdinaryWay) {
  // A singular bytes field twice, and two members of one oneof: protobuf keeps the last.
  v1::Value first;
  first.set_bytes_value(std::string(500, 'x'));
  v1::Value second;
  second.set_int_value(-3);
  v1::Value third;
  third.set_bytes_value(std::string(400, 'y'));
  for (const std::string& wire : {first.SerializeAsString() + second.SerializeAsString(),
                                  first.SerializeAsString() + third.SerializeAsString()}) {
    v1::Value expected;
    ASSERT_TRUE(expected.ParseFromString(wire));
    bool ok = false;
    std::vector<size_t> order;
    v1::Value parsed = ParseInPieces<v1::Value>(wire, 9, 100, &ok, &order);
    ASSERT_TRUE(ok);
    EXPECT_EQ(parsed.SerializeAsString(), expected.SerializeAsString());
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  }
}

TEST(ParseFromPieces, LengthsProtobufRefusesAreRefusedToo) {
  // A 9-byte bytes_value (field 5) whose length is a 5-byte varint with bit 32 set, then a
  // 6-byte varint for 9: protobuf's parser refuses both (a 32-bit read of the first would
  // see 9).
  for (const std::string& length :
       {std::string("\x89\x80\x80\x80\x10", 5), std::string("\x89\x80\x80\x80\x80\x00", 6)}) {
    const std::string wire = "\x2a" + length + "123456789";
    v1::Value whole;
    ASSERT_FALSE(whole.ParseFromString(wire));
    bool ok = true;
    ParseInPieces<v1::Value>(wire, 3, 8, &ok);
    EXPECT_FALSE(ok);
  }
}

TEST(ParseFromPieces, AMalformedMessageIsRefused) {
  v1::Response response;
  response.mutable_call()->add_blocks()->set_data(std::string(1000, 'a'));
  std::string wire = response.SerializeAsString();
  wire.resize(wire.size() - 10);
  bool ok = true;
  ParseInPieces<v1::Response>(wire, 33, 100, &ok);
  EXPECT_FALSE(ok);
}

}  // namespace
}  // namespace ffibox

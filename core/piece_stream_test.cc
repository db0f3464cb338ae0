#include "core/piece_stream.h"

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

}  // namespace
}  // namespace ffibox

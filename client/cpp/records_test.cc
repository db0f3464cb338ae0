// Unit tests of described records, layout checks, block graphs and the new argument kinds,
// without a server: what the client puts on the wire and how it reads answers back.
#include "client/cpp/records.h"

#include <array>
#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "client/cpp/block_graph.h"
#include "client/cpp/internal/arg_traits.h"
#include "client/cpp/internal/call_builder.h"
#include "client/cpp/internal/layout_verifier.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/value_codec.h"
#include "client/cpp/typed_function.h"
#include "core/errors.h"
#include "gtest/gtest.h"

namespace records_test {

struct Point {
  double x, y;
};
FFIBOX_STRUCT(Point, x, y)

struct Shape {
  char tag[3];
  std::array<Point, 2> corners;
  int grid[2][2];
};
FFIBOX_STRUCT(Shape, tag, corners, grid)

union Number {
  int i;
  float f;
};
FFIBOX_UNION(Number, i, f)

#pragma pack(push, 1)
struct Packed {
  char c;
  int i;
};
#pragma pack(pop)
FFIBOX_PACKED_STRUCT(Packed, 1, c, i)

struct Undescribed {
  int a;
};

}  // namespace records_test

namespace ffibox {
namespace client_internal {
namespace {

using records_test::Packed;
using records_test::Point;
using records_test::Shape;

static_assert(kIsRecord<Point>);
static_assert(kIsRecord<records_test::Number>);
static_assert(!kIsRecord<records_test::Undescribed>);
static_assert(!kIsRecord<int>);
static_assert(IsLayoutCompatible<std::array<Point, 3>>());

// A verifier answering GetLayout with a fixed layout and counting the requests.
class FakeVerifier : public LayoutVerifier {
 public:
  explicit FakeVerifier(v1::LayoutResult layout) : layout_(std::move(layout)) {}
  absl::StatusOr<v1::LayoutResult> WorkerLayout(const v1::Type&) override {
    ++requests;
    return layout_;
  }
  bool IsLayoutVerified(const void* key) override { return verified_.count(key) > 0; }
  void MarkLayoutVerified(const void* key) override { verified_.insert(key); }
  int requests = 0;

 private:
  v1::LayoutResult layout_;
  std::set<const void*> verified_;
};

v1::LayoutResult PointLayout(uint64_t y_offset) {
  v1::LayoutResult layout;
  layout.set_size(16);
  layout.set_alignment(8);
  layout.add_fields()->set_offset(0);
  layout.add_fields()->set_offset(y_offset);
  return layout;
}

TEST(TypeOfTest, DescribedStructHasNamedFieldsInOrder) {
  v1::Type type = TypeOf<Point>();
  ASSERT_TRUE(type.has_record());
  EXPECT_EQ(type.record().kind(), v1::RecordType::STRUCT);
  EXPECT_EQ(type.record().name(), "Point");
  ASSERT_EQ(type.record().fields_size(), 2);
  EXPECT_EQ(type.record().fields(0).name(), "x");
  EXPECT_EQ(type.record().fields(1).type().scalar(), v1::DOUBLE);
}

TEST(TypeOfTest, ArraysAndNestedRecordsAndMultiDimensionalArrays) {
  v1::Type type = TypeOf<Shape>();
  ASSERT_EQ(type.record().fields_size(), 3);
  EXPECT_EQ(type.record().fields(0).type().array().element().scalar(), v1::CHAR);
  EXPECT_EQ(type.record().fields(0).type().array().length(), 3u);
  EXPECT_EQ(type.record().fields(1).type().array().length(), 2u);
  EXPECT_EQ(type.record().fields(1).type().array().element().record().name(), "Point");
  const v1::Type& grid = type.record().fields(2).type();
  EXPECT_EQ(grid.array().length(), 2u);
  EXPECT_EQ(grid.array().element().array().length(), 2u);
  EXPECT_EQ(grid.array().element().array().element().scalar(), v1::INT);
}

TEST(TypeOfTest, UnionAndPackAreRecorded) {
  EXPECT_EQ(TypeOf<records_test::Number>().record().kind(), v1::RecordType::UNION);
  EXPECT_EQ(TypeOf<Packed>().record().pack(), 1u);
  EXPECT_EQ(TypeOf<Point>().record().pack(), 0u);
}

TEST(VerifyLayoutTest, MatchingLayoutIsCheckedOncePerSession) {
  FakeVerifier verifier(PointLayout(8));
  EXPECT_TRUE(VerifyLayout<Point>(verifier).ok());
  EXPECT_TRUE(VerifyLayout<Point>(verifier).ok());
  EXPECT_EQ(verifier.requests, 1);
}

TEST(VerifyLayoutTest, MismatchIsFailedPreconditionNamingTheField) {
  FakeVerifier verifier(PointLayout(12));
  absl::Status status = VerifyLayout<Point>(verifier);
  EXPECT_EQ(ErrorCodeOf(status), v1::FAILED_PRECONDITION);
  EXPECT_NE(status.message().find("field y"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("Point"), absl::string_view::npos) << status;
}

TEST(RecordArgTest, ByValueTravelsAsRawBytes) {
  CallBuilder builder;
  ASSERT_TRUE(ArgTraits<Point>::Append(Point{1.5, -2}, builder).ok());
  const std::string& raw = builder.call().args(0).raw();
  ASSERT_EQ(raw.size(), sizeof(Point));
  absl::StatusOr<Point> back = ObjectFromRaw<Point>(raw);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->y, -2);
}

TEST(RecordResultTest, RawOfWrongSizeIsInternal) {
  v1::Value value;
  value.set_raw("abc");
  auto read = [](const v1::RemoteAddress&, bool) -> absl::StatusOr<v1::StringData> {
    return absl::InternalError("unused");
  };
  EXPECT_EQ(ErrorCodeOf(ResultTraits<Point>::Decode(value, read).status()), v1::INTERNAL);
}

TEST(RecordArgTest, PointerIsInOutBlockCopiedBack) {
  Point point{1, 2};
  CallBuilder builder;
  ASSERT_TRUE(ArgTraits<Point*>::Append(&point, builder).ok());
  ASSERT_EQ(builder.call().blocks_size(), 1);
  EXPECT_EQ(builder.call().blocks(0).direction(), v1::INOUT);
  v1::CallResult result;
  v1::BlockContents* contents = result.add_blocks();
  contents->set_data(RawBytesOf(Point{3, 4}));
  ASSERT_TRUE(builder.ApplyBlocks(result, 1).ok());
  EXPECT_EQ(point.x, 3);
  EXPECT_EQ(point.y, 4);
}

TEST(VectorArgTest, ConstVectorIsOneInBlockAndEmptyIsNull) {
  CallBuilder builder;
  const std::vector<int> values = {1, 2, 3};
  ASSERT_TRUE(ArgTraits<const std::vector<int>&>::Append(values, builder).ok());
  EXPECT_EQ(builder.call().blocks(0).direction(), v1::IN);
  EXPECT_EQ(builder.call().blocks(0).size(), 12u);
  ASSERT_TRUE(ArgTraits<const std::vector<int>&>::Append({}, builder).ok());
  EXPECT_TRUE(builder.call().args(1).pointer().null());
}

TEST(StringArrayArgTest, PointersAreRelocatedIntoOneStringBlock) {
  CallBuilder builder;
  const std::vector<std::string> words = {"ab", "", "cde"};
  ASSERT_TRUE(ArgTraits<const std::vector<std::string>&>::Append(words, builder).ok());
  const v1::Call& call = builder.call();
  ASSERT_EQ(call.blocks_size(), 2);
  EXPECT_EQ(call.blocks(0).data(), std::string("ab\0\0cde\0", 8));
  EXPECT_EQ(call.blocks(1).size(), 32u);  // three pointers and a NULL
  ASSERT_EQ(call.blocks(1).relocations_size(), 3);
  EXPECT_EQ(call.blocks(1).relocations(2).offset(), 16u);
  EXPECT_EQ(call.blocks(1).relocations(2).target().offset(), 4u);
  EXPECT_EQ(call.args(0).pointer().block().block(), 1u);
}

TEST(BlockGraphTest, LinksBecomeRelocationsAndReturnedPointersBecomeLinks) {
  BlockGraph graph;
  const int head = graph.AddOut(8);
  const int first = graph.Add(std::string(16, '\0'));
  const int second = graph.Add(std::string(16, '\0'));
  graph.Link(head, 0, {first, 0});
  graph.Link(first, 8, {second, 0});
  CallBuilder builder;
  ASSERT_TRUE(builder.AttachGraph(graph).ok());
  ASSERT_TRUE(ArgTraits<GraphPointer>::Append(graph.At(head), builder).ok());
  ASSERT_TRUE(ArgTraits<GraphPointer>::Append(graph.At(second, 4), builder).ok());
  const v1::Call& call = builder.call();
  ASSERT_EQ(call.blocks_size(), 3);  // sent once
  EXPECT_EQ(call.blocks(0).relocations(0).target().block(), 1u);
  EXPECT_EQ(call.args(1).pointer().block().offset(), 4u);

  // The library reversed the list: head -> second, second.next -> first, first.next = NULL.
  v1::CallResult result;
  for (int block = 0; block < 3; ++block) {
    v1::BlockContents* contents = result.add_blocks();
    contents->set_block(block);
    contents->set_data(std::string(block == 0 ? 8 : 16, '\x01'));
  }
  auto point = [&](int block, uint64_t offset, uint32_t target) {
    v1::Relocation* pointer = result.mutable_blocks(block)->add_pointers();
    pointer->set_offset(offset);
    pointer->mutable_target()->set_block(target);
  };
  point(0, 0, 2);
  point(2, 8, 1);
  result.mutable_blocks(1)->set_data(std::string(16, '\0'));
  ASSERT_TRUE(builder.ApplyBlocks(result, 5).ok());
  EXPECT_EQ(**graph.Target(head, 0), (BlockPosition{second, 0}));
  EXPECT_EQ(**graph.Target(second, 8), (BlockPosition{first, 0}));
  EXPECT_FALSE(graph.Target(first, 8)->has_value());
  // A word that is not a pointer into the graph is a worker address.
  EXPECT_EQ(graph.Target(second, 0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(graph.RemoteAt(second, 0)->generation, 5u);
}

TEST(BlockGraphTest, LinkToMissingBlockIsInvalidArgument) {
  BlockGraph graph;
  const int only = graph.Add(std::string(8, '\0'));
  graph.Link(only, 0, {7, 0});
  CallBuilder builder;
  EXPECT_EQ(ErrorCodeOf(ArgTraits<GraphPointer>::Append(graph.At(only), builder)),
            v1::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace client_internal

// Instantiating every member checks that these signatures compile end to end.
template class TypedFunction<records_test::Point(records_test::Point, records_test::Point)>;
template class TypedFunction<void(records_test::Point*, double)>;
template class TypedFunction<double(const records_test::Point&)>;
template class TypedFunction<int(const std::array<int, 5>&)>;
template class TypedFunction<int(const std::array<std::array<int, 3>, 3>&)>;
template class TypedFunction<double(const std::vector<records_test::Point>&, int)>;
template class TypedFunction<void(absl::Span<int>, int)>;
template class TypedFunction<int(const std::vector<std::string>&, int)>;
template class TypedFunction<void(GraphPointer)>;
template class TypedFunction<void(RemotePtr*)>;
}  // namespace ffibox

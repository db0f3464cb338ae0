// Arrays and pointers through a real ffiboxd with the C++ client: arrays decaying to
// pointers, arrays of structs and of strings, pointer graphs the library walks and rewires,
// pointers the library returns (into its memory or the caller's buffer), and function
// pointers it returns.
#include <array>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "client/cpp/ffibox_client.h"
#include "core/test_types.h"
#include "gtest/gtest.h"
#include "tests/integration/shapes_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::ShapesTest;

TEST_F(ShapesTest, FixedAndMultiDimensionalArraysDecayToPointers) {
  EXPECT_EQ(*Fn<int(const std::array<int, 5>&)>("sum_array")({1, 2, 3, 4, 5}), 15);
  const std::array<std::array<int, 3>, 3> matrix = {{{1, 2, 3}, {4, 5, 6}, {7, 8, 9}}};
  EXPECT_EQ(*Fn<int(const std::array<std::array<int, 3>, 3>&)>("trace3")(matrix), 15);

  std::vector<int> squares(6, -1);
  ASSERT_TRUE(Fn<void(std::vector<int>&, int)>("fill_squares")(squares, 6).ok());
  EXPECT_EQ(squares, (std::vector<int>{0, 1, 4, 9, 16, 25}));
  int raw_squares[4] = {};
  ASSERT_TRUE(Fn<void(absl::Span<int>, int)>("fill_squares")(absl::MakeSpan(raw_squares), 4).ok());
  EXPECT_EQ(raw_squares[3], 9);
}

TEST_F(ShapesTest, ArraysOfStructs) {
  const std::vector<Point> points = {{1.5, 0}, {2.5, 9}, {-1, 9}};
  EXPECT_EQ(*Fn<double(const std::vector<Point>&, int)>("total_x")(points, 3), 3.0);
  EXPECT_EQ(*Fn<double(const std::vector<Point>&, int)>("total_x")({}, 0), 0.0);
}

TEST_F(ShapesTest, ArraysOfStringsAreCharPointerPointers) {
  const std::vector<std::string> words = {"alpha", "", "gamma"};
  EXPECT_EQ(*Fn<int(const std::vector<std::string>&, int)>("count_chars")(words, 3), 10);
  absl::StatusOr<std::string> joined =
      Fn<std::string(const std::vector<std::string>&, int)>("join_words")(words, 3);
  ASSERT_OK(joined);
  EXPECT_EQ(*joined, "alpha++gamma");
}

TEST_F(ShapesTest, LinkedListIsSummedAndReversedWithTheNewLinksVisible) {
  BlockGraph graph;
  const int head = graph.Add(std::string(sizeof(Node*), '\0'));
  std::vector<int> nodes;
  for (int value : {1, 20, 300}) {
    Node node{};
    node.value = value;
    nodes.push_back(graph.AddObject(node));
  }
  graph.Link(head, 0, {nodes[0], 0});
  graph.Link(nodes[0], offsetof(Node, next), {nodes[1], 0});
  graph.Link(nodes[1], offsetof(Node, next), {nodes[2], 0});

  EXPECT_EQ(*Fn<int(GraphPointer)>("sum_list")(graph.At(nodes[0])), 321);

  ASSERT_TRUE(Fn<void(GraphPointer)>("reverse_list")(graph.At(head)).ok());
  absl::StatusOr<std::optional<BlockPosition>> first = graph.Target(head, 0);
  ASSERT_OK(first);
  ASSERT_TRUE(first->has_value());
  EXPECT_EQ(**first, (BlockPosition{nodes[2], 0}));
  EXPECT_EQ(**graph.Target(nodes[2], offsetof(Node, next)), (BlockPosition{nodes[1], 0}));
  EXPECT_EQ(**graph.Target(nodes[1], offsetof(Node, next)), (BlockPosition{nodes[0], 0}));
  EXPECT_FALSE(graph.Target(nodes[0], offsetof(Node, next))->has_value());
  EXPECT_EQ(*graph.Get<int>(nodes[2]), 300);

  // The rebuilt graph can be sent again: the reversed list still sums the same.
  EXPECT_EQ(*Fn<int(GraphPointer)>("sum_list")(graph.At(nodes[2])), 321);
}

TEST_F(ShapesTest, StructHoldingPointersToClientStructsSeesTheLibrarysRewiring) {
  BlockGraph graph;
  const int pair = graph.Add(std::string(sizeof(PointPair), '\0'));
  const int label = graph.Add(std::string("segment\0", 8), v1::IN);
  const int a = graph.AddObject(Point{0, 0});
  const int b = graph.AddObject(Point{3, 4});
  graph.Link(pair, offsetof(PointPair, label), {label, 0});
  graph.Link(pair, offsetof(PointPair, first), {a, 0});
  graph.Link(pair, offsetof(PointPair, second), {b, 0});

  EXPECT_EQ(*Fn<double(GraphPointer)>("pair_distance2")(graph.At(pair)), 25.0);
  EXPECT_EQ(*Fn<int(GraphPointer)>("pair_label_length")(graph.At(pair)), 7);
  ASSERT_TRUE(Fn<void(GraphPointer, double)>("pair_swap_and_shift")(graph.At(pair), 10).ok());
  EXPECT_EQ(**graph.Target(pair, offsetof(PointPair, first)), (BlockPosition{b, 0}));
  EXPECT_EQ(**graph.Target(pair, offsetof(PointPair, second)), (BlockPosition{a, 0}));
  EXPECT_EQ(**graph.Target(pair, offsetof(PointPair, label)), (BlockPosition{label, 0}));
  EXPECT_EQ(graph.Get<Point>(b)->x, 13.0);
  EXPECT_EQ(graph.Get<Point>(a)->x, 0.0);
}

TEST_F(ShapesTest, OutPointerToLibraryMemoryComesBackAsAWorkerAddress) {
  RemotePtr name;
  ASSERT_TRUE(Fn<void(RemotePtr*)>("get_name")(&name).ok());
  ASSERT_FALSE(name.is_null());
  EXPECT_EQ(name.generation, session_->generation());
  absl::StatusOr<std::string> text = session_->ReadCString(name);
  ASSERT_OK(text);
  EXPECT_EQ(*text, "ffibox shapes");
}

TEST_F(ShapesTest, OutPointerIntoTheClientsBufferMapsBackIntoTheSameBlock) {
  BlockGraph graph;
  const int text = graph.Add(std::string("hello brave world\0", 18));
  const int rest = graph.AddOut(sizeof(char*));
  absl::StatusOr<int> length =
      Fn<int(GraphPointer, GraphPointer)>("split_first")(graph.At(text), graph.At(rest));
  ASSERT_OK(length);
  EXPECT_EQ(*length, 5);
  absl::StatusOr<std::optional<BlockPosition>> target = graph.Target(rest, 0);
  ASSERT_OK(target);
  ASSERT_TRUE(target->has_value());
  EXPECT_EQ(**target, (BlockPosition{text, 6}));
  EXPECT_EQ(graph.data(text).substr(0, 5), "hello");
  EXPECT_EQ(graph.data(text)[5], '\0');
  EXPECT_STREQ(graph.data(text).c_str() + (*target)->offset, "brave world");
}

TEST_F(ShapesTest, ReturnedFunctionPointersAreCalledWithASignature) {
  TypedFunction<RemotePtr(int)> pick = Fn<RemotePtr(int)>("pick_op");
  const int expected[] = {13, 7, 30};
  for (int which = 0; which < 3; ++which) {
    absl::StatusOr<RemotePtr> op = pick(which);
    ASSERT_OK(op);
    absl::StatusOr<TypedFunction<int(int, int)>> call = session_->FunctionAt<int(int, int)>(*op);
    ASSERT_OK(call);
    EXPECT_EQ(*(*call)(10, 3), expected[which]) << which;
  }
  absl::StatusOr<RemotePtr> none = pick(9);
  ASSERT_OK(none);
  EXPECT_TRUE(none->is_null());
  EXPECT_EQ(ErrorOf(session_->FunctionAt<int(int, int)>(*none).status()).code(),
            v1::INVALID_ARGUMENT);
}

TEST_F(ShapesTest, FunctionPointerHandleIsStaleAfterAWorkerRestart) {
  absl::StatusOr<RemotePtr> op = Fn<RemotePtr(int)>("pick_op")(2);
  ASSERT_OK(op);
  absl::StatusOr<TypedFunction<int(int, int)>> mul = session_->FunctionAt<int(int, int)>(*op);
  ASSERT_OK(mul);
  EXPECT_EQ(*(*mul)(6, 7), 42);
  EXPECT_FALSE(Fn<int()>("crash_abort")().ok());
  ExpectSessionStillServes();
  EXPECT_EQ(ErrorOf((*mul)(6, 7).status()).code(), v1::STALE_HANDLE);
}

}  // namespace
}  // namespace ffibox

// Every C data shape ctypes can express, through a real ffiboxd with the C++ client: records
// by value of each x86-64 class, unions, packing, bit fields, nesting, arrays, arrays of
// strings, pointer graphs, pointers the library returns, typed remote memory, exported
// variables, variadic libc calls, errno, returned function pointers, and hostile types that
// must be refused while the session keeps serving (issue 3, items 1 and 3-10).
#include "tests/testlibs/shapes.h"

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
#include "tests/support/session_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

// The library's own declarations, described once for the client.
FFIBOX_STRUCT(IntPair, a, b)
FFIBOX_STRUCT(CharShortInt, c, s, i)
FFIBOX_STRUCT(Float2, x, y)
FFIBOX_STRUCT(Float3, x, y, z)
FFIBOX_STRUCT(Point, x, y)
FFIBOX_STRUCT(DoubleInt, d, i)
FFIBOX_STRUCT(LongAndDouble, l, d)
FFIBOX_STRUCT(Big5, a, b, c, d, e)
FFIBOX_UNION(IntOrFloat, i, f)
FFIBOX_UNION(DoubleOrLong, d, l)
FFIBOX_PACKED_STRUCT(Packed1, 1, c, i, s)
FFIBOX_PACKED_STRUCT(Packed2, 2, c, i, d)
FFIBOX_PACKED_STRUCT(Packed4, 4, c, d, s)
FFIBOX_STRUCT(Char3, tag)
FFIBOX_STRUCT(Int4, v)
FFIBOX_STRUCT(Rect, min, max)

namespace ffibox {
namespace {

using ::ffibox::testing::BlockPointer;
using ::ffibox::testing::BytesValue;
using ::ffibox::testing::FloatValue;
using ::ffibox::testing::IntValue;
using ::ffibox::testing::PointerTo;
using ::ffibox::testing::ScalarType;

using test_support::TestLibPath;
using test_support::TestServer;

// A packed C++ struct described without its pack: the worker lays it out naturally.
#pragma pack(push, 1)
struct MisdescribedPacked {
  char c;
  int i;
};
#pragma pack(pop)
FFIBOX_STRUCT(MisdescribedPacked, c, i)

v1::Field BitField(const char* name, v1::Scalar scalar, int width) {
  v1::Field field;
  field.set_name(name);
  field.mutable_type()->set_scalar(scalar);
  field.set_bit_width(width);
  return field;
}

// `Bits` of shapes.h; bit fields cannot be described with FFIBOX_STRUCT, so the type is
// built explicitly and the value travels as raw bytes through RawFunction.
v1::Type BitsType() {
  v1::Type type;
  v1::RecordType* record = type.mutable_record();
  record->set_kind(v1::RecordType::STRUCT);
  record->set_name("Bits");
  *record->add_fields() = BitField("a", v1::UINT, 3);
  *record->add_fields() = BitField("b", v1::INT, 5);
  *record->add_fields() = BitField("c", v1::UINT, 12);
  *record->add_fields() = BitField("d", v1::INT, 1);
  *record->add_fields() = BitField("e", v1::ULONG, 40);
  *record->add_fields() = BitField("f", v1::SCHAR, 4);
  return type;
}

class ShapesTest : public test_support::SessionFixture {
 protected:
  // Resolves `symbol` of the test library as Sig, failing the test if that fails.
  template <typename Sig>
  TypedFunction<Sig> Fn(const std::string& symbol) {
    absl::StatusOr<TypedFunction<Sig>> function = lib_->Function<Sig>(symbol);
    EXPECT_TRUE(function.ok()) << symbol << ": " << function.status();
    if (!function.ok()) std::abort();  // the test cannot continue without it
    return *std::move(function);
  }

  // Resolves `symbol` of the test library with an explicit signature.
  RawFunction Raw(const std::string& symbol, const v1::Signature& signature) {
    absl::StatusOr<RawFunction> function = lib_->Resolve(symbol, signature);
    EXPECT_TRUE(function.ok()) << symbol << ": " << function.status();
    if (!function.ok()) std::abort();
    return *std::move(function);
  }

  // Whether the session still answers an ordinary call correctly.
  void ExpectSessionStillServes() {
    absl::StatusOr<int> sum = Fn<int(int, int)>("add_int")(40, 2);
    ASSERT_OK(sum);
    EXPECT_EQ(*sum, 42);
  }
};

// ---- 1. Records by value --------------------------------------------------------------

TEST_F(ShapesTest, StructsOfEveryX86RegisterClassRoundTripByValue) {
  absl::StatusOr<IntPair> swapped = Fn<IntPair(IntPair)>("swap_pair")(IntPair{3, -9});
  ASSERT_OK(swapped);
  EXPECT_EQ(swapped->a, -9);
  EXPECT_EQ(swapped->b, 3);
  EXPECT_EQ(*Fn<int(IntPair)>("pair_sum")(IntPair{20, 22}), 42);

  absl::StatusOr<CharShortInt> bumped =
      Fn<CharShortInt(CharShortInt)>("csi_bump")(CharShortInt{'a', 1000, -7});
  ASSERT_OK(bumped);
  EXPECT_EQ(bumped->c, 'b');
  EXPECT_EQ(bumped->s, 1002);
  EXPECT_EQ(bumped->i, -4);

  absl::StatusOr<Float2> scaled = Fn<Float2(Float2, float)>("float2_scale")(Float2{1.5f, -2}, 2);
  ASSERT_OK(scaled);
  EXPECT_EQ(scaled->x, 3.0f);
  EXPECT_EQ(scaled->y, -4.0f);

  absl::StatusOr<Float3> sum3 =
      Fn<Float3(Float3, Float3)>("float3_add")(Float3{1, 2, 3}, Float3{0.5f, 0.25f, -3});
  ASSERT_OK(sum3);
  EXPECT_EQ(sum3->x, 1.5f);
  EXPECT_EQ(sum3->y, 2.25f);
  EXPECT_EQ(sum3->z, 0.0f);

  absl::StatusOr<Point> point = Fn<Point(Point, Point)>("point_add")(Point{1, 2}, Point{0.5, -4});
  ASSERT_OK(point);
  EXPECT_EQ(point->x, 1.5);
  EXPECT_EQ(point->y, -2.0);

  absl::StatusOr<DoubleInt> twice = Fn<DoubleInt(DoubleInt)>("double_int_twice")({1.25, 21});
  ASSERT_OK(twice);
  EXPECT_EQ(twice->d, 2.5);
  EXPECT_EQ(twice->i, 42);

  absl::StatusOr<LongAndDouble> mixed =
      Fn<LongAndDouble(LongAndDouble)>("long_double_mix")({1L << 40, 1.0});
  ASSERT_OK(mixed);
  EXPECT_EQ(mixed->l, 1L << 41);
  EXPECT_EQ(mixed->d, 1.5);

  // 40 bytes: returned in memory through the hidden pointer, and passed on the stack.
  absl::StatusOr<Big5> big = Fn<Big5(long)>("big5_make")(100);
  ASSERT_OK(big);
  EXPECT_EQ(big->a, 100);
  EXPECT_EQ(big->e, 104);
  EXPECT_EQ(*Fn<long(Big5)>("big5_sum")(*big), 510);
}

TEST_F(ShapesTest, UnionsByValueCarryTheBytesOfTheirMember) {
  IntOrFloat one;
  one.f = 1.0f;
  EXPECT_EQ(*Fn<int(IntOrFloat)>("iof_bits")(one), 0x3f800000);
  absl::StatusOr<IntOrFloat> from_float = Fn<IntOrFloat(float)>("iof_from_float")(2.5f);
  ASSERT_OK(from_float);
  EXPECT_EQ(from_float->f, 2.5f);

  DoubleOrLong half;
  half.d = 0.5;
  long expected_bits;
  std::memcpy(&expected_bits, &half.d, sizeof(long));
  EXPECT_EQ(*Fn<long(DoubleOrLong)>("dol_bits")(half), expected_bits);
  absl::StatusOr<DoubleOrLong> from_long = Fn<DoubleOrLong(long)>("dol_from_long")(-77);
  ASSERT_OK(from_long);
  EXPECT_EQ(from_long->l, -77);
}

TEST_F(ShapesTest, PackedStructsKeepGccsPacking) {
  static_assert(sizeof(Packed1) == 7 && sizeof(Packed2) == 14 && sizeof(Packed4) == 16);
  absl::StatusOr<Packed1> p1 = Fn<Packed1(Packed1)>("packed1_bump")(Packed1{1, 1000000, -3});
  ASSERT_OK(p1);
  EXPECT_EQ(p1->c, 2);
  // Packed members are compared by value: a reference to one would be misaligned.
  EXPECT_EQ(int{p1->i}, 1000001);
  EXPECT_EQ(short{p1->s}, -2);
  EXPECT_EQ(*Fn<long(Packed1)>("packed1_sum")(Packed1{1, 2, 3}), 6);

  absl::StatusOr<Packed2> p2 = Fn<Packed2(Packed2)>("packed2_bump")(Packed2{'a', 7, 0.5});
  ASSERT_OK(p2);
  EXPECT_EQ(p2->c, 'b');
  EXPECT_EQ(int{p2->i}, 8);
  EXPECT_EQ(double{p2->d}, 1.5);
  EXPECT_EQ(*Fn<double(Packed2)>("packed2_sum")(Packed2{1, 2, 0.5}), 3.5);

  absl::StatusOr<Packed4> p4 = Fn<Packed4(Packed4)>("packed4_bump")(Packed4{0, -1.0, 9});
  ASSERT_OK(p4);
  EXPECT_EQ(p4->c, 1);
  EXPECT_EQ(double{p4->d}, 0.0);
  EXPECT_EQ(short{p4->s}, 10);
  EXPECT_EQ(*Fn<double(Packed4)>("packed4_sum")(Packed4{1, 0.25, 2}), 3.25);
}

TEST_F(ShapesTest, BitFieldStructsTravelAsRawBytesThroughAnExplicitType) {
  v1::Signature make;
  *make.mutable_result() = BitsType();
  for (v1::Scalar scalar : {v1::UINT, v1::INT, v1::UINT, v1::INT, v1::ULONG, v1::INT}) {
    *make.add_params() = ScalarType(scalar);
  }
  v1::Call call;
  for (int64_t value : {5L, -9L, 4000L, -1L, (1L << 39) + 3, -6L})
    *call.add_args() = IntValue(value);
  absl::StatusOr<v1::CallResult> made = Raw("bits_make", make).Call(call);
  ASSERT_OK(made);
  ASSERT_EQ(made->result().raw().size(), sizeof(Bits));
  Bits bits;
  std::memcpy(&bits, made->result().raw().data(), sizeof(Bits));
  EXPECT_EQ(bits.a, 5u);
  EXPECT_EQ(bits.b, -9);
  EXPECT_EQ(bits.c, 4000u);
  EXPECT_EQ(bits.d, -1);
  EXPECT_EQ(bits.e, (1UL << 39) + 3);
  EXPECT_EQ(bits.f, -6);

  v1::Signature negate;
  *negate.mutable_result() = BitsType();
  *negate.add_params() = BitsType();
  v1::Call negate_call;
  negate_call.add_args()->set_raw(made->result().raw());
  absl::StatusOr<v1::CallResult> negated = Raw("bits_negate", negate).Call(negate_call);
  ASSERT_OK(negated);
  std::memcpy(&bits, negated->result().raw().data(), sizeof(Bits));
  EXPECT_EQ(bits.a, 6u);
  EXPECT_EQ(bits.b, 9);
  EXPECT_EQ(bits.c, 4001u);
  EXPECT_EQ(bits.d, -1);  // -(-1) does not fit a signed 1-bit field: it wraps back to -1
  EXPECT_EQ(bits.f, 6);
}

TEST_F(ShapesTest, AggregatesAreAcceptedFieldByFieldIncludingUnionsAndBitFields) {
  v1::Signature add;
  *add.mutable_result() = TypeOf<Point>();
  *add.add_params() = TypeOf<Point>();
  *add.add_params() = TypeOf<Point>();
  v1::Call call;
  for (double x : {1.0, 10.0}) {
    v1::Aggregate* point = call.add_args()->mutable_aggregate();
    *point->add_elements() = FloatValue(x);
    *point->add_elements() = IntValue(2);  // an integer value for a double field is accepted
  }
  absl::StatusOr<v1::CallResult> sum = Raw("point_add", add).Call(call);
  ASSERT_OK(sum);
  Point point;
  ASSERT_EQ(sum->result().raw().size(), sizeof(Point));
  std::memcpy(&point, sum->result().raw().data(), sizeof(Point));
  EXPECT_EQ(point.x, 11.0);
  EXPECT_EQ(point.y, 4.0);

  // A union aggregate has one element, which sets the first member.
  v1::Signature bits_of;
  *bits_of.mutable_result() = ScalarType(v1::INT);
  *bits_of.add_params() = TypeOf<IntOrFloat>();
  v1::Call union_call;
  *union_call.add_args()->mutable_aggregate()->add_elements() = IntValue(1234);
  absl::StatusOr<v1::CallResult> bits = Raw("iof_bits", bits_of).Call(union_call);
  ASSERT_OK(bits);
  EXPECT_EQ(bits->result().int_value(), 1234);

  // Nested aggregates: a Rect of two Points.
  v1::Signature area;
  *area.mutable_result() = ScalarType(v1::DOUBLE);
  *area.add_params() = TypeOf<Rect>();
  v1::Call area_call;
  v1::Aggregate* rect = area_call.add_args()->mutable_aggregate();
  for (double corner : {1.0, 4.0}) {
    v1::Aggregate* p = rect->add_elements()->mutable_aggregate();
    *p->add_elements() = FloatValue(corner);
    *p->add_elements() = FloatValue(corner * 2);
  }
  absl::StatusOr<v1::CallResult> rect_area = Raw("rect_area", area).Call(area_call);
  ASSERT_OK(rect_area);
  EXPECT_EQ(rect_area->result().float_value(), 3.0 * 6.0);

  // Bit fields field by field.
  v1::Signature sum_bits;
  *sum_bits.mutable_result() = ScalarType(v1::LONG);
  *sum_bits.add_params() = BitsType();
  v1::Call bits_call;
  v1::Aggregate* fields = bits_call.add_args()->mutable_aggregate();
  for (int64_t value : {7L, -16L, 4095L, 0L, 100L, 7L}) *fields->add_elements() = IntValue(value);
  absl::StatusOr<v1::CallResult> bit_sum = Raw("bits_sum", sum_bits).Call(bits_call);
  ASSERT_OK(bit_sum);
  EXPECT_EQ(bit_sum->result().int_value(), 7 - 16 + 4095 + 0 + 100 + 7);
}

TEST_F(ShapesTest, NestedStructsAndArraysInsideStructs) {
  absl::StatusOr<Rect> rect = Fn<Rect(double, double, double, double)>("rect_make")(1, 2, 4, 7);
  ASSERT_OK(rect);
  EXPECT_EQ(rect->min.x, 1);
  EXPECT_EQ(rect->max.y, 7);
  EXPECT_EQ(*Fn<double(Rect)>("rect_area")(*rect), 15);

  absl::StatusOr<Char3> upper = Fn<Char3(Char3)>("char3_upper")(Char3{{'a', 'b', 'z'}});
  ASSERT_OK(upper);
  EXPECT_EQ(std::string(upper->tag, 3), "ABZ");

  EXPECT_EQ(*Fn<int(Int4)>("int4_sum")(Int4{{1, 2, 3, 4}}), 10);
  absl::StatusOr<Int4> reversed = Fn<Int4(Int4)>("int4_reverse")(Int4{{1, 2, 3, 4}});
  ASSERT_OK(reversed);
  EXPECT_EQ(reversed->v[0], 4);
  EXPECT_EQ(reversed->v[3], 1);
}

TEST_F(ShapesTest, StructsByPointerInOutAndInOut) {
  Rect rect{{1, 2}, {3, 5}};
  ASSERT_TRUE(Fn<void(Rect*, double)>("scale_rect")(&rect, 2).ok());
  EXPECT_EQ(rect.min.x, 2);
  EXPECT_EQ(rect.min.y, 4);
  EXPECT_EQ(rect.max.x, 6);
  EXPECT_EQ(rect.max.y, 10);
  EXPECT_EQ(*Fn<double(const Rect*)>("rect_width_of")(&rect), 4);
  EXPECT_EQ(*Fn<double(const Rect&)>("rect_width_of")(rect), 4);

  Rect bounds{};
  const std::vector<Point> points = {{1, 5}, {-2, 3}, {4, -1}};
  ASSERT_TRUE(
      Fn<void(const std::vector<Point>&, int, Rect&)>("rect_bounds")(points, 3, bounds).ok());
  EXPECT_EQ(bounds.min.x, -2);
  EXPECT_EQ(bounds.min.y, -1);
  EXPECT_EQ(bounds.max.x, 4);
  EXPECT_EQ(bounds.max.y, 5);
}

TEST_F(ShapesTest, MisdescribedRecordIsRefusedBeforeAnyCallNamingTheMismatch) {
  absl::StatusOr<TypedFunction<int(MisdescribedPacked)>> function =
      lib_->Function<int(MisdescribedPacked)>("pair_sum");
  ASSERT_FALSE(function.ok());
  EXPECT_EQ(ErrorOf(function.status()).code(), v1::FAILED_PRECONDITION);
  EXPECT_NE(function.status().message().find("MisdescribedPacked"), absl::string_view::npos)
      << function.status();
  ExpectSessionStillServes();
}

// ---- 3. Arrays ------------------------------------------------------------------------

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

// ---- 4. Pointer graphs ----------------------------------------------------------------

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

// ---- 5. Remote memory -----------------------------------------------------------------

TEST_F(ShapesTest, TypedDerefReadsAndWritesValuesAtWorkerAddresses) {
  absl::StatusOr<RemotePtr> memory = session_->AllocMemory(64);
  ASSERT_OK(memory);
  ASSERT_TRUE(session_->Write<Point>(*memory, Point{1.25, -8}).ok());
  absl::StatusOr<Point> point = session_->Read<Point>(*memory);
  ASSERT_OK(point);
  EXPECT_EQ(point->x, 1.25);
  EXPECT_EQ(point->y, -8);
  EXPECT_EQ(*session_->Read<double>(memory->Offset(8)), -8);

  ASSERT_TRUE(session_->Write<int>(memory->Offset(16), -123456).ok());
  EXPECT_EQ(*session_->Read<int>(memory->Offset(16)), -123456);
  ASSERT_TRUE(session_->Write<RemotePtr>(memory->Offset(24), *memory).ok());
  absl::StatusOr<RemotePtr> stored = session_->Read<RemotePtr>(memory->Offset(24));
  ASSERT_OK(stored);
  EXPECT_EQ(stored->address, memory->address);

  ASSERT_TRUE(session_->FillMemory(memory->Offset(32), 0x7f, 4).ok());
  ASSERT_TRUE(session_->CopyMemory(memory->Offset(40), memory->Offset(32), 4).ok());
  EXPECT_EQ(*session_->Read<int>(memory->Offset(40)), 0x7f7f7f7f);

  // A pointer the library returned, dereferenced as a typed array.
  absl::StatusOr<RemotePtr> greeting = Fn<RemotePtr()>("greeting")();
  ASSERT_OK(greeting);
  absl::StatusOr<std::array<char, 5>> hello = session_->Read<std::array<char, 5>>(*greeting);
  ASSERT_OK(hello);
  EXPECT_EQ(std::string(hello->data(), 5), "hello");
  absl::StatusOr<RemotePtr> wide = Fn<RemotePtr()>("wgreeting")();
  ASSERT_OK(wide);
  EXPECT_EQ(*session_->ReadWString(*wide), U"h\u00e9llo \u4e16\u754c");

  // Bad addresses are errors, not crashes.
  EXPECT_EQ(ErrorOf(session_->Read<Point>(RemotePtr(16, memory->generation)).status()).code(),
            v1::MEMORY_FAULT);
  EXPECT_EQ(ErrorOf(session_->Write<int>(RemotePtr(8, memory->generation), 1)).code(),
            v1::MEMORY_FAULT);
  EXPECT_TRUE(session_->FreeMemory(*memory).ok());
  ExpectSessionStillServes();
}

TEST_F(ShapesTest, AddressesOfAnEarlierWorkerAreRefused) {
  absl::StatusOr<RemotePtr> memory = session_->AllocMemory(16);
  ASSERT_OK(memory);
  EXPECT_FALSE(Fn<int()>("crash_abort")().ok());
  ExpectSessionStillServes();
  EXPECT_EQ(ErrorOf(session_->Read<int>(*memory).status()).code(), v1::STALE_HANDLE);
  EXPECT_EQ(ErrorOf(session_->Write<int>(*memory, 1)).code(), v1::STALE_HANDLE);
}

// ---- 6. Exported variables ------------------------------------------------------------

TEST_F(ShapesTest, ExportedVariablesAreReadAndWrittenAsTypedValues) {
  EXPECT_EQ(*lib_->Variable<int>("ffibox_test_counter"), 42);
  absl::StatusOr<Point> origin = lib_->Variable<Point>("ffibox_origin");
  ASSERT_OK(origin);
  EXPECT_EQ(origin->x, 1.5);
  EXPECT_EQ(origin->y, -2.5);
  EXPECT_EQ(*lib_->Variable<double>("ffibox_scale"), 2.25);
  absl::StatusOr<std::string> version = lib_->Variable<std::string>("ffibox_version");
  ASSERT_OK(version);
  EXPECT_EQ(*version, "ffibox-test 1.0");

  ASSERT_TRUE(lib_->SetVariable<Point>("ffibox_origin", Point{-3, 4}).ok());
  EXPECT_EQ(*Fn<double()>("origin_norm1")(), 7.0);  // the library sees the new value
  EXPECT_EQ(lib_->Variable<Point>("ffibox_origin")->x, -3);
  ASSERT_TRUE(lib_->SetVariable<double>("ffibox_scale", 0.5).ok());
  EXPECT_EQ(*lib_->Variable<double>("ffibox_scale"), 0.5);
  ASSERT_TRUE(lib_->SetVariable<int>("ffibox_test_counter", 7).ok());
  EXPECT_EQ(*lib_->Variable<int>("ffibox_test_counter"), 7);
  EXPECT_EQ(ErrorOf(lib_->Variable<Point>("no_such_variable").status()).code(),
            v1::SYMBOL_NOT_FOUND);
}

// ---- 7. Variadic functions ------------------------------------------------------------

TEST_F(ShapesTest, VariadicSnprintfAndSscanfFromLibcWithDefaultPromotions) {
  absl::StatusOr<Library> libc = session_->Load("libc.so.6");
  ASSERT_OK(libc);

  v1::Signature snprintf_signature;
  *snprintf_signature.mutable_result() = ScalarType(v1::INT);
  *snprintf_signature.add_params() = ScalarType(v1::POINTER);
  *snprintf_signature.add_params() = ScalarType(v1::SIZE_T);
  *snprintf_signature.add_params() = ScalarType(v1::CSTRING);
  snprintf_signature.set_variadic(true);
  absl::StatusOr<RawFunction> snprintf_fn = libc->Resolve("snprintf", snprintf_signature);
  ASSERT_OK(snprintf_fn);
  v1::Call print;
  v1::MemoryBlock* buffer = print.add_blocks();
  buffer->set_size(64);
  buffer->set_direction(v1::OUT);
  *print.add_args() = BlockPointer(0);
  print.add_args()->set_uint_value(64);
  *print.add_args() = BytesValue("%d|%.2f|%s|%c|%hd");
  *print.add_args() = IntValue(-5);
  *print.add_args() = FloatValue(1.25);  // a float: promoted to double
  *print.add_args() = BytesValue("ok");
  *print.add_args() = IntValue('x');   // a char: promoted to int
  *print.add_args() = IntValue(-300);  // a short: promoted to int
  for (v1::Scalar scalar : {v1::INT, v1::FLOAT, v1::CSTRING, v1::CHAR, v1::SHORT}) {
    *print.add_variadic_types() = ScalarType(scalar);
  }
  absl::StatusOr<v1::CallResult> printed = snprintf_fn->Call(print);
  ASSERT_OK(printed);
  const std::string expected = "-5|1.25|ok|x|-300";
  EXPECT_EQ(printed->result().int_value(), static_cast<int64_t>(expected.size()));
  ASSERT_EQ(printed->blocks_size(), 1);
  EXPECT_EQ(std::string(printed->blocks(0).data().c_str()), expected);

  v1::Signature sscanf_signature;
  *sscanf_signature.mutable_result() = ScalarType(v1::INT);
  *sscanf_signature.add_params() = ScalarType(v1::CSTRING);
  *sscanf_signature.add_params() = ScalarType(v1::CSTRING);
  sscanf_signature.set_variadic(true);
  absl::StatusOr<RawFunction> sscanf_fn = libc->Resolve("sscanf", sscanf_signature);
  ASSERT_OK(sscanf_fn);
  v1::Call scan;
  for (uint64_t size : {4UL, 8UL, 16UL}) {
    v1::MemoryBlock* out = scan.add_blocks();
    out->set_size(size);
    out->set_direction(v1::OUT);
  }
  *scan.add_args() = BytesValue("42 3.5 word");
  *scan.add_args() = BytesValue("%d %lf %15s");
  for (uint32_t block : {0U, 1U, 2U}) *scan.add_args() = BlockPointer(block);
  *scan.add_variadic_types() = PointerTo(ScalarType(v1::INT));
  *scan.add_variadic_types() = PointerTo(ScalarType(v1::DOUBLE));
  *scan.add_variadic_types() = ScalarType(v1::POINTER);
  absl::StatusOr<v1::CallResult> scanned = sscanf_fn->Call(scan);
  ASSERT_OK(scanned);
  EXPECT_EQ(scanned->result().int_value(), 3);
  ASSERT_EQ(scanned->blocks_size(), 3);
  int number = 0;
  double real = 0;
  std::memcpy(&number, scanned->blocks(0).data().data(), sizeof number);
  std::memcpy(&real, scanned->blocks(1).data().data(), sizeof real);
  EXPECT_EQ(number, 42);
  EXPECT_EQ(real, 3.5);
  EXPECT_EQ(std::string(scanned->blocks(2).data().c_str()), "word");
}

// ---- 8. errno -------------------------------------------------------------------------

TEST_F(ShapesTest, ErrnoIsCapturedAfterAndSetBeforeACall) {
  absl::StatusOr<WithErrno<int>> failed = Fn<int(int)>("set_errno_to").CallWithErrno(ERANGE);
  ASSERT_OK(failed);
  EXPECT_EQ(failed->value, -1);
  EXPECT_EQ(failed->error_number, ERANGE);

  CallOptions options;
  options.set_errno = EILSEQ;
  absl::StatusOr<WithErrno<int>> seen = Fn<int()>("get_errno_value").CallWith(options);
  ASSERT_OK(seen);
  EXPECT_EQ(seen->value, EILSEQ);
  EXPECT_EQ(seen->error_number, EILSEQ);
}

// ---- 9. Function pointers returned by the library -------------------------------------

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

// ---- 10. Hostile types ----------------------------------------------------------------

class HostileTypesTest : public ShapesTest {
 protected:
  // Expects GetLayout of `type` to be refused with INVALID_ARGUMENT whose field contains
  // `field_part`, and the session to keep serving.
  void ExpectRefused(const v1::Type& type, const std::string& field_part) {
    absl::StatusOr<v1::LayoutResult> layout = session_->Layout(type);
    ASSERT_FALSE(layout.ok());
    const v1::Error error = ErrorOf(layout.status());
    EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT) << layout.status();
    EXPECT_NE(error.field().find(field_part), std::string::npos)
        << "field '" << error.field() << "' does not name " << field_part;
    ExpectSessionStillServes();
  }

  static v1::Type RecordOf(std::vector<v1::Field> fields) {
    v1::Type type;
    type.mutable_record()->set_kind(v1::RecordType::STRUCT);
    type.mutable_record()->set_name("Hostile");
    for (v1::Field& field : fields) *type.mutable_record()->add_fields() = std::move(field);
    return type;
  }
};

TEST_F(HostileTypesTest, ArrayOfTwoToTheSixtySecondElementsIsRefused) {
  v1::Type type;
  type.mutable_array()->mutable_element()->set_scalar(v1::INT);
  type.mutable_array()->set_length(uint64_t{1} << 62);
  ExpectRefused(type, "length");
  // Inside a record, the field is named.
  v1::Field field;
  field.set_name("huge");
  *field.mutable_type() = type;
  v1::Field ok_field;
  ok_field.set_name("fine");
  ok_field.mutable_type()->set_scalar(v1::INT);
  ExpectRefused(RecordOf({ok_field, field}), "fields[1]");
}

TEST_F(HostileTypesTest, NegativeAndOversizedBitWidthsAreRefused) {
  ExpectRefused(RecordOf({BitField("a", v1::UINT, 3), BitField("b", v1::INT, -1)}),
                "fields[1].bit_width");
  ExpectRefused(RecordOf({BitField("wide", v1::INT, 40)}), "fields[0].bit_width");
  v1::Field not_integer = BitField("d", v1::DOUBLE, 3);
  ExpectRefused(RecordOf({not_integer}), "bit_width");
}

TEST_F(HostileTypesTest, HundredThousandFieldsAndDeepNestingAreRefused) {
  std::vector<v1::Field> fields(100000);
  for (size_t i = 0; i < fields.size(); ++i) {
    fields[i].set_name("f");
    fields[i].mutable_type()->set_scalar(v1::CHAR);
  }
  ExpectRefused(RecordOf(std::move(fields)), "fields");

  // 40 pointer levels: beyond the server's limit of 32, within protobuf's parse depth (a
  // message nested deeper than protobuf parses is refused by the transport, see
  // docs/protocol.md).
  v1::Type deep;
  deep.set_scalar(v1::INT);
  for (int i = 0; i < 40; ++i) {
    v1::Type outer;
    *outer.mutable_pointer()->mutable_pointee() = std::move(deep);
    deep = std::move(outer);
  }
  ExpectRefused(deep, "pointee");
}

TEST_F(HostileTypesTest, RelocationOutsideItsBlockIsRefusedNamingIt) {
  RawFunction increment = Raw("increment", TypedFunction<void(int*)>::Signature());
  v1::Call past_end;
  v1::MemoryBlock* block = past_end.add_blocks();
  block->set_size(8);
  v1::Relocation* relocation = block->add_relocations();
  relocation->set_offset(4);  // offset + 8 > size
  relocation->mutable_target()->set_block(0);
  *past_end.add_args() = BlockPointer(0);
  v1::Error error = ErrorOf(increment.Call(past_end).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(error.field().find("blocks[0].relocations[0]"), std::string::npos) << error.field();

  v1::Call bad_target = past_end;
  bad_target.mutable_blocks(0)->mutable_relocations(0)->set_offset(0);
  bad_target.mutable_blocks(0)->mutable_relocations(0)->mutable_target()->set_offset(100);
  error = ErrorOf(increment.Call(bad_target).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  EXPECT_NE(error.field().find("relocations[0]"), std::string::npos) << error.field();

  v1::Call missing_block = past_end;
  missing_block.mutable_blocks(0)->mutable_relocations(0)->set_offset(0);
  missing_block.mutable_blocks(0)->mutable_relocations(0)->mutable_target()->set_block(5);
  error = ErrorOf(increment.Call(missing_block).status());
  EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT);
  ExpectSessionStillServes();
}

}  // namespace
}  // namespace ffibox

// Records through a real ffiboxd with the C++ client: structs by value of each x86-64
// register class, unions, packing, bit fields, nesting, arrays inside records, records by
// pointer (in, out, in-out), and a misdescribed record refused before any call.
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

using ::ffibox::testing::FloatValue;
using ::ffibox::testing::IntValue;
using ::ffibox::testing::ScalarType;

using test_support::BitField;
using test_support::ShapesTest;

// A packed C++ struct described without its pack: the worker lays it out naturally.
#pragma pack(push, 1)
struct MisdescribedPacked {
  char c;
  int i;
};
#pragma pack(pop)
FFIBOX_STRUCT(MisdescribedPacked, c, i)

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

  // A union aggregate has one element, which sets the first member (aggregate.member unset).
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

}  // namespace
}  // namespace ffibox

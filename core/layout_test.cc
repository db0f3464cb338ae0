#include "core/layout.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>

#include "core/errors.h"
#include "core/test_types.h"
#include "core/types.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using testing::ArrayOf;
using testing::MakeField;
using testing::ScalarType;
using testing::Struct;
using testing::Union;

// Real C layouts, compiled by the same gcc the worker uses.
struct Mixed {
  char c;
  int i;
  double d;
  short s;
};
struct WithLongDouble {
  char c;
  long double ld;
};
union Overlay {
  char c;
  double d;
  int arr[3];
};
struct Nested {
  char c;
  Mixed m;
  short arr[3];
};
#pragma pack(push, 1)
struct Packed1 {
  char c;
  int i;
  double d;
};
#pragma pack(pop)
#pragma pack(push, 4)
struct Packed4 {
  char c;
  long double ld;
  double d;
};
#pragma pack(pop)
struct Bits {
  int a : 3;
  int b : 5;
  char c;
  int d : 30;
  int e : 4;
  long long f : 40;
  char g;
};
struct ZeroWidth {
  char a;
  int : 0;
  char b;
};
struct Unnamed {
  char a;
  int : 4;
  char b;
};
#pragma pack(push, 1)
struct PackedBits1 {
  char a;
  int b : 31;
  char c;
};
#pragma pack(pop)
#pragma pack(push, 2)
struct PackedBits2 {
  char a;
  int b : 31;
  int : 0;
  char c;
};
#pragma pack(pop)
union BitUnion {
  int a : 3;
  char b;
};
struct SmallBits {
  bool a : 1;
  unsigned b : 2;
  short c : 9;
  short d : 9;
};

TypeLayout MustLayout(const v1::Type& type) {
  absl::Status valid = ValidateType(type, TypeLimits(), "t");
  EXPECT_TRUE(valid.ok()) << valid;
  absl::StatusOr<TypeLayout> layout = ComputeLayout(type);
  EXPECT_TRUE(layout.ok()) << layout.status();
  return layout.ok() ? *layout : TypeLayout();
}

// The first set bit and the number of set bits after `set` stores all ones in one field of
// a zeroed S: where gcc put the bit field.
template <typename S, typename Set>
std::pair<int, int> BitSpan(Set set) {
  S s;
  std::memset(&s, 0, sizeof s);
  set(s);
  unsigned char bytes[sizeof(S)];
  std::memcpy(bytes, &s, sizeof s);
  int first = -1, count = 0;
  for (size_t i = 0; i < sizeof s * 8; ++i) {
    if (bytes[i / 8] & (1u << (i % 8))) {
      if (first < 0) first = static_cast<int>(i);
      ++count;
    }
  }
  return {first, count};
}

int FirstBit(const FieldLayout& field) {
  return static_cast<int>(field.offset * 8 + field.bit_offset);
}

TEST(LayoutTest, ScalarsHaveTheSizesOfTheCTypes) {
  EXPECT_EQ(MustLayout(ScalarType(v1::LONGDOUBLE)).size, sizeof(long double));
  EXPECT_EQ(MustLayout(ScalarType(v1::LONGDOUBLE)).alignment, alignof(long double));
  EXPECT_EQ(MustLayout(ScalarType(v1::WCHAR)).size, sizeof(wchar_t));
  EXPECT_EQ(MustLayout(ScalarType(v1::BOOL)).size, sizeof(bool));
  EXPECT_EQ(MustLayout(ScalarType(v1::CSTRING)).size, sizeof(char*));
  EXPECT_EQ(MustLayout(ScalarType(v1::SSIZE_T)).size, sizeof(ssize_t));
}

TEST(LayoutTest, NaturalStructMatchesGcc) {
  TypeLayout l = MustLayout(
      Struct({MakeField("c", ScalarType(v1::CHAR)), MakeField("i", ScalarType(v1::INT)),
              MakeField("d", ScalarType(v1::DOUBLE)), MakeField("s", ScalarType(v1::SHORT))}));
  EXPECT_EQ(l.size, sizeof(Mixed));
  EXPECT_EQ(l.alignment, alignof(Mixed));
  ASSERT_EQ(l.fields.size(), 4u);
  EXPECT_EQ(l.fields[1].name, "i");
  EXPECT_EQ(l.fields[1].offset, offsetof(Mixed, i));
  EXPECT_EQ(l.fields[2].offset, offsetof(Mixed, d));
  EXPECT_EQ(l.fields[3].offset, offsetof(Mixed, s));
}

TEST(LayoutTest, LongDoubleStructUnionAndNestingMatchGcc) {
  TypeLayout ld = MustLayout(
      Struct({MakeField("c", ScalarType(v1::CHAR)), MakeField("ld", ScalarType(v1::LONGDOUBLE))}));
  EXPECT_EQ(ld.size, sizeof(WithLongDouble));
  EXPECT_EQ(ld.fields[1].offset, offsetof(WithLongDouble, ld));

  TypeLayout u = MustLayout(
      Union({MakeField("c", ScalarType(v1::CHAR)), MakeField("d", ScalarType(v1::DOUBLE)),
             MakeField("arr", ArrayOf(ScalarType(v1::INT), 3))}));
  EXPECT_EQ(u.size, sizeof(Overlay));
  EXPECT_EQ(u.alignment, alignof(Overlay));
  for (const FieldLayout& f : u.fields) EXPECT_EQ(f.offset, 0u);

  v1::Type mixed =
      Struct({MakeField("c", ScalarType(v1::CHAR)), MakeField("i", ScalarType(v1::INT)),
              MakeField("d", ScalarType(v1::DOUBLE)), MakeField("s", ScalarType(v1::SHORT))});
  TypeLayout n = MustLayout(Struct({MakeField("c", ScalarType(v1::CHAR)), MakeField("m", mixed),
                                    MakeField("arr", ArrayOf(ScalarType(v1::SHORT), 3))}));
  EXPECT_EQ(n.size, sizeof(Nested));
  EXPECT_EQ(n.fields[1].offset, offsetof(Nested, m));
  EXPECT_EQ(n.fields[2].offset, offsetof(Nested, arr));
  EXPECT_EQ(n.fields[2].size, sizeof(Nested::arr));
}

TEST(LayoutTest, PackCapsMemberAlignmentLikePragmaPack) {
  TypeLayout p1 =
      MustLayout(Struct({MakeField("c", ScalarType(v1::CHAR)), MakeField("i", ScalarType(v1::INT)),
                         MakeField("d", ScalarType(v1::DOUBLE))},
                        1));
  EXPECT_EQ(p1.size, sizeof(Packed1));
  EXPECT_EQ(p1.alignment, alignof(Packed1));
  EXPECT_EQ(p1.fields[1].offset, offsetof(Packed1, i));
  EXPECT_EQ(p1.fields[2].offset, offsetof(Packed1, d));

  TypeLayout p4 = MustLayout(
      Struct({MakeField("c", ScalarType(v1::CHAR)), MakeField("ld", ScalarType(v1::LONGDOUBLE)),
              MakeField("d", ScalarType(v1::DOUBLE))},
             4));
  EXPECT_EQ(p4.size, sizeof(Packed4));
  EXPECT_EQ(p4.alignment, alignof(Packed4));
  EXPECT_EQ(p4.fields[1].offset, offsetof(Packed4, ld));
  EXPECT_EQ(p4.fields[2].offset, offsetof(Packed4, d));
}

TEST(LayoutTest, BitFieldsFollowGccStorageUnits) {
  TypeLayout l = MustLayout(
      Struct({MakeField("a", ScalarType(v1::INT), 3), MakeField("b", ScalarType(v1::INT), 5),
              MakeField("c", ScalarType(v1::CHAR)), MakeField("d", ScalarType(v1::INT), 30),
              MakeField("e", ScalarType(v1::INT), 4), MakeField("f", ScalarType(v1::LONGLONG), 40),
              MakeField("g", ScalarType(v1::CHAR))}));
  EXPECT_EQ(l.size, sizeof(Bits));
  EXPECT_EQ(l.alignment, alignof(Bits));
  EXPECT_EQ(FirstBit(l.fields[0]), (BitSpan<Bits>([](Bits& s) { s.a = -1; }).first));
  EXPECT_EQ(FirstBit(l.fields[1]), (BitSpan<Bits>([](Bits& s) { s.b = -1; }).first));
  EXPECT_EQ(l.fields[2].offset, offsetof(Bits, c));
  EXPECT_EQ(FirstBit(l.fields[3]), (BitSpan<Bits>([](Bits& s) { s.d = -1; }).first));
  EXPECT_EQ(FirstBit(l.fields[4]), (BitSpan<Bits>([](Bits& s) { s.e = -1; }).first));
  EXPECT_EQ(FirstBit(l.fields[5]), (BitSpan<Bits>([](Bits& s) { s.f = -1; }).first));
  EXPECT_EQ(l.fields[6].offset, offsetof(Bits, g));
  EXPECT_EQ(l.fields[3].bit_width, 30u);
  // d starts a new int unit because it does not fit after a, b and c.
  EXPECT_EQ(l.fields[3].offset, 4u);
  EXPECT_EQ(l.fields[3].bit_offset, 0u);
}

TEST(LayoutTest, ZeroWidthAndUnnamedBitFieldsDoNotRaiseAlignment) {
  TypeLayout z = MustLayout(
      Struct({MakeField("a", ScalarType(v1::CHAR)), MakeField("", ScalarType(v1::INT), 0),
              MakeField("b", ScalarType(v1::CHAR))}));
  EXPECT_EQ(z.size, sizeof(ZeroWidth));
  EXPECT_EQ(z.alignment, alignof(ZeroWidth));
  EXPECT_EQ(z.fields[2].offset, offsetof(ZeroWidth, b));

  TypeLayout u = MustLayout(
      Struct({MakeField("a", ScalarType(v1::CHAR)), MakeField("", ScalarType(v1::INT), 4),
              MakeField("b", ScalarType(v1::CHAR))}));
  EXPECT_EQ(u.size, sizeof(Unnamed));
  EXPECT_EQ(u.alignment, alignof(Unnamed));
  EXPECT_EQ(u.fields[2].offset, offsetof(Unnamed, b));
}

TEST(LayoutTest, PackedBitFieldsMayStraddleUnits) {
  TypeLayout p1 = MustLayout(
      Struct({MakeField("a", ScalarType(v1::CHAR)), MakeField("b", ScalarType(v1::INT), 31),
              MakeField("c", ScalarType(v1::CHAR))},
             1));
  EXPECT_EQ(p1.size, sizeof(PackedBits1));
  EXPECT_EQ(p1.alignment, alignof(PackedBits1));
  EXPECT_EQ(FirstBit(p1.fields[1]), (BitSpan<PackedBits1>([](PackedBits1& s) { s.b = -1; }).first));
  EXPECT_EQ(p1.fields[2].offset, offsetof(PackedBits1, c));

  TypeLayout p2 = MustLayout(
      Struct({MakeField("a", ScalarType(v1::CHAR)), MakeField("b", ScalarType(v1::INT), 31),
              MakeField("", ScalarType(v1::INT), 0), MakeField("c", ScalarType(v1::CHAR))},
             2));
  EXPECT_EQ(p2.size, sizeof(PackedBits2));
  EXPECT_EQ(p2.alignment, alignof(PackedBits2));
  EXPECT_EQ(FirstBit(p2.fields[1]), (BitSpan<PackedBits2>([](PackedBits2& s) { s.b = -1; }).first));
  EXPECT_EQ(p2.fields[3].offset, offsetof(PackedBits2, c));
}

TEST(LayoutTest, SmallBitFieldsAndBitFieldUnionsMatchGcc) {
  TypeLayout s = MustLayout(
      Struct({MakeField("a", ScalarType(v1::BOOL), 1), MakeField("b", ScalarType(v1::UINT), 2),
              MakeField("c", ScalarType(v1::SHORT), 9), MakeField("d", ScalarType(v1::SHORT), 9)}));
  EXPECT_EQ(s.size, sizeof(SmallBits));
  EXPECT_EQ(s.alignment, alignof(SmallBits));
  EXPECT_EQ(FirstBit(s.fields[1]), (BitSpan<SmallBits>([](SmallBits& x) { x.b = 3; }).first));
  EXPECT_EQ(FirstBit(s.fields[2]), (BitSpan<SmallBits>([](SmallBits& x) { x.c = -1; }).first));
  EXPECT_EQ(FirstBit(s.fields[3]), (BitSpan<SmallBits>([](SmallBits& x) { x.d = -1; }).first));

  TypeLayout u = MustLayout(
      Union({MakeField("a", ScalarType(v1::INT), 3), MakeField("b", ScalarType(v1::CHAR))}));
  EXPECT_EQ(u.size, sizeof(BitUnion));
  EXPECT_EQ(u.alignment, alignof(BitUnion));
}

TEST(LayoutTest, ArraysAreElementTimesLength) {
  TypeLayout a = MustLayout(ArrayOf(ScalarType(v1::LONGDOUBLE), 5));
  EXPECT_EQ(a.size, sizeof(long double[5]));
  EXPECT_EQ(a.alignment, alignof(long double));
  EXPECT_TRUE(a.fields.empty());
}

TEST(LayoutTest, RefusesUnvalidatedShapesWithoutCrashing) {
  EXPECT_THAT(ComputeLayout(v1::Type()).status(), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(ComputeLayout(ScalarType(v1::VOID)).status(), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(ComputeLayout(Struct({})).status(), StatusIs(v1::INVALID_ARGUMENT));
  v1::Type huge = ArrayOf(ArrayOf(ScalarType(v1::DOUBLE), 1ull << 40), 1ull << 40);
  EXPECT_THAT(ComputeLayout(huge).status(), StatusIs(v1::INVALID_ARGUMENT));
}

}  // namespace
}  // namespace ffibox

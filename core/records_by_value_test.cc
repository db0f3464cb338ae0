// Records by value through PreparedFunction against functions gcc compiled into this test:
// every x86-64 System V class (INTEGER, SSE, mixed, MEMORY), unions, pack, bit fields,
// arrays inside records, nesting, spilling to the stack, variadic records; aggregate values;
// the pointers reported in returned blocks; sscanf and snprintf from libc.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdarg>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/call.h"
#include "core/errors.h"
#include "core/marshal.h"
#include "core/test_types.h"
#include "tests/support/status_matchers.h"

extern "C" {
struct SmallInts {
  int a;
  int b;
};
struct ThreeInts {
  int a, b, c;
};
struct TwoFloats {
  float x, y;
};
struct ThreeFloats {
  float x, y, z;
};
struct DoubleInt {
  double d;
  int i;
};
struct IntFloat {
  int i;
  float f;
};
struct Large {
  long a, b, c;
  double d;
};
struct FloatsInMemory {
  float a, b, c, d;
  double e;
};
union IntOrFloat {
  int i;
  float f;
};
union DoubleOrLong {
  double d;
  long l;
};
union FloatOrDouble {
  float f;
  double d;
};
#pragma pack(push, 1)
struct Packed1 {
  char c;
  int i;
  short s;
};
struct PackedAligned {
  char a;
  char b;
  short c;
  float f;
};
#pragma pack(pop)
#pragma pack(push, 2)
struct Packed2Floats {
  float a;
  float b;
  short c;
};
#pragma pack(pop)
struct Bits {
  unsigned a : 3;
  int b : 5;
  unsigned c : 12;
  long d : 40;
};
struct FloatAndFlag {
  float f;
  unsigned flag : 1;
};
struct WithChars {
  char name[3];
  int x;
};
struct FloatArray {
  float v[3];
};
struct Nested {
  TwoFloats p;
  int id;
};
struct NestedUnion {
  IntOrFloat u;
  float g;
};

SmallInts twice_SmallInts(SmallInts s) { return {s.a * 2, s.b * 2 + 1}; }
ThreeInts twice_ThreeInts(ThreeInts s) { return {s.a * 2, s.b * 2, s.c * 2 + 1}; }
TwoFloats twice_TwoFloats(TwoFloats s) { return {s.x * 2, s.y * 2 + 1}; }
ThreeFloats twice_ThreeFloats(ThreeFloats s) { return {s.x * 2, s.y * 2, s.z * 2 + 1}; }
DoubleInt twice_DoubleInt(DoubleInt s) { return {s.d * 2, s.i * 2 + 1}; }
IntFloat twice_IntFloat(IntFloat s) { return {s.i * 2, s.f * 2 + 1}; }
Large twice_Large(Large s) { return {s.a * 2, s.b * 2, s.c * 2, s.d * 2 + 1}; }
FloatsInMemory twice_FloatsInMemory(FloatsInMemory s) {
  return {s.a * 2, s.b * 2, s.c * 2, s.d * 2, s.e * 2 + 1};
}
IntOrFloat twice_IntOrFloat(IntOrFloat s) {
  IntOrFloat r;
  r.i = s.i * 2 + 1;
  return r;
}
DoubleOrLong twice_DoubleOrLong(DoubleOrLong s) {
  DoubleOrLong r;
  r.l = s.l * 2 + 1;
  return r;
}
FloatOrDouble twice_FloatOrDouble(FloatOrDouble s) {
  FloatOrDouble r;
  r.d = s.d * 2 + 1;
  return r;
}
Packed1 twice_Packed1(Packed1 s) {
  return {static_cast<char>(s.c * 2), s.i * 2, static_cast<short>(s.s * 2 + 1)};
}
PackedAligned twice_PackedAligned(PackedAligned s) {
  return {static_cast<char>(s.a * 2), static_cast<char>(s.b * 2), static_cast<short>(s.c * 2),
          s.f * 2 + 1};
}
Packed2Floats twice_Packed2Floats(Packed2Floats s) {
  return {s.a * 2, s.b * 2, static_cast<short>(s.c * 2 + 1)};
}
Bits twice_Bits(Bits s) {
  Bits r;
  r.a = s.a + 1;
  r.b = s.b * 2;
  r.c = s.c * 2 + 1;
  r.d = s.d * 2;
  return r;
}
FloatAndFlag twice_FloatAndFlag(FloatAndFlag s) {
  FloatAndFlag r;
  r.f = s.f * 2;
  r.flag = !s.flag;
  return r;
}
WithChars twice_WithChars(WithChars s) {
  WithChars r;
  for (int i = 0; i < 3; ++i) r.name[i] = static_cast<char>(s.name[i] + 1);
  r.x = s.x * 2 + 1;
  return r;
}
FloatArray twice_FloatArray(FloatArray s) { return {{s.v[0] * 2, s.v[1] * 2, s.v[2] * 2 + 1}}; }
Nested twice_Nested(Nested s) { return {{s.p.x * 2, s.p.y * 2}, s.id * 2 + 1}; }
NestedUnion twice_NestedUnion(NestedUnion s) {
  NestedUnion r;
  r.u.i = s.u.i * 2 + 1;
  r.g = s.g * 2;
  return r;
}

// Enough scalar arguments before the record that it no longer fits in registers.
long spill_SmallInts(long r0, long r1, long r2, long r3, long r4, long r5, SmallInts s) {
  return r0 + r1 + r2 + r3 + r4 + r5 + s.a * 1000 + s.b * 100000;
}
double spill_TwoFloats(double x0, double x1, double x2, double x3, double x4, double x5, double x6,
                       double x7, TwoFloats s) {
  return x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7 + s.x * 1000 + s.y * 100000;
}

double sum_variadic_DoubleInt(int n, ...) {
  va_list ap;
  va_start(ap, n);
  double sum = 0;
  for (int i = 0; i < n; ++i) {
    DoubleInt v = va_arg(ap, DoubleInt);
    sum += v.d + v.i;
  }
  va_end(ap);
  return sum;
}

// Leaves pointers for the block scan: into `buffer`, at its end, NULL, and to itself.
void leave_pointers(void** slots, char* buffer, size_t buffer_size) {
  slots[0] = buffer + 3;
  slots[1] = buffer + buffer_size;
  slots[2] = nullptr;
  slots[3] = slots;
}
}

namespace ffibox {
namespace {

using testing::ArrayOf;
using testing::BlockPointer;
using testing::BytesValue;
using testing::FloatValue;
using testing::IntValue;
using testing::MakeField;
using testing::PointerTo;
using testing::ScalarType;
using testing::Struct;
using testing::UintValue;

constexpr uint64_t kGeneration = 3;

v1::Type T(v1::Scalar scalar) { return ScalarType(scalar); }

v1::Signature Sig(const v1::Type& result, std::vector<v1::Type> params, bool variadic = false) {
  v1::Signature sig;
  *sig.mutable_result() = result;
  for (const v1::Type& p : params) *sig.add_params() = p;
  sig.set_variadic(variadic);
  return sig;
}

std::unique_ptr<PreparedFunction> Prepare(void* address, const v1::Signature& sig) {
  absl::StatusOr<std::unique_ptr<PreparedFunction>> function =
      PreparedFunction::Create(address, sig, TypeLimits());
  EXPECT_TRUE(function.ok()) << function.status();
  return function.ok() ? std::move(*function) : nullptr;
}

template <typename S>
v1::Value RawOf(const S& value) {
  v1::Value raw;
  raw.set_raw(std::string(reinterpret_cast<const char*>(&value), sizeof value));
  return raw;
}

v1::Call MakeCall(std::vector<v1::Value> args) {
  v1::Call call;
  for (const v1::Value& v : args) *call.add_args() = v;
  return call;
}

std::string FieldOf(const absl::Status& status) { return ToProtoError(status).field(); }

// Calls `twice(input)` through libffi with `value` as the argument and checks the returned
// raw bytes against the same call made natively, member by member through `equal`.
template <typename S, typename Equal>
void ExpectSameAsNative(S (*twice)(S), const v1::Type& type, const S& input, const v1::Value& value,
                        Equal equal) {
  std::unique_ptr<PreparedFunction> f = Prepare(reinterpret_cast<void*>(twice), Sig(type, {type}));
  ASSERT_NE(f, nullptr);
  absl::StatusOr<v1::CallResult> result = f->Invoke(MakeCall({value}), kGeneration);
  ASSERT_OK(result);
  ASSERT_EQ(result->result().raw().size(), sizeof(S));
  S got;
  std::memcpy(&got, result->result().raw().data(), sizeof got);
  S want = twice(input);
  EXPECT_TRUE(equal(got, want));
}

template <typename S, typename Equal>
void ExpectSameAsNative(S (*twice)(S), const v1::Type& type, const S& input, Equal equal) {
  ExpectSameAsNative(twice, type, input, RawOf(input), equal);
}

template <typename S>
S Zeroed() {
  S s;
  std::memset(&s, 0, sizeof s);
  return s;
}

v1::Value Aggregate(std::vector<v1::Value> elements) {
  v1::Value value;
  for (const v1::Value& e : elements) *value.mutable_aggregate()->add_elements() = e;
  return value;
}

const v1::Type kTwoFloats = Struct({MakeField("x", T(v1::FLOAT)), MakeField("y", T(v1::FLOAT))});
const v1::Type kIntOrFloat =
    testing::Union({MakeField("i", T(v1::INT)), MakeField("f", T(v1::FLOAT))});
const v1::Type kBits = Struct({MakeField("a", T(v1::UINT), 3), MakeField("b", T(v1::INT), 5),
                               MakeField("c", T(v1::UINT), 12), MakeField("d", T(v1::LONG), 40)});

TEST(RecordsByValueTest, IntegerClassStructsTravelInGeneralRegisters) {
  ExpectSameAsNative(
      twice_SmallInts, Struct({MakeField("a", T(v1::INT)), MakeField("b", T(v1::INT))}),
      SmallInts{7, -9}, [](SmallInts a, SmallInts b) { return a.a == b.a && a.b == b.b; });
  ExpectSameAsNative(
      twice_ThreeInts,
      Struct({MakeField("a", T(v1::INT)), MakeField("b", T(v1::INT)), MakeField("c", T(v1::INT))}),
      ThreeInts{1, 2, 3},
      [](ThreeInts a, ThreeInts b) { return a.a == b.a && a.b == b.b && a.c == b.c; });
}

TEST(RecordsByValueTest, AllFloatStructsTravelInSseRegisters) {
  ExpectSameAsNative(twice_TwoFloats, kTwoFloats, TwoFloats{1.5f, -2.25f},
                     [](TwoFloats a, TwoFloats b) { return a.x == b.x && a.y == b.y; });
  ExpectSameAsNative(twice_ThreeFloats,
                     Struct({MakeField("x", T(v1::FLOAT)), MakeField("y", T(v1::FLOAT)),
                             MakeField("z", T(v1::FLOAT))}),
                     ThreeFloats{1.5f, 2.5f, 3.5f}, [](ThreeFloats a, ThreeFloats b) {
                       return a.x == b.x && a.y == b.y && a.z == b.z;
                     });
  ExpectSameAsNative(twice_FloatArray, Struct({MakeField("v", ArrayOf(T(v1::FLOAT), 3))}),
                     FloatArray{{0.5f, 1.5f, 2.5f}}, [](FloatArray a, FloatArray b) {
                       return std::memcmp(a.v, b.v, sizeof a.v) == 0;
                     });
}

TEST(RecordsByValueTest, MixedStructsUseOneRegisterOfEachClass) {
  DoubleInt di = Zeroed<DoubleInt>();
  di.d = 0.75;
  di.i = 40;
  ExpectSameAsNative(twice_DoubleInt,
                     Struct({MakeField("d", T(v1::DOUBLE)), MakeField("i", T(v1::INT))}), di,
                     [](DoubleInt a, DoubleInt b) { return a.d == b.d && a.i == b.i; });
  ExpectSameAsNative(
      twice_IntFloat, Struct({MakeField("i", T(v1::INT)), MakeField("f", T(v1::FLOAT))}),
      IntFloat{5, 0.5f}, [](IntFloat a, IntFloat b) { return a.i == b.i && a.f == b.f; });
  ExpectSameAsNative(
      twice_Nested, Struct({MakeField("p", kTwoFloats), MakeField("id", T(v1::INT))}),
      Nested{{1.25f, 2.5f}, 9},
      [](Nested a, Nested b) { return a.p.x == b.p.x && a.p.y == b.p.y && a.id == b.id; });
}

TEST(RecordsByValueTest, StructsOverSixteenBytesTravelInMemory) {
  ExpectSameAsNative(twice_Large,
                     Struct({MakeField("a", T(v1::LONG)), MakeField("b", T(v1::LONG)),
                             MakeField("c", T(v1::LONG)), MakeField("d", T(v1::DOUBLE))}),
                     Large{1, -2, 3, 4.5}, [](Large a, Large b) {
                       return a.a == b.a && a.b == b.b && a.c == b.c && a.d == b.d;
                     });
  ExpectSameAsNative(twice_FloatsInMemory,
                     Struct({MakeField("a", T(v1::FLOAT)), MakeField("b", T(v1::FLOAT)),
                             MakeField("c", T(v1::FLOAT)), MakeField("d", T(v1::FLOAT)),
                             MakeField("e", T(v1::DOUBLE))}),
                     FloatsInMemory{1, 2, 3, 4, 5}, [](FloatsInMemory a, FloatsInMemory b) {
                       return a.a == b.a && a.b == b.b && a.c == b.c && a.d == b.d && a.e == b.e;
                     });
}

TEST(RecordsByValueTest, UnionsAreClassifiedByEveryMember) {
  IntOrFloat iof;
  iof.i = 20;
  ExpectSameAsNative(twice_IntOrFloat, kIntOrFloat, iof,
                     [](IntOrFloat a, IntOrFloat b) { return a.i == b.i; });
  DoubleOrLong dol;
  dol.l = -12345678901;
  ExpectSameAsNative(twice_DoubleOrLong,
                     testing::Union({MakeField("d", T(v1::DOUBLE)), MakeField("l", T(v1::LONG))}),
                     dol, [](DoubleOrLong a, DoubleOrLong b) { return a.l == b.l; });
  FloatOrDouble fod;
  fod.d = 2.5;
  ExpectSameAsNative(twice_FloatOrDouble,
                     testing::Union({MakeField("f", T(v1::FLOAT)), MakeField("d", T(v1::DOUBLE))}),
                     fod, [](FloatOrDouble a, FloatOrDouble b) { return a.d == b.d; });
  NestedUnion nu = Zeroed<NestedUnion>();
  nu.u.i = 7;
  nu.g = 1.5f;
  ExpectSameAsNative(twice_NestedUnion,
                     Struct({MakeField("u", kIntOrFloat), MakeField("g", T(v1::FLOAT))}), nu,
                     [](NestedUnion a, NestedUnion b) { return a.u.i == b.u.i && a.g == b.g; });
}

TEST(RecordsByValueTest, PackedStructsFollowTheirMembersAlignment) {
  Packed1 p1 = Zeroed<Packed1>();
  p1.c = 3;
  p1.i = 100000;
  p1.s = -5;
  ExpectSameAsNative(
      twice_Packed1,
      Struct(
          {MakeField("c", T(v1::CHAR)), MakeField("i", T(v1::INT)), MakeField("s", T(v1::SHORT))},
          1),
      p1, [](Packed1 a, Packed1 b) { return a.c == b.c && a.i == b.i && a.s == b.s; });
  PackedAligned pa{1, 2, 3, 4.5f};
  ExpectSameAsNative(twice_PackedAligned,
                     Struct({MakeField("a", T(v1::CHAR)), MakeField("b", T(v1::CHAR)),
                             MakeField("c", T(v1::SHORT)), MakeField("f", T(v1::FLOAT))},
                            1),
                     pa, [](PackedAligned a, PackedAligned b) {
                       return a.a == b.a && a.b == b.b && a.c == b.c && a.f == b.f;
                     });
  static_assert(sizeof(Packed2Floats) == 10, "pack(2) layout");
  ExpectSameAsNative(twice_Packed2Floats,
                     Struct({MakeField("a", T(v1::FLOAT)), MakeField("b", T(v1::FLOAT)),
                             MakeField("c", T(v1::SHORT))},
                            2),
                     Packed2Floats{1.5f, 2.5f, 7}, [](Packed2Floats a, Packed2Floats b) {
                       return a.a == b.a && a.b == b.b && a.c == b.c;
                     });
}

bool SameBits(Bits a, Bits b) { return a.a == b.a && a.b == b.b && a.c == b.c && a.d == b.d; }

TEST(RecordsByValueTest, BitFieldStructsTravelAsIntegers) {
  Bits bits = Zeroed<Bits>();
  bits.a = 5;
  bits.b = -3;
  bits.c = 4000;
  bits.d = -123456789;
  ExpectSameAsNative(twice_Bits, kBits, bits, SameBits);
  FloatAndFlag ff = Zeroed<FloatAndFlag>();
  ff.f = 2.5f;
  ff.flag = 1;
  ExpectSameAsNative(twice_FloatAndFlag,
                     Struct({MakeField("f", T(v1::FLOAT)), MakeField("flag", T(v1::UINT), 1)}), ff,
                     [](FloatAndFlag a, FloatAndFlag b) { return a.f == b.f && a.flag == b.flag; });
}

TEST(RecordsByValueTest, CharArraysInsideStructs) {
  WithChars wc = Zeroed<WithChars>();
  std::memcpy(wc.name, "abc", 3);
  wc.x = 11;
  const v1::Type type =
      Struct({MakeField("name", ArrayOf(T(v1::CHAR), 3)), MakeField("x", T(v1::INT))});
  auto same = [](WithChars a, WithChars b) {
    return std::memcmp(a.name, b.name, 3) == 0 && a.x == b.x;
  };
  ExpectSameAsNative(twice_WithChars, type, wc, same);
  // The same value field by field: bytes for the char array, then the int.
  ExpectSameAsNative(twice_WithChars, type, wc, Aggregate({BytesValue("abc"), IntValue(11)}), same);
}

TEST(RecordsByValueTest, RecordsSpillToTheStackWhenRegistersRunOut) {
  std::unique_ptr<PreparedFunction> ints =
      Prepare(reinterpret_cast<void*>(spill_SmallInts),
              Sig(T(v1::LONG),
                  {T(v1::LONG), T(v1::LONG), T(v1::LONG), T(v1::LONG), T(v1::LONG), T(v1::LONG),
                   Struct({MakeField("a", T(v1::INT)), MakeField("b", T(v1::INT))})}));
  absl::StatusOr<v1::CallResult> result =
      ints->Invoke(MakeCall({IntValue(1), IntValue(2), IntValue(3), IntValue(4), IntValue(5),
                             IntValue(6), RawOf(SmallInts{7, 8})}),
                   kGeneration);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().int_value(), spill_SmallInts(1, 2, 3, 4, 5, 6, SmallInts{7, 8}));

  std::vector<v1::Type> params(8, T(v1::DOUBLE));
  params.push_back(kTwoFloats);
  std::unique_ptr<PreparedFunction> floats =
      Prepare(reinterpret_cast<void*>(spill_TwoFloats), Sig(T(v1::DOUBLE), params));
  std::vector<v1::Value> args;
  for (int i = 0; i < 8; ++i) args.push_back(FloatValue(i + 0.5));
  args.push_back(RawOf(TwoFloats{1.5f, 2.5f}));
  result = floats->Invoke(MakeCall(args), kGeneration);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().float_value(),
            spill_TwoFloats(0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, TwoFloats{1.5f, 2.5f}));
}

TEST(RecordsByValueTest, VariadicRecordArguments) {
  const v1::Type type = Struct({MakeField("d", T(v1::DOUBLE)), MakeField("i", T(v1::INT))});
  std::unique_ptr<PreparedFunction> f = Prepare(reinterpret_cast<void*>(sum_variadic_DoubleInt),
                                                Sig(T(v1::DOUBLE), {T(v1::INT)}, true));
  v1::Call call = MakeCall({IntValue(2), Aggregate({FloatValue(0.5), IntValue(1)}),
                            Aggregate({FloatValue(0.25), IntValue(2)})});
  *call.add_variadic_types() = type;
  *call.add_variadic_types() = type;
  absl::StatusOr<v1::CallResult> result = f->Invoke(call, kGeneration);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().float_value(), 3.75);
}

TEST(AggregateValuesTest, BitFieldsAreWrittenIntoTheirBits) {
  Bits bits = Zeroed<Bits>();
  bits.a = 7;
  bits.b = -16;
  bits.c = 4095;
  bits.d = -(1L << 39);
  ExpectSameAsNative(
      twice_Bits, kBits, bits,
      Aggregate({UintValue(7), IntValue(-16), IntValue(4095), IntValue(-(1L << 39))}), SameBits);
}

TEST(AggregateValuesTest, BitFieldValuesOutsideTheirWidthNameTheElement) {
  std::unique_ptr<PreparedFunction> f =
      Prepare(reinterpret_cast<void*>(twice_Bits), Sig(kBits, {kBits}));
  struct Case {
    std::vector<v1::Value> elements;
    std::string field;
  };
  const Case cases[] = {
      {{IntValue(8), IntValue(0), IntValue(0), IntValue(0)}, "call.args[0].aggregate.elements[0]"},
      {{IntValue(-1), IntValue(0), IntValue(0), IntValue(0)}, "call.args[0].aggregate.elements[0]"},
      {{IntValue(0), IntValue(16), IntValue(0), IntValue(0)}, "call.args[0].aggregate.elements[1]"},
      {{IntValue(0), IntValue(-17), IntValue(0), IntValue(0)},
       "call.args[0].aggregate.elements[1]"},
      {{IntValue(0), IntValue(0), UintValue(4096), IntValue(0)},
       "call.args[0].aggregate.elements[2]"},
      {{IntValue(0), IntValue(0), IntValue(0), IntValue(1L << 39)},
       "call.args[0].aggregate.elements[3]"},
      {{IntValue(0), IntValue(0), IntValue(0)}, "call.args[0].aggregate.elements"},
  };
  for (const Case& c : cases) {
    absl::Status status = f->Invoke(MakeCall({Aggregate(c.elements)}), kGeneration).status();
    EXPECT_THAT(status, StatusIs(v1::INVALID_ARGUMENT)) << c.field;
    EXPECT_EQ(FieldOf(status), c.field) << status;
  }
}

TEST(AggregateValuesTest, UnionAggregateSetsTheFirstMemberAndNestedAggregatesNest) {
  IntOrFloat iof;
  iof.i = 41;
  ExpectSameAsNative(twice_IntOrFloat, kIntOrFloat, iof, Aggregate({IntValue(41)}),
                     [](IntOrFloat a, IntOrFloat b) { return a.i == b.i; });
  NestedUnion nu = Zeroed<NestedUnion>();
  nu.u.i = -2;
  nu.g = 0.5f;
  ExpectSameAsNative(twice_NestedUnion,
                     Struct({MakeField("u", kIntOrFloat), MakeField("g", T(v1::FLOAT))}), nu,
                     Aggregate({Aggregate({IntValue(-2)}), FloatValue(0.5)}),
                     [](NestedUnion a, NestedUnion b) { return a.u.i == b.u.i && a.g == b.g; });
  ExpectSameAsNative(twice_FloatArray, Struct({MakeField("v", ArrayOf(T(v1::FLOAT), 3))}),
                     FloatArray{{1, 2, 3}},
                     Aggregate({Aggregate({FloatValue(1), FloatValue(2), FloatValue(3)})}),
                     [](FloatArray a, FloatArray b) { return std::memcmp(&a, &b, sizeof a) == 0; });

  std::unique_ptr<PreparedFunction> f =
      Prepare(reinterpret_cast<void*>(twice_IntOrFloat), Sig(kIntOrFloat, {kIntOrFloat}));
  absl::Status two =
      f->Invoke(MakeCall({Aggregate({IntValue(1), FloatValue(2)})}), kGeneration).status();
  EXPECT_EQ(FieldOf(two), "call.args[0].aggregate.elements");
}

TEST(AggregateValuesTest, UnionAggregateSetsTheMemberItNamesAndZeroesTheRest) {
  const v1::Type double_or_long =
      testing::Union({MakeField("d", T(v1::DOUBLE)), MakeField("l", T(v1::LONG))});
  DoubleOrLong dol;
  dol.l = 20;
  v1::Value second = Aggregate({IntValue(20)});
  second.mutable_aggregate()->set_member(1);
  ExpectSameAsNative(twice_DoubleOrLong, double_or_long, dol, second,
                     [](DoubleOrLong a, DoubleOrLong b) { return a.l == b.l; });

  // A float member sets 4 of the 8 bytes; the others are zero, whatever the storage held.
  const v1::Type float_or_double =
      testing::Union({MakeField("f", T(v1::FLOAT)), MakeField("d", T(v1::DOUBLE))});
  alignas(16) unsigned char bytes[8];
  std::memset(bytes, 0xAB, sizeof bytes);
  MarshalContext context;
  context.generation = kGeneration;
  v1::Value first = Aggregate({FloatValue(0.5)});
  ASSERT_OK(MarshalValue(float_or_double, first, context, bytes));
  float back = 0;
  std::memcpy(&back, bytes, sizeof back);
  EXPECT_EQ(back, 0.5f);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(bytes[i], 0) << "byte " << i;

  // A member the union does not have, and a member named for a struct or an array.
  v1::Value third = Aggregate({IntValue(1)});
  third.mutable_aggregate()->set_member(2);
  absl::Status missing = MarshalValue(double_or_long, third, context, bytes);
  EXPECT_THAT(missing, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(missing), "aggregate.member");
  EXPECT_NE(missing.message().find("the union has 2 members"), std::string::npos) << missing;
  v1::Value of_struct = Aggregate({FloatValue(1), FloatValue(2)});
  of_struct.mutable_aggregate()->set_member(1);
  EXPECT_EQ(FieldOf(MarshalValue(kTwoFloats, of_struct, context, bytes)), "aggregate.member");
  v1::Value of_array = Aggregate({FloatValue(1), FloatValue(2)});
  of_array.mutable_aggregate()->set_member(1);
  EXPECT_EQ(FieldOf(MarshalValue(ArrayOf(T(v1::FLOAT), 2), of_array, context, bytes)),
            "aggregate.member");
}

TEST(BlockPointersTest, WordsPointingIntoBlocksAreReportedAsRelocations) {
  std::unique_ptr<PreparedFunction> f =
      Prepare(reinterpret_cast<void*>(leave_pointers),
              Sig(T(v1::VOID), {T(v1::POINTER), T(v1::POINTER), T(v1::SIZE_T)}));
  v1::Call call = MakeCall({BlockPointer(0), BlockPointer(1), UintValue(24)});
  v1::MemoryBlock* slots = call.add_blocks();
  slots->set_size(32);
  slots->set_direction(v1::OUT);
  v1::MemoryBlock* buffer = call.add_blocks();
  buffer->set_size(24);
  buffer->set_direction(v1::IN);
  absl::StatusOr<v1::CallResult> result = f->Invoke(call, kGeneration);
  ASSERT_OK(result);
  ASSERT_EQ(result->blocks_size(), 1);
  const v1::BlockContents& out = result->blocks(0);
  ASSERT_EQ(out.pointers_size(), 3);
  EXPECT_EQ(out.pointers(0).offset(), 0u);
  EXPECT_EQ(out.pointers(0).target().block(), 1u);
  EXPECT_EQ(out.pointers(0).target().offset(), 3u);
  EXPECT_EQ(out.pointers(1).offset(), 8u);
  EXPECT_EQ(out.pointers(1).target().block(), 1u);
  EXPECT_EQ(out.pointers(1).target().offset(), 24u);  // one past the end counts
  EXPECT_EQ(out.pointers(2).offset(), 24u);
  EXPECT_EQ(out.pointers(2).target().block(), 0u);
  EXPECT_EQ(out.pointers(2).target().offset(), 0u);
}

TEST(LibcVariadicTest, SscanfFillsOutBlocks) {
  void* sscanf_address = dlsym(RTLD_DEFAULT, "sscanf");
  ASSERT_NE(sscanf_address, nullptr);
  std::unique_ptr<PreparedFunction> f =
      Prepare(sscanf_address, Sig(T(v1::INT), {T(v1::CSTRING), T(v1::CSTRING)}, true));
  v1::Call call = MakeCall({BytesValue("42 hello 2.5"), BytesValue("%d %7s %lf"), BlockPointer(0),
                            BlockPointer(1), BlockPointer(2)});
  for (int i = 0; i < 3; ++i) *call.add_variadic_types() = PointerTo(T(v1::INT));
  for (uint64_t size : {4, 8, 8}) {
    v1::MemoryBlock* block = call.add_blocks();
    block->set_size(size);
    block->set_direction(v1::OUT);
  }
  absl::StatusOr<v1::CallResult> result = f->Invoke(call, kGeneration);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().int_value(), 3);
  int number = 0;
  std::memcpy(&number, result->blocks(0).data().data(), sizeof number);
  EXPECT_EQ(number, 42);
  EXPECT_EQ(std::string(result->blocks(1).data().c_str()), "hello");
  double real = 0;
  std::memcpy(&real, result->blocks(2).data().data(), sizeof real);
  EXPECT_EQ(real, 2.5);
}

TEST(LibcVariadicTest, SnprintfFormatsIntoAnOutBlock) {
  void* snprintf_address = dlsym(RTLD_DEFAULT, "snprintf");
  ASSERT_NE(snprintf_address, nullptr);
  std::unique_ptr<PreparedFunction> f = Prepare(
      snprintf_address, Sig(T(v1::INT), {T(v1::POINTER), T(v1::SIZE_T), T(v1::CSTRING)}, true));
  v1::Call call = MakeCall(
      {BlockPointer(0), UintValue(32), BytesValue("%s=%d"), BytesValue("x"), IntValue(-5)});
  *call.add_variadic_types() = T(v1::CSTRING);
  *call.add_variadic_types() = T(v1::INT);
  v1::MemoryBlock* block = call.add_blocks();
  block->set_size(32);
  block->set_direction(v1::OUT);
  absl::StatusOr<v1::CallResult> result = f->Invoke(call, kGeneration);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().int_value(), 4);
  EXPECT_EQ(std::string(result->blocks(0).data().c_str()), "x=-5");
}

TEST(TypedValuesTest, DecodeValueReadsScalarsAndReturnsRecordsRaw) {
  int32_t minus_two = -2;
  v1::Value value;
  ASSERT_TRUE(DecodeValue(T(v1::INT),
                          absl::string_view(reinterpret_cast<const char*>(&minus_two), 4),
                          kGeneration, &value)
                  .ok());
  EXPECT_EQ(value.int_value(), -2);
  TwoFloats tf{1, 2};
  value.Clear();
  ASSERT_TRUE(DecodeValue(kTwoFloats, RawOf(tf).raw(), kGeneration, &value).ok());
  EXPECT_EQ(value.raw(), RawOf(tf).raw());
  EXPECT_THAT(DecodeValue(T(v1::INT), "abc", kGeneration, &value), StatusIs(v1::INVALID_ARGUMENT));
}

TEST(TypedValuesTest, MarshalValueWithoutACallRefusesStringsAndBlocks) {
  alignas(16) unsigned char bytes[16] = {};
  MarshalContext context;
  context.generation = kGeneration;
  EXPECT_EQ(FieldOf(MarshalValue(T(v1::CSTRING), BytesValue("x"), context, bytes)), "");
  EXPECT_THAT(MarshalValue(T(v1::CSTRING), BytesValue("x"), context, bytes),
              StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(MarshalValue(T(v1::POINTER), BlockPointer(0), context, bytes)),
            "pointer.block");
  ASSERT_TRUE(
      MarshalValue(kTwoFloats, Aggregate({FloatValue(1), FloatValue(2)}), context, bytes).ok());
  TwoFloats back;
  std::memcpy(&back, bytes, sizeof back);
  EXPECT_EQ(back.x, 1);
  EXPECT_EQ(back.y, 2);
}

// Fills the stack below the caller with a pattern, so that bytes a later call leaves
// unwritten show up. Returns the pattern.
__attribute__((noinline)) unsigned char DirtyTheStack() {
  volatile unsigned char junk[4096];
  for (int i = 0; i < 4096; ++i) junk[i] = 0xAB;
  return junk[4095];
}

TEST(TypedValuesTest, LongDoublePaddingStaysZero) {
  // x86-64 keeps a long double's value in 10 of its 16 bytes; the other 6 are padding.
  const v1::Type two_fields =
      Struct({MakeField("x", T(v1::LONGDOUBLE)), MakeField("i", T(v1::INT))});
  for (const bool as_argument : {false, true}) {
    alignas(16) unsigned char bytes[32] = {};
    MarshalContext context;
    context.generation = kGeneration;
    ASSERT_EQ(DirtyTheStack(), 0xAB);
    absl::Status status =
        as_argument
            ? MarshalArgument(T(v1::LONGDOUBLE), FloatValue(1.5), context, bytes)
            : MarshalValue(two_fields, Aggregate({FloatValue(1.5), IntValue(7)}), context, bytes);
    ASSERT_OK(status);
    long double back = 0;
    std::memcpy(&back, bytes, 10);
    EXPECT_EQ(back, 1.5L);
    for (int i = 10; i < 16; ++i) EXPECT_EQ(bytes[i], 0) << "byte " << i << ", " << as_argument;
  }
}

}  // namespace
}  // namespace ffibox

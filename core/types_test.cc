#include "core/types.h"

#include <gtest/gtest.h>

#include "core/errors.h"
#include "core/test_types.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using testing::ArrayOf;
using testing::MakeField;
using testing::PointerTo;
using testing::ScalarType;
using testing::Struct;

const TypeLimits kLimits;

std::string FieldOf(const absl::Status& status) { return ToProtoError(status).field(); }

TEST(ValidateTypeTest, AcceptsEveryScalarButVoid) {
  for (int s = v1::BOOL; s <= v1::WSTRING; ++s) {
    EXPECT_TRUE(ValidateType(ScalarType(static_cast<v1::Scalar>(s)), kLimits, "t").ok()) << s;
  }
}

TEST(ValidateTypeTest, RefusesUnsetKindUnspecifiedUnknownAndVoid) {
  EXPECT_EQ(FieldOf(ValidateType(v1::Type(), kLimits, "t")), "t");
  EXPECT_THAT(ValidateType(ScalarType(v1::SCALAR_UNSPECIFIED), kLimits, "t"),
              StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(ValidateType(ScalarType(static_cast<v1::Scalar>(99)), kLimits, "t"),
              StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_EQ(FieldOf(ValidateType(PointerTo(ScalarType(v1::VOID)), kLimits, "t")),
            "t.pointer.pointee");
}

TEST(ValidateTypeTest, RegisteredTypesAreUnimplemented) {
  v1::Type type;
  type.set_registered(7);
  EXPECT_THAT(ValidateType(type, kLimits, "t"), StatusIs(v1::UNIMPLEMENTED));
}

TEST(ValidateTypeTest, RefusesNestingBeyondTheDepthLimit) {
  TypeLimits limits;
  limits.max_depth = 4;
  v1::Type type = ScalarType(v1::INT);
  for (int i = 0; i < 4; ++i) type = PointerTo(type);
  EXPECT_TRUE(ValidateType(type, limits, "t").ok());
  EXPECT_THAT(ValidateType(PointerTo(type), limits, "t"), StatusIs(v1::INVALID_ARGUMENT));
}

TEST(ValidateTypeTest, RefusesEmptyRecordsTooManyFieldsBadKindAndPack) {
  EXPECT_EQ(FieldOf(ValidateType(Struct({}), kLimits, "t")), "t.record.fields");
  TypeLimits limits;
  limits.max_fields = 2;
  v1::Field f = MakeField("a", ScalarType(v1::INT));
  EXPECT_TRUE(ValidateType(Struct({f, f}), limits, "t").ok());
  EXPECT_EQ(FieldOf(ValidateType(Struct({f, f, f}), limits, "t")), "t.record.fields");
  v1::Type no_kind = Struct({f});
  no_kind.mutable_record()->set_kind(v1::RecordType::KIND_UNSPECIFIED);
  EXPECT_EQ(FieldOf(ValidateType(no_kind, kLimits, "t")), "t.record.kind");
  EXPECT_EQ(FieldOf(ValidateType(Struct({f}, 3), kLimits, "t")), "t.record.pack");
  EXPECT_TRUE(ValidateType(Struct({f}, 16), kLimits, "t").ok());
}

TEST(ValidateTypeTest, RefusesArraysTooLongOrTooLargeWithoutOverflow) {
  EXPECT_EQ(FieldOf(ValidateType(ArrayOf(ScalarType(v1::CHAR), (1u << 28) + 1), kLimits, "t")),
            "t.array.length");
  // 2^28 * 2^28 * 8 bytes would overflow 64 bits if multiplied blindly.
  v1::Type huge = ArrayOf(ArrayOf(ScalarType(v1::DOUBLE), 1u << 28), 1u << 28);
  EXPECT_THAT(ValidateType(huge, kLimits, "t"), StatusIs(v1::INVALID_ARGUMENT));
  v1::Type big = ArrayOf(ScalarType(v1::DOUBLE), 1u << 28);  // 2 GiB > 1 GiB limit
  EXPECT_EQ(FieldOf(ValidateType(big, kLimits, "t")), "t.array");
  EXPECT_TRUE(ValidateType(ArrayOf(ScalarType(v1::INT), 1000), kLimits, "t").ok());
}

TEST(ValidateTypeTest, RefusesBadBitWidths) {
  auto with_width = [](v1::Scalar scalar, int width) {
    return ValidateType(Struct({MakeField("b", ScalarType(scalar), width)}), kLimits, "t");
  };
  EXPECT_TRUE(with_width(v1::INT, 0).ok());
  EXPECT_TRUE(with_width(v1::INT, 32).ok());
  EXPECT_TRUE(with_width(v1::BOOL, 1).ok());
  EXPECT_EQ(FieldOf(with_width(v1::INT, 33)), "t.record.fields[0].bit_width");
  EXPECT_EQ(FieldOf(with_width(v1::INT, -1)), "t.record.fields[0].bit_width");
  EXPECT_EQ(FieldOf(with_width(v1::DOUBLE, 3)), "t.record.fields[0].bit_width");
  EXPECT_EQ(FieldOf(with_width(v1::POINTER, 3)), "t.record.fields[0].bit_width");
  EXPECT_EQ(FieldOf(with_width(v1::BOOL, 2)), "t.record.fields[0].bit_width");
}

TEST(ValidateSignatureTest, VoidOnlyAsResultAndNoArrayResults) {
  v1::Signature sig;
  *sig.mutable_result() = ScalarType(v1::VOID);
  *sig.add_params() = ScalarType(v1::INT);
  EXPECT_TRUE(ValidateSignature(sig, kLimits, "signature").ok());
  *sig.add_params() = ScalarType(v1::VOID);
  EXPECT_EQ(FieldOf(ValidateSignature(sig, kLimits, "signature")), "signature.params[1]");
  v1::Signature array_result;
  *array_result.mutable_result() = ArrayOf(ScalarType(v1::INT), 4);
  EXPECT_EQ(FieldOf(ValidateSignature(array_result, kLimits, "signature")), "signature.result");
}

TEST(ValidateSignatureTest, ValidatesFunctionPointerSignaturesRecursively) {
  v1::Type callback;
  *callback.mutable_function()->add_params() = ScalarType(v1::VOID);
  v1::Signature sig;
  *sig.add_params() = callback;
  EXPECT_EQ(FieldOf(ValidateSignature(sig, kLimits, "signature")),
            "signature.params[0].function.params[0]");
}

TEST(ValidateSignatureTest, RefusesTooManyParameters) {
  TypeLimits limits;
  limits.max_args = 2;
  v1::Signature sig;
  for (int i = 0; i < 3; ++i) *sig.add_params() = ScalarType(v1::INT);
  EXPECT_EQ(FieldOf(ValidateSignature(sig, limits, "signature")), "signature.params");
}

TEST(ScalarInfoTest, MatchesTheCTypes) {
  EXPECT_EQ(GetScalarInfo(v1::LONGDOUBLE).size, sizeof(long double));
  EXPECT_EQ(GetScalarInfo(v1::LONGDOUBLE).alignment, alignof(long double));
  EXPECT_EQ(GetScalarInfo(v1::WCHAR).size, sizeof(wchar_t));
  EXPECT_EQ(GetScalarInfo(v1::CHAR).min, -128);
  EXPECT_EQ(GetScalarInfo(v1::UCHAR).max, 255u);
  EXPECT_EQ(GetScalarInfo(v1::ULONG).max, UINT64_MAX);
  EXPECT_FALSE(GetScalarInfo(v1::BOOL).is_integer);
}

}  // namespace
}  // namespace ffibox

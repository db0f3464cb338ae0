// The fixture of the integration tests of C data shapes: a real ffiboxd, a session with
// tests/testlibs/libffibox_test.so loaded, and the library's own declarations
// (tests/testlibs/shapes.h) described once for the C++ client.
#ifndef FFIBOX_TESTS_INTEGRATION_SHAPES_FIXTURE_H_
#define FFIBOX_TESTS_INTEGRATION_SHAPES_FIXTURE_H_

#include <cstdlib>
#include <string>

#include "client/cpp/ffibox_client.h"
#include "gtest/gtest.h"
#include "tests/support/session_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/testlibs/shapes.h"

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
namespace test_support {

// A bit field `name` of `scalar` and `width` bits, for record types built by hand.
inline v1::Field BitField(const char* name, v1::Scalar scalar, int width) {
  v1::Field field;
  field.set_name(name);
  field.mutable_type()->set_scalar(scalar);
  field.set_bit_width(width);
  return field;
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

}  // namespace test_support
}  // namespace ffibox

#endif  // FFIBOX_TESTS_INTEGRATION_SHAPES_FIXTURE_H_

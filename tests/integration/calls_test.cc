// Calls beyond fixed signatures through a real ffiboxd with the C++ client: variadic libc
// functions with C's default promotions, and errno captured after and set before a call.
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

using ::ffibox::testing::BlockPointer;
using ::ffibox::testing::BytesValue;
using ::ffibox::testing::FloatValue;
using ::ffibox::testing::IntValue;
using ::ffibox::testing::PointerTo;
using ::ffibox::testing::ScalarType;

using test_support::ShapesTest;

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

// dlopen's RTLD_GLOBAL (Session::Load's `global_symbols`): the user library calls a function
// of the provider without linking it, so it loads only once the provider was loaded so.
TEST_F(ShapesTest, ALibraryLoadedWithGlobalSymbolsServesTheOnesLoadedAfterIt) {
  const std::string provider =
      test_support::RunfilePath("tests/testlibs/libffibox_global_provider.so");
  const std::string user = test_support::RunfilePath("tests/testlibs/libffibox_global_user.so");
  ASSERT_OK(session_->Load(provider));
  EXPECT_THAT(session_->Load(user).status(), StatusIs(v1::LIBRARY_LOAD_FAILED));
  ASSERT_OK(session_->Load(provider, /*global_symbols=*/true));
  ASSERT_OK_AND_ASSIGN(Library loaded, session_->Load(user));
  ASSERT_OK_AND_ASSIGN(auto ask, loaded.Function<int()>("ask_global_answer"));
  ASSERT_OK_AND_ASSIGN(int answer, ask());
  EXPECT_EQ(answer, 42);
}

// C enums are integers of their size: an enum parameter or result is its underlying type, any
// value of it; a variadic enum argument promotes as that type does.
enum Sign { kNegative = -1, kZero = 0, kPositive = 1 };
enum class Small : unsigned char { kSeven = 7 };

TEST_F(ShapesTest, EnumsAreTheirUnderlyingIntegers) {
  ASSERT_OK_AND_ASSIGN(Library lib, session_->Load(test_support::TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<Sign(Sign, int)>("add_int"));
  EXPECT_EQ(add(kPositive, -2).value_or(kZero), kNegative);
  EXPECT_EQ(add(kNegative, -41).value_or(kZero), static_cast<Sign>(-42));
  ASSERT_OK_AND_ASSIGN(auto add_small, lib.Function<Small(Small, unsigned char)>("add_uchar"));
  EXPECT_EQ(add_small(Small::kSeven, 250).value_or(Small::kSeven), static_cast<Small>(1));
  ASSERT_OK_AND_ASSIGN(auto sum, lib.Function<int(int, ...)>("sum_variadic"));
  EXPECT_EQ(sum(3, kNegative, Small::kSeven, kPositive).value_or(-99), 7);
  ASSERT_OK_AND_ASSIGN(auto divmod, lib.Function<int(int, int, Sign*, Sign&)>("divmod"));
  Sign quotient = kZero;
  Sign remainder = kZero;
  EXPECT_EQ(divmod(-7, 2, &quotient, remainder).value_or(-99), 0);
  EXPECT_EQ(quotient, static_cast<Sign>(-3));
  EXPECT_EQ(remainder, kNegative);
}

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

}  // namespace
}  // namespace ffibox

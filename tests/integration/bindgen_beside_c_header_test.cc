// A file that includes both the library's C header and the header `ffibox bindgen --lang=cpp`
// printed for it (tests/integration/BUILD's zlib genrule) compiles: the C header's macros
// stand for the constants bound under the same names, and an accessor whose name is also a
// function-like macro of the C header (zlib.h's gzgetc) is declared and reached in
// parentheses, where the macro does not expand.
#include <zlib.h>

#include <cstring>
#include <type_traits>

#include "gtest/gtest.h"
#include "tests/integration/zlib_bindings.h"

namespace ffibox {
namespace {

TEST(BindgenBesideCHeaderTest, MacrosStandForTheConstantsAndAccessorsStayReachable) {
  EXPECT_EQ(Z_OK, 0);
  EXPECT_STREQ(ZLIB_VERSION, zlibVersion());  // the C header's, and the library it links
  EXPECT_STREQ(zlib::kLibrary, "libz.so.1");
  static_assert(std::is_invocable_v<decltype(&(zlib::gzgetc)), const Library&>);
  static_assert(std::is_invocable_v<decltype(&(zlib::compress)), const Library&>);
}

}  // namespace
}  // namespace ffibox

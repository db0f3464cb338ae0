#include "client/cli/bindgen_command.h"

#include <string>
#include <vector>

#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseBindgenArgumentsTest, ReadsLanguageLibraryHeadersIncludesAndDefines) {
  ASSERT_OK_AND_ASSIGN(
      BindgenRequest request,
      ParseBindgenArguments({"--lang=python", "--library=libz.so.1", "zlib.h", "-I", "/opt/inc",
                             "-I/usr/local/include", "-D", "ZLIB_CONST", "-DLEVEL=3", "zconf.h"}));
  EXPECT_EQ(request.language, BindingLanguage::kPython);
  EXPECT_EQ(request.library, "libz.so.1");
  EXPECT_THAT(request.parse.headers, ElementsAre("zlib.h", "zconf.h"));
  EXPECT_THAT(request.parse.include_dirs, ElementsAre("/opt/inc", "/usr/local/include"));
  EXPECT_THAT(request.parse.defines, ElementsAre("ZLIB_CONST", "LEVEL=3"));
}

TEST(ParseBindgenArgumentsTest, CppGetsADefaultNamespace) {
  ASSERT_OK_AND_ASSIGN(BindgenRequest request,
                       ParseBindgenArguments({"--lang=cpp", "--library=libz.so.1", "zlib.h"}));
  EXPECT_EQ(request.language, BindingLanguage::kCpp);
  EXPECT_EQ(request.cpp_namespace, "bindings");
}

TEST(ParseBindgenArgumentsTest, BadCommandLinesAreInvalidArguments) {
  const std::vector<std::vector<std::string>> bad = {
      {"--lang=rust", "--library=libz.so.1", "zlib.h"},
      {"--library=libz.so.1", "zlib.h"},
      {"--lang=python", "zlib.h"},
      {"--lang=python", "--library=libz.so.1"},
      {"--lang=python", "--library=libz.so.1", "zlib.h", "-I"},
      {"--lang=python", "--library=libz.so.1", "zlib.h", "--verbose"},
  };
  for (const std::vector<std::string>& words : bad) {
    EXPECT_THAT(ParseBindgenArguments(words), StatusIs(v1::INVALID_ARGUMENT)) << words[0];
  }
  EXPECT_THAT(ParseBindgenArguments({"--lang=rust", "--library=x", "a.h"}).status().message(),
              HasSubstr("unknown --lang=rust"));
}

}  // namespace
}  // namespace cli
}  // namespace ffibox

// Test headers for the bindgen tests: written to a fresh directory and parsed.
#ifndef FFIBOX_CLIENT_CLI_HEADER_TESTING_H_
#define FFIBOX_CLIENT_CLI_HEADER_TESTING_H_

#include <stdlib.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli/header_parser.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace cli {

// Writes `text` as header `name` in a fresh directory under $TEST_TMPDIR; returns its path.
inline std::string WriteTestHeader(const std::string& name, const std::string& text) {
  std::string dir = std::string(getenv("TEST_TMPDIR")) + "/headersXXXXXX";
  EXPECT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// Parses `text` as the header api.h, with the -D macros `defines`.
inline absl::StatusOr<HeaderModel> ParseTestHeader(const std::string& text,
                                                   std::vector<std::string> defines = {}) {
  HeaderParseOptions options;
  options.headers.push_back(WriteTestHeader("api.h", text));
  options.defines = std::move(defines);
  return ParseHeaders(options);
}

}  // namespace cli
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CLI_HEADER_TESTING_H_

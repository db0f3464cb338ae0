#include "client/cli/bindgen_command.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cli/cpp_bindings.h"
#include "client/cli/python_bindings.h"
#include "core/status_macros.h"

namespace ffibox {
namespace cli {

const char kBindgenUsage[] =
    "usage: ffibox bindgen --lang=python|cpp --library=LIB [--namespace=NS] HEADER... "
    "[-I DIR] [-D NAME[=VALUE]]\n";

namespace {

// The value of an option given as `--name=value`, `-Xvalue` or `-X value` (advancing `i`).
absl::StatusOr<std::string> OptionValue(const std::vector<std::string>& words, size_t& i,
                                        const std::string& prefix) {
  const std::string& word = words[i];
  if (word.size() > prefix.size()) return word.substr(prefix.size());
  if (i + 1 >= words.size()) {
    return absl::InvalidArgumentError(absl::StrCat("option ", word, " needs a value"));
  }
  return words[++i];
}

}  // namespace

absl::StatusOr<BindgenRequest> ParseBindgenArguments(const std::vector<std::string>& words) {
  BindgenRequest request;
  bool have_language = false;
  for (size_t i = 0; i < words.size(); ++i) {
    const std::string& word = words[i];
    if (absl::StartsWith(word, "--lang=")) {
      const std::string language = word.substr(7);
      if (language == "python") {
        request.language = BindingLanguage::kPython;
      } else if (language == "cpp") {
        request.language = BindingLanguage::kCpp;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown --lang=", language, ": python or cpp"));
      }
      have_language = true;
    } else if (absl::StartsWith(word, "--library=")) {
      request.library = word.substr(10);
    } else if (absl::StartsWith(word, "--namespace=")) {
      request.cpp_namespace = word.substr(12);
    } else if (absl::StartsWith(word, "-I")) {
      FFIBOX_ASSIGN_OR_RETURN(std::string dir, OptionValue(words, i, "-I"));
      request.parse.include_dirs.push_back(dir);
    } else if (absl::StartsWith(word, "-D")) {
      FFIBOX_ASSIGN_OR_RETURN(std::string define, OptionValue(words, i, "-D"));
      request.parse.defines.push_back(define);
    } else if (absl::StartsWith(word, "-")) {
      return absl::InvalidArgumentError(absl::StrCat("unknown option ", word));
    } else {
      request.parse.headers.push_back(word);
    }
  }
  if (!have_language) return absl::InvalidArgumentError("--lang=python or --lang=cpp is needed");
  if (request.library.empty()) {
    return absl::InvalidArgumentError("--library=LIB is needed: the library the bindings load");
  }
  if (request.parse.headers.empty()) return absl::InvalidArgumentError("no header given");
  if (request.language == BindingLanguage::kCpp && request.cpp_namespace.empty()) {
    request.cpp_namespace = "bindings";
  }
  return request;
}

absl::StatusOr<std::string> GenerateBindings(const BindgenRequest& request) {
  FFIBOX_ASSIGN_OR_RETURN(HeaderModel model, ParseHeaders(request.parse));
  if (request.language == BindingLanguage::kCpp) {
    return CppBindings(model, request.library, request.cpp_namespace);
  }
  return PythonBindings(model, request.library);
}

}  // namespace cli
}  // namespace ffibox

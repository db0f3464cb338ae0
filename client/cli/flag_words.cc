#include "client/cli/flag_words.h"

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "core/errors.h"

namespace ffibox {
namespace cli {

absl::Status CheckFlagWords(const std::vector<std::string>& words) {
  for (const std::string& word : words) {
    if (word == "--") break;
    absl::string_view text = word;
    if (!absl::ConsumePrefix(&text, "--") && !absl::ConsumePrefix(&text, "-")) {
      return ErrorStatus(v1::INVALID_ARGUMENT, absl::StrCat("'", word, "' is not a flag"));
    }
    absl::string_view name = text;
    absl::string_view value;
    const size_t equals = text.find('=');
    const bool has_value = equals != absl::string_view::npos;
    if (has_value) {
      name = text.substr(0, equals);
      value = text.substr(equals + 1);
    }
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      // --noname turns a bool flag off.
      absl::CommandLineFlag* negated = absl::FindCommandLineFlag(name.substr(2));
      if (negated != nullptr && !negated->IsRetired() && negated->IsOfType<bool>()) continue;
    }
    if (flag == nullptr || flag->IsRetired()) {
      return ErrorStatus(v1::INVALID_ARGUMENT, absl::StrCat("unknown flag '", word, "'"));
    }
    if (!has_value) {
      if (flag->IsOfType<bool>()) continue;
      return ErrorStatus(v1::INVALID_ARGUMENT,
                         absl::StrCat("flag '", word, "' needs a value: --", name, "=VALUE"));
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return ErrorStatus(v1::INVALID_ARGUMENT,
                         absl::StrCat("flag '", word, "': ", error.empty() ? "bad value" : error));
    }
  }
  return absl::OkStatus();
}

}  // namespace cli
}  // namespace ffibox

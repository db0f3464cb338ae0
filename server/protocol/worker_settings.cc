#include "server/protocol/worker_settings.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/message.h"
#include "google/protobuf/unknown_field_set.h"

namespace ffibox {
namespace {

constexpr absl::string_view kSettingsFlag = "--settings=";

bool HasUnknownFields(const google::protobuf::Message& message) {
  return !message.GetReflection()->GetUnknownFields(message).empty();
}

}  // namespace

std::string WorkerSettingsArgument(const internal::WorkerSettings& settings) {
  return absl::StrCat(kSettingsFlag, absl::WebSafeBase64Escape(settings.SerializeAsString()));
}

absl::StatusOr<internal::WorkerSettings> ParseWorkerSettings(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, kSettingsFlag)) continue;
    std::string bytes;
    internal::WorkerSettings settings;
    if (!absl::WebSafeBase64Unescape(arg, &bytes) || !settings.ParseFromString(bytes)) {
      return absl::InvalidArgumentError("--settings does not hold a WorkerSettings message");
    }
    if (HasUnknownFields(settings) || HasUnknownFields(settings.jail())) {
      return absl::InvalidArgumentError(
          "--settings holds fields this worker does not know (is it older than the broker?)");
    }
    if (settings.has_jail() && settings.jail().seccomp_policy().empty()) {
      return absl::InvalidArgumentError("--settings has a jail without a seccomp policy");
    }
    return settings;
  }
  return absl::InvalidArgumentError("no --settings argument");
}

}  // namespace ffibox

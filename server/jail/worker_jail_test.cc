// What the broker tells a worker to apply for its jail, and the seccomp policies' names.
#include "server/jail/worker_jail.h"

#include <string>
#include <vector>

#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "server/jail/seccomp_policy.h"
#include "server/protocol/worker_settings.h"

namespace ffibox {
namespace {

TEST(WorkerJailFor, CarriesEverySettingThroughTheWorkersArgument) {
  JailOptions options;
  options.seccomp_policy = "permissive";
  options.extra_syscalls = {"socket", "bind"};
  options.address_space_bytes = 1 << 30;
  options.cpu_seconds = 7;
  options.open_files = 64;
  options.processes = 32;
  options.file_bytes = 4096;
  internal::WorkerSettings settings;
  settings.set_max_callback_depth(9);
  *settings.mutable_jail() = WorkerJailFor(options);

  std::vector<std::string> args = {"ffibox-worker", WorkerSettingsArgument(settings)};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  absl::StatusOr<internal::WorkerSettings> parsed =
      ParseWorkerSettings(static_cast<int>(argv.size()), argv.data());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->max_callback_depth(), 9u);
  const internal::WorkerJail& jail = parsed->jail();
  EXPECT_EQ(jail.seccomp_policy(), "permissive");
  EXPECT_EQ(std::vector<std::string>(jail.extra_syscalls().begin(), jail.extra_syscalls().end()),
            (std::vector<std::string>{"socket", "bind"}));
  EXPECT_EQ(jail.address_space_bytes(), 1u << 30);
  EXPECT_EQ(jail.cpu_seconds(), 7u);
  EXPECT_EQ(jail.open_files(), 64u);
  EXPECT_EQ(jail.processes(), 32u);
  EXPECT_EQ(jail.file_bytes(), 4096u);
  EXPECT_FALSE(jail.self_test());
  EXPECT_TRUE(WorkerJailFor(options, /*self_test=*/true).self_test());
}

TEST(ParseWorkerSettings, MissingOrMalformedSettingsAreRefused) {
  for (std::string bad : {std::string("--generation=3"), std::string("--settings=!!notbase64"),
                          std::string("--settings=AAAA")}) {
    std::vector<std::string> args = {"ffibox-worker", bad};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    EXPECT_EQ(ParseWorkerSettings(2, argv.data()).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

// A worker refuses settings it cannot honour whole: a field it does not know (a newer
// broker's restriction) or a jail without a seccomp policy.
TEST(ParseWorkerSettings, UnknownFieldsAndAJailWithoutPolicyAreRefused) {
  internal::WorkerSettings settings;
  *settings.mutable_jail() = WorkerJailFor(JailOptions());
  internal::WorkerSettings unknown = settings;
  unknown.mutable_jail()
      ->GetReflection()
      ->MutableUnknownFields(unknown.mutable_jail())
      ->AddVarint(1000, 1);
  internal::WorkerSettings unknown_top = settings;
  unknown_top.GetReflection()->MutableUnknownFields(&unknown_top)->AddVarint(1000, 1);
  internal::WorkerSettings no_policy = settings;
  no_policy.mutable_jail()->clear_seccomp_policy();
  for (const internal::WorkerSettings& bad : {unknown, unknown_top, no_policy}) {
    std::vector<std::string> args = {"ffibox-worker", WorkerSettingsArgument(bad)};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    EXPECT_EQ(ParseWorkerSettings(2, argv.data()).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad.DebugString();
  }
  std::vector<std::string> args = {"ffibox-worker", WorkerSettingsArgument(settings)};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  EXPECT_TRUE(ParseWorkerSettings(2, argv.data()).ok());
}

TEST(SeccompPolicy, ValidatesPolicyAndSyscallNames) {
  EXPECT_TRUE(ValidateSeccompPolicy("strict", {}).ok());
  EXPECT_TRUE(ValidateSeccompPolicy("permissive", {"socket", "execve"}).ok());
  EXPECT_FALSE(ValidateSeccompPolicy("lenient", {}).ok());
  absl::Status bad = ValidateSeccompPolicy("strict", {"frobnicate"});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("frobnicate"), std::string::npos);
}

}  // namespace
}  // namespace ffibox

// The worker's jail flags round-trip, and the seccomp policies validate their names.
#include "server/jail/worker_jail.h"

#include <vector>

#include "gtest/gtest.h"
#include "server/jail/seccomp_policy.h"

namespace ffibox {
namespace {

WorkerJail Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "ffibox-worker");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  absl::StatusOr<WorkerJail> jail =
      ParseWorkerJailFlags(static_cast<int>(argv.size()), argv.data());
  EXPECT_TRUE(jail.ok()) << jail.status();
  return jail.ok() ? *jail : WorkerJail{};
}

TEST(WorkerJailFlags, RoundTripEverySetting) {
  JailOptions options;
  options.seccomp_policy = "permissive";
  options.extra_syscalls = {"socket", "bind"};
  options.address_space_bytes = 1 << 30;
  options.cpu_seconds = 7;
  options.open_files = 64;
  options.processes = 32;
  options.file_bytes = 4096;
  WorkerJail jail = Parse(WorkerJailFlags(options));
  EXPECT_TRUE(jail.seccomp);
  EXPECT_EQ(jail.seccomp_policy, "permissive");
  EXPECT_EQ(jail.extra_syscalls, (std::vector<std::string>{"socket", "bind"}));
  EXPECT_EQ(jail.address_space_bytes, 1u << 30);
  EXPECT_EQ(jail.cpu_seconds, 7u);
  EXPECT_EQ(jail.open_files, 64u);
  EXPECT_EQ(jail.processes, 32u);
  EXPECT_EQ(jail.file_bytes, 4096u);
  EXPECT_FALSE(jail.self_test);
}

TEST(WorkerJailFlags, DisabledJailPassesNoFlagsAndOtherFlagsAreIgnored) {
  JailOptions options;
  options.enabled = false;
  EXPECT_TRUE(WorkerJailFlags(options).empty());
  WorkerJail jail = Parse({"--generation=3"});
  EXPECT_FALSE(jail.seccomp);
}

TEST(WorkerJailFlags, MalformedFlagsAreRefused) {
  for (std::string bad : {"--jail_rlimits=as:lots", "--jail_rlimits=stack:1", "--jail_unknown=1"}) {
    std::vector<std::string> args = {"ffibox-worker", bad};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    EXPECT_FALSE(ParseWorkerJailFlags(2, argv.data()).ok()) << bad;
  }
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

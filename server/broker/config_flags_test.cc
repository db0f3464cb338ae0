#include "server/broker/config_flags.h"

#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using config::v1::ServerConfig;

// Parses `arguments` as ffiboxd's command line would be, then applies them to `config`.
absl::Status Apply(std::vector<std::string> arguments, ServerConfig* config) {
  std::vector<char*> argv;
  std::string program = "ffiboxd";
  argv.push_back(program.data());
  for (std::string& argument : arguments) argv.push_back(argument.data());
  absl::ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  return ApplyFlags(arguments, config);
}

TEST(ConfigFlags, FlagsNotGivenLeaveTheFileAsItIs) {
  ServerConfig config;
  config.add_allowed_library_roots("/opt/from-file");
  config.mutable_limits()->set_max_sessions(7);
  config.mutable_worker_pool()->set_size(5);
  ASSERT_OK(Apply({}, &config));
  EXPECT_EQ(config.allowed_library_roots_size(), 1);
  EXPECT_EQ(config.limits().max_sessions(), 7u);
  EXPECT_EQ(config.worker_pool().size(), 5u);
  EXPECT_FALSE(config.limits().has_session_memory_bytes());
}

TEST(ConfigFlags, GivenFlagsOverrideAndListFlagsAddEveryOccurrence) {
  ServerConfig config;
  config.add_allowed_library_roots("/opt/from-file");
  ASSERT_OK(Apply(
      {"--max_sessions=9", "--session_memory_bytes=0", "--pool_size=0", "--max_batch_calls=64",
       "--max_session_signature_bytes=1048576", "--allow_root=/opt/a,/opt/b", "--allow_root",
       "/opt/c", "--waive_jail_layer=cgroup", "--listen=unix:/tmp/x/ffiboxd.sock", "--nojail"},
      &config));
  EXPECT_EQ(config.limits().max_sessions(), 9u);
  EXPECT_EQ(config.limits().max_batch_calls(), 64u);
  EXPECT_EQ(config.limits().max_session_signature_bytes(), 1048576u);
  // 0 is "no cap" for the caps, given on the command line.
  EXPECT_TRUE(config.limits().has_session_memory_bytes());
  EXPECT_EQ(config.limits().session_memory_bytes(), 0u);
  EXPECT_EQ(config.worker_pool().size(), 0u);
  ASSERT_EQ(config.allowed_library_roots_size(), 4);
  EXPECT_EQ(config.allowed_library_roots(1), "/opt/a");
  EXPECT_EQ(config.allowed_library_roots(2), "/opt/b");
  EXPECT_EQ(config.allowed_library_roots(3), "/opt/c");
  ASSERT_EQ(config.jail().waive_layers_size(), 1);
  EXPECT_EQ(config.jail().waive_layers(0), "cgroup");
  ASSERT_EQ(config.listeners_size(), 1);
  EXPECT_EQ(config.listeners(0).unix_path(), "/tmp/x/ffiboxd.sock");
  EXPECT_FALSE(config.jail().enabled());
}

TEST(ConfigFlags, MetricsListenSetsTheFilesMetricsAddress) {
  ServerConfig config;
  config.mutable_metrics()->set_listen("127.0.0.1:1");
  ASSERT_OK(Apply({}, &config));
  EXPECT_EQ(config.metrics().listen(), "127.0.0.1:1") << "not given: the file's stays";
  ASSERT_OK(Apply({"--metrics_listen=[::1]:9464"}, &config));
  EXPECT_EQ(config.metrics().listen(), "[::1]:9464");
}

TEST(ConfigFlags, ANegativeZeroOrTooLargeValueIsRefusedNamingTheFlag) {
  ServerConfig config;
  absl::Status negative = Apply({"--max_sessions=-1"}, &config);
  EXPECT_EQ(negative.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(negative.message(), "--max_sessions must not be negative");
  absl::Status zero = Apply({"--call_timeout_ms=0"}, &config);
  EXPECT_EQ(zero.message(), "--call_timeout_ms must be positive");
  absl::Status large = Apply({"--max_sessions=4294967296"}, &config);
  EXPECT_EQ(large.message(), "--max_sessions is too large");
}

}  // namespace
}  // namespace ffibox

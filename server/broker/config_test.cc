#include "server/broker/config.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

constexpr char kDefaultAddress[] = "unix:/tmp/ffibox-config-test/ffiboxd.sock";

absl::StatusOr<ServerSettings> Resolve(const std::string& text) {
  absl::StatusOr<config::v1::ServerConfig> config = ParseServerConfig(text, "test.conf");
  if (!config.ok()) return config.status();
  return ResolveServerConfig(*config, kDefaultAddress, "/nonexistent/ffibox-worker");
}

// Expects `text` to be refused with a message that starts with `field`.
void ExpectRefused(const std::string& text, const std::string& field) {
  absl::StatusOr<ServerSettings> settings = Resolve(text);
  ASSERT_FALSE(settings.ok()) << text;
  EXPECT_EQ(settings.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(settings.status().message().substr(0, field.size()), field)
      << settings.status().message();
}

std::string TempFile(const std::string& name, const std::string& contents) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
  std::ofstream(path) << contents;
  return path;
}

TEST(ServerConfig, CapsCanBeTurnedOffExplicitly) {
  absl::StatusOr<ServerSettings> settings =
      Resolve("limits { session_memory_bytes: 0 session_cpu_seconds: 0 idle_cpu_percent: 0 }");
  ASSERT_OK(settings);
  EXPECT_EQ(settings->session.jail.address_space_bytes, 0u);
  EXPECT_EQ(settings->session.jail.cpu_seconds, 0u);
  EXPECT_EQ(settings->session.jail.idle_cpu_percent, 0u);
  EXPECT_FALSE(Resolve("limits { idle_cpu_percent: 101 }").ok());
  EXPECT_FALSE(Resolve("limits { worker_pids_max: 3 }").ok());
}

TEST(ServerConfig, EmptyConfigGivesTheDocumentedDefaults) {
  absl::StatusOr<ServerSettings> settings = Resolve("");
  ASSERT_OK(settings);
  ASSERT_EQ(settings->listeners.size(), 1u);
  EXPECT_EQ(settings->listeners[0].address, kDefaultAddress);
  EXPECT_TRUE(settings->listeners[0].unix_socket);
  EXPECT_EQ(settings->session.default_call_timeout, absl::Seconds(30));
  EXPECT_EQ(settings->session.max_message_bytes, 16u << 20);
  EXPECT_EQ(settings->session.max_callbacks, 4096u);
  EXPECT_EQ(settings->session.max_callback_depth, 64);
  EXPECT_EQ(settings->session.type_limits.max_batch_calls, 4096u);
  EXPECT_EQ(settings->session.max_signature_bytes, 16u << 20);
  EXPECT_EQ(settings->access.max_sessions, 256u);
  EXPECT_EQ(settings->pool_size, 2u);
  EXPECT_TRUE(settings->session.jail.enabled);
  EXPECT_EQ(settings->session.jail.seccomp_policy, "strict");
  // Limits by default: 4 GiB and an hour of CPU per worker, 256 threads and processes,
  // a tenth of a CPU while idle, half the machine for all workers together.
  EXPECT_EQ(settings->session.jail.address_space_bytes, 4ull << 30);
  EXPECT_EQ(settings->session.jail.cpu_seconds, 3600u);
  EXPECT_EQ(settings->session.jail.worker_pids_max, 256u);
  EXPECT_EQ(settings->session.jail.idle_cpu_percent, 10u);
  EXPECT_GT(settings->session.jail.total_worker_memory_bytes, 0u);
  EXPECT_TRUE(settings->session.jail.cgroup);
  ASSERT_EQ(settings->access.identities.size(), 1u);
  EXPECT_EQ(settings->access.identities[0].name, "local");
  EXPECT_EQ(settings->access.identities[0].max_sessions, 64u);
  EXPECT_TRUE(settings->access.allowlists.contains("local"));
  // The allowed roots are not shown to workers (libraries arrive as descriptors), and no
  // layer is waived unless the operator says so.
  EXPECT_TRUE(settings->session.jail.visible_paths.empty());
  EXPECT_TRUE(settings->jail_waivers.empty());
}

TEST(ServerConfig, WaiversAndVisiblePathsAreChecked) {
  absl::StatusOr<ServerSettings> settings =
      Resolve(R"(jail { waive_layers: "filesystem" visible_paths: "/usr/share" })");
  ASSERT_OK(settings);
  EXPECT_EQ(settings->jail_waivers, std::vector<std::string>{"filesystem"});
  EXPECT_EQ(settings->session.jail.visible_paths, std::vector<std::string>{"/usr/share"});
  ExpectRefused(R"(jail { waive_layers: "everything" })", "jail.waive_layers[0]");
  ExpectRefused(R"(jail { visible_paths: "/" })", "jail.visible_paths[0]");
  ExpectRefused(R"(jail { visible_paths: "relative" })", "jail.visible_paths[0]");
  ExpectRefused(R"(jail { env_allow: "A=B" })", "jail.env_allow[0]");
  absl::StatusOr<ServerSettings> env = Resolve(R"(jail { env_allow: "SDL_*" })");
  ASSERT_OK(env);
  EXPECT_EQ(env->session.env_allow, std::vector<std::string>{"SDL_*"});
}

TEST(ServerConfig, FieldsAreApplied) {
  absl::StatusOr<ServerSettings> settings = Resolve(R"(
    limits { max_sessions: 3 max_message_bytes: 4096 call_timeout_ms: 100
             session_memory_bytes: 268435456 session_cpu_seconds: 2 max_block_bytes: 1000
             max_batch_calls: 16 max_session_signature_bytes: 65536 }
    jail { enabled: false policy: "permissive" extra_syscalls: "sched_yield" tmp_bytes: 1 }
    worker_pool { size: 0 }
    identities { name: "ci" bearer_token: "0123456789abcdef0123" max_sessions: 1
                 allowed_library_roots: "/usr/lib" }
  )");
  ASSERT_OK(settings);
  EXPECT_EQ(settings->access.max_sessions, 3u);
  EXPECT_EQ(settings->session.max_message_bytes, 4096u);
  EXPECT_EQ(settings->session.default_call_timeout, absl::Milliseconds(100));
  EXPECT_EQ(settings->session.jail.address_space_bytes, 268435456u);
  EXPECT_EQ(settings->session.jail.cpu_seconds, 2u);
  EXPECT_EQ(settings->session.type_limits.max_block_bytes, 1000u);
  EXPECT_EQ(settings->session.type_limits.max_batch_calls, 16u);
  EXPECT_EQ(settings->session.max_signature_bytes, 65536u);
  EXPECT_FALSE(settings->session.jail.enabled);
  EXPECT_EQ(settings->session.jail.seccomp_policy, "permissive");
  EXPECT_EQ(settings->pool_size, 0u);
  ASSERT_EQ(settings->access.identities.size(), 2u);  // ci and the implicit local
  EXPECT_EQ(settings->access.identities[0].name, "ci");
  EXPECT_EQ(settings->access.identities[0].max_sessions, 1u);
  EXPECT_EQ(settings->access.allowlists.at("ci")->roots().size(), 1u);
}

TEST(ServerConfig, MetricsAreOffUnlessAListenAddressIsGiven) {
  ASSERT_OK_AND_ASSIGN(ServerSettings none, Resolve(""));
  EXPECT_EQ(none.metrics_listen, "");
  ASSERT_OK_AND_ASSIGN(ServerSettings on, Resolve("metrics { listen: \"127.0.0.1:9464\" }"));
  EXPECT_EQ(on.metrics_listen, "127.0.0.1:9464");
}

TEST(ServerConfig, TokenFileIsRead) {
  std::string path = TempFile("token", "  file-token-0123456789\n");
  absl::StatusOr<ServerSettings> settings =
      Resolve("identities { name: \"f\" token_file: \"" + path + "\" }");
  ASSERT_OK(settings);
  EXPECT_EQ(settings->access.identities[0].bearer_token, "file-token-0123456789");
}

TEST(ServerConfig, SyntaxErrorNamesFileLineAndColumn) {
  absl::StatusOr<ServerSettings> settings = Resolve("limits {\n  max_sesions: 3\n}");
  ASSERT_FALSE(settings.ok());
  EXPECT_NE(settings.status().message().find("test.conf:2:"), std::string::npos)
      << settings.status().message();
  EXPECT_NE(settings.status().message().find("max_sesions"), std::string::npos);
}

TEST(ServerConfig, BadValuesNameTheirField) {
  ExpectRefused("limits { max_message_bytes: 10 }", "limits.max_message_bytes");
  ExpectRefused("limits { call_timeout_ms: 5000 max_call_timeout_ms: 10 }",
                "limits.call_timeout_ms");
  ExpectRefused("limits { max_callback_depth: 5000 }", "limits.max_callback_depth");
  ExpectRefused("limits { max_batch_calls: 2000000 }", "limits.max_batch_calls");
  ExpectRefused("limits { max_session_signature_bytes: 1000 }",
                "limits.max_session_signature_bytes");
  ExpectRefused("limits { session_memory_bytes: 1000 }", "limits.session_memory_bytes");
  ExpectRefused("jail { policy: \"lax\" }", "jail.policy");
  ExpectRefused("jail { extra_syscalls: \"rm -rf\" }", "jail.extra_syscalls[0]");
  ExpectRefused("allowed_library_roots: \"relative\"", "allowed_library_roots[0]");
  ExpectRefused("identities { name: \"a\" }", "identities[0]");
  ExpectRefused("identities { name: \"a\" bearer_token: \"short\" }", "identities[0].bearer_token");
  ExpectRefused("identities { name: \"a b\" bearer_token: \"0123456789abcdef\" }",
                "identities[0].name");
  ExpectRefused(
      "identities { name: \"a\" bearer_token: \"0123456789abcdef\" }"
      "identities { name: \"a\" bearer_token: \"0123456789abcdeX\" }",
      "identities[1].name");
  ExpectRefused(
      "identities { name: \"a\" bearer_token: \"0123456789abcdef\" }"
      "identities { name: \"b\" bearer_token: \"0123456789abcdef\" }",
      "identities[1].bearer_token");
  ExpectRefused("identities { name: \"a\" token_file: \"/nonexistent/token\" }",
                "identities[0].token_file");
  ExpectRefused(
      "identities { name: \"a\" bearer_token: \"0123456789abcdef\" "
      "allowed_library_roots: \"/nonexistent/dir\" }",
      "identities[0].allowed_library_roots[0]");
  ExpectRefused("worker_pool { size: 100000 }", "worker_pool.size");
  ExpectRefused("listeners { unix_path: \"relative.sock\" }", "listeners[0].unix_path");
  ExpectRefused("listeners { }", "listeners[0]");
}

TEST(ServerConfig, TcpListenerWithoutTlsIsRefused) {
  absl::StatusOr<ServerSettings> settings = Resolve("listeners { tcp_address: \"127.0.0.1:0\" }");
  ASSERT_FALSE(settings.ok());
  EXPECT_NE(settings.status().message().find("needs TLS"), std::string::npos)
      << settings.status().message();
  ExpectRefused(
      "listeners { tcp_address: \"127.0.0.1:0\" tls { cert_file: \"/nonexistent/c.pem\" "
      "key_file: \"/nonexistent/k.pem\" } }",
      "listeners[0].tls.cert_file");
}

TEST(ServerConfig, TcpAddressMustBeHostAndPort) {
  const std::string tls =
      " tls { cert_file: \"/nonexistent/c.pem\" key_file: \"/nonexistent/k.pem\" } }";
  // gRPC would bind 99999 as port 34463, and a unix: target as a socket of its own.
  for (const char* address : {"127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:", "127.0.0.1", ":7000",
                              "unix:/tmp/ffibox-config-test/tcp.sock", "ipv4:127.0.0.1:7000",
                              "dns:///ffibox.example:7000"}) {
    ExpectRefused(absl::StrCat("listeners { tcp_address: \"", address, "\"", tls),
                  "listeners[0].tcp_address");
  }
  // Well-formed addresses get as far as reading the TLS files.
  for (const char* address : {"127.0.0.1:0", "0.0.0.0:65535", "[::1]:7000", "localhost:7000"}) {
    ExpectRefused(absl::StrCat("listeners { tcp_address: \"", address, "\"", tls),
                  "listeners[0].tls.cert_file");
  }
}

TEST(ServerConfig, TlsFilesAreRead) {
  std::string cert = TempFile("cert.pem", "CERT");
  std::string key = TempFile("key.pem", "KEY");
  std::string ca = TempFile("ca.pem", "CA");
  absl::StatusOr<ServerSettings> settings =
      Resolve("listeners { tcp_address: \"127.0.0.1:0\" tls { cert_file: \"" + cert +
              "\" key_file: \"" + key + "\" client_ca_file: \"" + ca + "\" } }");
  ASSERT_OK(settings);
  ASSERT_EQ(settings->listeners.size(), 1u);
  EXPECT_FALSE(settings->listeners[0].unix_socket);
  EXPECT_EQ(settings->listeners[0].server_cert_pem, "CERT");
  EXPECT_EQ(settings->listeners[0].server_key_pem, "KEY");
  EXPECT_EQ(settings->listeners[0].client_ca_pem, "CA");
}

}  // namespace
}  // namespace ffibox

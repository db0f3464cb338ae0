#include "client/cli/connect_flags.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace cli {
namespace {

using ::testing::HasSubstr;

// Writes `contents` to a file in the test's scratch directory; returns its path.
std::string WriteFile(const std::string& name, const std::string& contents) {
  const char* dir = getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  std::ofstream(path) << contents;
  return path;
}

TEST(ConnectFlags, NoFlagsIsAPlainConnection) {
  ASSERT_OK_AND_ASSIGN(ConnectOptions options, ConnectOptionsFromFlags({}));
  EXPECT_FALSE(options.tls);
  EXPECT_EQ(options.bearer_token, "");
}

TEST(ConnectFlags, TheFilesBecomeTheirPemsAndTurnTlsOn) {
  ConnectFlags flags;
  flags.tls_ca = WriteFile("ca.pem", "CA PEM");
  flags.tls_cert = WriteFile("client.pem", "CLIENT PEM");
  flags.tls_key = WriteFile("client.key", "CLIENT KEY");
  flags.tls_server_name = "ffibox.internal";
  ASSERT_OK_AND_ASSIGN(ConnectOptions options, ConnectOptionsFromFlags(flags));
  EXPECT_TRUE(options.tls);
  EXPECT_EQ(options.tls_root_certs, "CA PEM");
  EXPECT_EQ(options.tls_client_cert_chain, "CLIENT PEM");
  EXPECT_EQ(options.tls_client_key, "CLIENT KEY");
  EXPECT_EQ(options.tls_server_name, "ffibox.internal");
}

TEST(ConnectFlags, TlsAloneUsesTheSystemCas) {
  ConnectFlags flags;
  flags.tls = true;
  ASSERT_OK_AND_ASSIGN(ConnectOptions options, ConnectOptionsFromFlags(flags));
  EXPECT_TRUE(options.tls);
  EXPECT_EQ(options.tls_root_certs, "");
}

TEST(ConnectFlags, ATokenFileLosesItsSurroundingWhitespace) {
  ConnectFlags flags;
  flags.token_file = WriteFile("token", "  s3cret-token-0123456789\n");
  ASSERT_OK_AND_ASSIGN(ConnectOptions options, ConnectOptionsFromFlags(flags));
  EXPECT_EQ(options.bearer_token, "s3cret-token-0123456789");
  EXPECT_FALSE(options.tls) << "a token alone does not choose the transport";
}

TEST(ConnectFlags, RefusesWhatCannotWorkNamingTheFlag) {
  ConnectFlags both_tokens;
  both_tokens.token = "abc";
  both_tokens.token_file = WriteFile("token2", "def");
  ConnectFlags cert_only;
  cert_only.tls_cert = WriteFile("only.pem", "PEM");
  ConnectFlags key_only;
  key_only.tls_key = WriteFile("only.key", "KEY");
  ConnectFlags missing_ca;
  missing_ca.tls_ca = "/nonexistent/ca.pem";
  ConnectFlags empty_ca;
  empty_ca.tls_ca = WriteFile("empty.pem", "");
  ConnectFlags spaced_token;
  spaced_token.token = "two words";
  ConnectFlags blank_token_file;
  blank_token_file.token_file = WriteFile("blank", " \n");
  const std::pair<ConnectFlags, const char*> cases[] = {
      {both_tokens, "--token_file"},      {cert_only, "--tls_key"}, {key_only, "--tls_cert"},
      {missing_ca, "--tls_ca"},           {empty_ca, "--tls_ca"},   {spaced_token, "--token"},
      {blank_token_file, "--token_file"},
  };
  for (const auto& [flags, named] : cases) {
    absl::StatusOr<ConnectOptions> options = ConnectOptionsFromFlags(flags);
    EXPECT_THAT(options, StatusIs(v1::INVALID_ARGUMENT)) << named;
    EXPECT_THAT(std::string(options.status().message()), HasSubstr(named));
  }
}

}  // namespace
}  // namespace cli
}  // namespace ffibox

#include "client/cli/connect_flags.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace cli {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// The path of `name` in the test's scratch directory.
std::string ScratchPath(const std::string& name) {
  const char* dir = getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

// Writes `contents` to a file in the test's scratch directory; returns its path.
std::string WriteFile(const std::string& name, const std::string& contents) {
  const std::string path = ScratchPath(name);
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

// Tokens and PEM files are small: a file past the bound, or a device that never ends, is
// refused after reading at most the bound (not read until memory runs out).
TEST(ConnectFlags, RefusesAFileLargerThanTheBoundNamingTheFlagAndTheBound) {
  ConnectFlags at_bound;
  at_bound.tls_ca = WriteFile("at_bound.pem", std::string(kMaxFlagFileBytes, 'a'));
  ASSERT_OK_AND_ASSIGN(ConnectOptions options, ConnectOptionsFromFlags(at_bound));
  EXPECT_EQ(options.tls_root_certs.size(), kMaxFlagFileBytes);

  const std::string past_bound = WriteFile("past_bound", std::string(kMaxFlagFileBytes + 1, 'a'));
  ConnectFlags large_ca;
  large_ca.tls_ca = past_bound;
  ConnectFlags large_key;
  large_key.tls_cert = WriteFile("small.pem", "PEM");
  large_key.tls_key = past_bound;
  ConnectFlags large_token;
  large_token.token_file = past_bound;
  ConnectFlags endless_token;
  endless_token.token_file = "/dev/zero";
  const std::pair<ConnectFlags, const char*> cases[] = {
      {large_ca, "--tls_ca"},
      {large_key, "--tls_key"},
      {large_token, "--token_file"},
      {endless_token, "--token_file"},
  };
  for (const auto& [flags, named] : cases) {
    absl::StatusOr<ConnectOptions> refused = ConnectOptionsFromFlags(flags);
    EXPECT_THAT(refused, StatusIs(v1::INVALID_ARGUMENT)) << named;
    EXPECT_THAT(std::string(refused.status().message()),
                AllOf(HasSubstr(named), HasSubstr("larger than 1 MiB")));
  }
}

// A token may come from a pipe (`--token_file=<(command)`); a FIFO that nobody writes to is
// empty rather than waited on forever.
TEST(ConnectFlags, ReadsAPipeAndDoesNotWaitOnAFifoWithoutAWriter) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const std::string token = "piped-token-0123456789";
  ASSERT_EQ(write(fds[1], token.data(), token.size()), static_cast<ssize_t>(token.size()));
  close(fds[1]);
  ConnectFlags piped;
  piped.token_file = absl::StrCat("/dev/fd/", fds[0]);
  ASSERT_OK_AND_ASSIGN(ConnectOptions options, ConnectOptionsFromFlags(piped));
  EXPECT_EQ(options.bearer_token, token);
  close(fds[0]);

  const std::string fifo = ScratchPath("token.fifo");
  unlink(fifo.c_str());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << strerror(errno);
  ConnectFlags unwritten;
  unwritten.token_file = fifo;
  absl::StatusOr<ConnectOptions> refused = ConnectOptionsFromFlags(unwritten);
  EXPECT_THAT(refused, StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(std::string(refused.status().message()),
              AllOf(HasSubstr("--token_file"), HasSubstr("is empty")));
}

}  // namespace
}  // namespace cli
}  // namespace ffibox

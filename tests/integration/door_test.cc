// The door end to end: a real ffiboxd with a mutual-TLS TCP listener (certificates made by
// openssl in the test) and bearer tokens per identity, and its owner-only unix socket.
// Missing or wrong credentials get UNAUTHENTICATED, a certificate from another CA fails the
// handshake, a right token with the wrong certificate or a disabled identity gets
// PERMISSION_DENIED, the right credentials call cos; a TCP listener without TLS does not
// start; another user cannot reach the unix socket.
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/cpp/ffibox_client.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_certificates.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::ReadFile;
using test_support::RunfilePath;
using test_support::RunShell;
using test_support::TestCertificates;
using test_support::TestServer;
using test_support::WaitFor;

constexpr char kAliceToken[] = "alice-token-0123456789abcdef";
constexpr char kBobToken[] = "bob-token-0123456789abcdef";
constexpr char kCarolToken[] = "carol-token-0123456789abcdef";
constexpr char kClientUse[] = "extendedKeyUsage=clientAuth";

class DoorTest : public ::testing::Test {
 protected:
  // A CA, a server certificate for localhost and 127.0.0.1, client certificates for
  // alice.client and bob.client from that CA, and a rogue CA with its own client.
  static void SetUpTestSuite() {
    const char* tmp = getenv("TEST_TMPDIR");
    dir_ = new std::string(std::filesystem::path(tmp != nullptr ? tmp : "/tmp") / "door");
    TestCertificates certificates(*dir_);
    absl::Status made = certificates.MakeAuthority("ca");
    if (made.ok()) made = certificates.MakeAuthority("rogue_ca");
    if (made.ok()) made = certificates.MakeLocalhostServer("server", "ca");
    if (made.ok()) made = certificates.MakeLeaf("alice", "alice.client", "ca", kClientUse);
    if (made.ok()) made = certificates.MakeLeaf("bob", "bob.client", "ca", kClientUse);
    if (made.ok()) made = certificates.MakeLeaf("rogue", "alice.client", "rogue_ca", kClientUse);
    certificates_ok_ = made.ok();
    if (!made.ok()) fprintf(stderr, "%s\n", std::string(made.message()).c_str());
    std::ofstream(*dir_ + "/ffiboxd.conf") << absl::StrCat(
        "identities { name: \"alice\" bearer_token: \"", kAliceToken,
        "\" client_cert_name: \"alice.client\" }\n", "identities { name: \"bob\" bearer_token: \"",
        kBobToken, "\" client_cert_name: \"bob.client\" }\n",
        "identities { name: \"carol\" bearer_token: \"", kCarolToken, "\" disabled: true }\n");
  }

  static std::string Pem(const std::string& name) { return ReadFile(*dir_ + "/" + name + ".pem"); }
  static std::string Key(const std::string& name) { return ReadFile(*dir_ + "/" + name + ".key"); }

  void SetUp() override {
    ASSERT_TRUE(certificates_ok_) << "openssl could not make the test certificates";
    absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start({
        "--listen=127.0.0.1:0",
        "--tls_cert_file=" + *dir_ + "/server.pem",
        "--tls_key_file=" + *dir_ + "/server.key",
        "--tls_client_ca_file=" + *dir_ + "/ca.pem",
        "--config=" + *dir_ + "/ffiboxd.conf",
    });
    ASSERT_OK(server);
    server_ = std::move(*server);
    // "ffiboxd listening on 127.0.0.1:PORT (mutual TLS)"
    ASSERT_TRUE(WaitFor([&] { return server_->Stdout().find("(mutual TLS)") != std::string::npos; },
                        absl::Seconds(5)))
        << server_->Stdout();
    const std::string out = server_->Stdout();
    const size_t start = out.find("on 127.0.0.1:") + 3;
    tcp_address_ = out.substr(start, out.find(' ', start) - start);
  }

  // Opens a session over TLS with the client certificate `client` ("" for none) and `token`.
  absl::StatusOr<std::unique_ptr<Session>> OpenOverTls(const std::string& client,
                                                       const std::string& token) {
    ConnectOptions options;
    options.tls = true;
    options.tls_root_certs = Pem("ca");
    if (!client.empty()) {
      options.tls_client_cert_chain = Pem(client);
      options.tls_client_key = Key(client);
    }
    options.bearer_token = token;
    options.connect_timeout = absl::Seconds(3);
    absl::StatusOr<std::unique_ptr<Client>> client_or = Client::Connect(tcp_address_, options);
    if (!client_or.ok()) return client_or.status();
    clients_.push_back(std::move(*client_or));
    return clients_.back()->OpenSession();
  }

  static std::string* dir_;
  static bool certificates_ok_;
  std::unique_ptr<TestServer> server_;
  std::string tcp_address_;
  std::vector<std::unique_ptr<Client>> clients_;
};

std::string* DoorTest::dir_ = nullptr;
bool DoorTest::certificates_ok_ = false;

TEST_F(DoorTest, RightCredentialsCallCos) {
  absl::StatusOr<std::unique_ptr<Session>> session = OpenOverTls("alice", kAliceToken);
  ASSERT_OK(session);
  absl::StatusOr<Library> libm = (*session)->Load("libm.so.6");
  ASSERT_OK(libm);
  absl::StatusOr<TypedFunction<double(double)>> cos = libm->Function<double(double)>("cos");
  ASSERT_OK(cos);
  absl::StatusOr<double> one = (*cos)(0.0);
  ASSERT_OK(one);
  EXPECT_EQ(*one, 1.0);
}

TEST_F(DoorTest, NoTokenIsUnauthenticated) {
  absl::StatusOr<std::unique_ptr<Session>> session = OpenOverTls("alice", "");
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(ErrorOf(session.status()).code(), v1::UNAUTHENTICATED) << session.status();
}

TEST_F(DoorTest, WrongTokenIsUnauthenticated) {
  absl::StatusOr<std::unique_ptr<Session>> session =
      OpenOverTls("alice", "not-a-token-0123456789abcdef");
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(ErrorOf(session.status()).code(), v1::UNAUTHENTICATED) << session.status();
}

TEST_F(DoorTest, ClientCertificateFromAnotherCaFailsTheHandshake) {
  absl::StatusOr<std::unique_ptr<Session>> session = OpenOverTls("rogue", kAliceToken);
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(session.status().code(), absl::StatusCode::kUnavailable) << session.status();
}

TEST_F(DoorTest, NoClientCertificateFailsTheHandshake) {
  absl::StatusOr<std::unique_ptr<Session>> session = OpenOverTls("", kAliceToken);
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(session.status().code(), absl::StatusCode::kUnavailable) << session.status();
}

TEST_F(DoorTest, RightTokenWithAnotherIdentitysCertificateIsPermissionDenied) {
  absl::StatusOr<std::unique_ptr<Session>> session = OpenOverTls("alice", kBobToken);
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(ErrorOf(session.status()).code(), v1::PERMISSION_DENIED) << session.status();
  EXPECT_NE(session.status().message().find("bob.client"), std::string::npos);
}

TEST_F(DoorTest, DisabledIdentityIsPermissionDenied) {
  absl::StatusOr<std::unique_ptr<Session>> session = OpenOverTls("alice", kCarolToken);
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(ErrorOf(session.status()).code(), v1::PERMISSION_DENIED) << session.status();
}

TEST_F(DoorTest, RefusedClientsLeaveTheServerServing) {
  EXPECT_FALSE(OpenOverTls("alice", "").ok());
  EXPECT_FALSE(OpenOverTls("bob", kAliceToken).ok());
  absl::StatusOr<std::unique_ptr<Session>> session = OpenOverTls("alice", kAliceToken);
  ASSERT_OK(session);
  // The unix socket's owner is the local identity, without a token.
  absl::StatusOr<std::unique_ptr<Client>> local = Client::Connect(server_->address());
  ASSERT_OK(local);
  absl::StatusOr<std::unique_ptr<Session>> local_session = (*local)->OpenSession();
  EXPECT_TRUE(local_session.ok()) << local_session.status();
}

TEST_F(DoorTest, UnixSocketIsOwnerOnlyAndAnotherUserCannotConnect) {
  const std::string socket_path = server_->address().substr(5);
  const std::string directory = socket_path.substr(0, socket_path.rfind('/'));
  struct stat st;
  ASSERT_EQ(stat(directory.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat(socket_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const passwd* nobody = getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  if (geteuid() != 0) GTEST_SKIP() << "switching to nobody needs root";
  const uid_t uid = nobody->pw_uid;
  const gid_t gid = nobody->pw_gid;
  // A child that becomes nobody and tries to connect: raw system calls only after fork (the
  // test process runs gRPC threads). It exits with connect's errno, or 0 if it got in.
  const pid_t child = static_cast<pid_t>(syscall(SYS_fork));
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (syscall(SYS_setgroups, 0, nullptr) != 0 || syscall(SYS_setgid, gid) != 0 ||
        syscall(SYS_setuid, uid) != 0) {
      syscall(SYS_exit_group, 200);
    }
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    memcpy(address.sun_path, socket_path.c_str(), socket_path.size());
    const int fd = static_cast<int>(syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0));
    const long connected = syscall(SYS_connect, fd, &address, sizeof(address));
    syscall(SYS_exit_group, connected == 0 ? 0 : errno);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_NE(WEXITSTATUS(status), 200) << "could not become nobody";
  EXPECT_EQ(WEXITSTATUS(status), EACCES)
      << "nobody reached the socket (errno " << WEXITSTATUS(status) << ")";
}

TEST(DoorStartupTest, TcpListenerWithoutTlsRefusesToStart) {
  std::string output;
  const int status =
      RunShell(absl::StrCat(RunfilePath("server/ffiboxd"),
                            " --listen=127.0.0.1:0 --worker=", RunfilePath("server/ffibox-worker")),
               &output);
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find("needs TLS"), std::string::npos) << output;
  EXPECT_NE(output.find("127.0.0.1:0"), std::string::npos) << output;
}

TEST(DoorStartupTest, BadConfigurationNamesTheField) {
  const char* tmp = getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp != nullptr ? tmp : "/tmp") + "/bad.conf";
  std::ofstream(path) << "limits { max_message_bytes: 3 }\n";
  std::string output;
  const int status = RunShell(absl::StrCat(RunfilePath("server/ffiboxd"), " --config=", path,
                                           " --listen=unix:/tmp/ffibox-door-bad/s.sock"),
                              &output);
  EXPECT_EQ(status, 1) << output;
  EXPECT_NE(output.find("limits.max_message_bytes"), std::string::npos) << output;
}

}  // namespace
}  // namespace ffibox

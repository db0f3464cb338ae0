// Scale-out on gRPC's own load balancing: three real ffiboxd on loopback TCP with TLS (a
// throwaway CA made by openssl) and a bearer token, one C++ client whose target lists all
// three ("ipv4:127.0.0.1:A,127.0.0.1:B,127.0.0.1:C", round_robin with health checks).
// Sessions spread over every server (each session's worker is a child of the server it
// landed on); when one server is killed, the sessions on it fail promptly with UNAVAILABLE
// and new sessions land on the two others.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/cpp/ffibox_client.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_certificates.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::ChildrenOf;
using test_support::TestCertificates;
using test_support::TestServer;
using test_support::WaitFor;

constexpr char kToken[] = "scale-out-token-0123456789abcdef";
constexpr int kServers = 3;

// A session with cos resolved, so that its worker runs (the worker is the server's child).
struct WorkingSession {
  std::unique_ptr<Session> session;
  TypedFunction<double(double)> cos;
};

class ScaleOutTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* tmp = getenv("TEST_TMPDIR");
    certificates_ = new TestCertificates(
        (std::filesystem::path(tmp != nullptr ? tmp : "/tmp") / "scale_out").string());
    absl::Status made = certificates_->MakeAuthority("ca");
    if (made.ok()) made = certificates_->MakeLocalhostServer("server", "ca");
    certificates_ok_ = made.ok();
    if (!made.ok()) fprintf(stderr, "%s\n", std::string(made.message()).c_str());
    std::ofstream(certificates_->directory() + "/ffiboxd.conf")
        << absl::StrCat("identities { name: \"tenant\" bearer_token: \"", kToken, "\" }\n");
  }

  void SetUp() override {
    ASSERT_TRUE(certificates_ok_) << "openssl could not make the test certificates";
    std::vector<std::string> addresses;
    for (int i = 0; i < kServers; ++i) {
      absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start({
          "--listen=127.0.0.1:0",
          "--tls_cert_file=" + certificates_->CertificatePath("server"),
          "--tls_key_file=" + certificates_->KeyPath("server"),
          "--config=" + certificates_->directory() + "/ffiboxd.conf",
      });
      ASSERT_OK(server);
      // "ffiboxd listening on 127.0.0.1:PORT (TLS)"
      ASSERT_TRUE(WaitFor([&] { return (*server)->Stdout().find("(TLS)") != std::string::npos; },
                          absl::Seconds(5)))
          << (*server)->Stdout();
      const std::string out = (*server)->Stdout();
      const size_t start = out.find("on 127.0.0.1:") + 3;
      addresses.push_back(out.substr(start, out.find(' ', start) - start));
      servers_.push_back(std::move(*server));
    }
    target_ = absl::StrCat("ipv4:", absl::StrJoin(addresses, ","));
    ConnectOptions options;
    options.tls = true;
    options.tls_root_certs = certificates_->Certificate("ca");
    // One name for every server behind the list (the target itself names no host).
    options.tls_server_name = "localhost";
    options.bearer_token = kToken;
    options_ = options;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(target_, options);
    ASSERT_OK(client);
    client_ = std::move(*client);
  }

  absl::StatusOr<WorkingSession> OpenWorkingSession() {
    FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, client_->OpenSession());
    FFIBOX_ASSIGN_OR_RETURN(Library libm, session->Load("libm.so.6"));
    FFIBOX_ASSIGN_OR_RETURN(TypedFunction<double(double)> cos,
                            libm.Function<double(double)>("cos"));
    FFIBOX_ASSIGN_OR_RETURN(double one, cos(0.0));
    if (one != 1.0) return absl::InternalError(absl::StrCat("cos(0) = ", one));
    return WorkingSession{std::move(session), cos};
  }

  // Opens `count` more sessions into `sessions`; the first failure. With `on_every_server`,
  // more (up to kMaxSessions) until every server has one: the client is ready once one
  // server is, and a server whose health check is still under way gets sessions only once it
  // answers.
  absl::Status OpenWorkingSessions(int count, std::vector<WorkingSession>* sessions,
                                   bool on_every_server = true) {
    constexpr int kMaxSessions = 40;
    for (int i = 0; i < count || (on_every_server && i < kMaxSessions && !EveryServerHasASession());
         ++i) {
      FFIBOX_ASSIGN_OR_RETURN(WorkingSession session, OpenWorkingSession());
      sessions->push_back(std::move(session));
    }
    return absl::OkStatus();
  }

  bool EveryServerHasASession() const {
    for (int i = 0; i < kServers; ++i) {
      if (SessionsOn(i) == 0) return false;
    }
    return true;
  }

  // Sessions (workers) running on server `i` now.
  size_t SessionsOn(int i) const { return ChildrenOf(servers_[i]->pid()).size(); }

  std::string Distribution() const {
    std::vector<size_t> counts;
    for (int i = 0; i < kServers; ++i) counts.push_back(SessionsOn(i));
    return absl::StrCat("sessions per server: ", absl::StrJoin(counts, ", "));
  }

  static TestCertificates* certificates_;
  static bool certificates_ok_;
  std::vector<std::unique_ptr<TestServer>> servers_;
  std::string target_;
  ConnectOptions options_;
  std::unique_ptr<Client> client_;
};

TestCertificates* ScaleOutTest::certificates_ = nullptr;
bool ScaleOutTest::certificates_ok_ = false;

TEST_F(ScaleOutTest, SessionsSpreadOverEveryServer) {
  std::vector<WorkingSession> sessions;
  ASSERT_OK(OpenWorkingSessions(3 * kServers, &sessions));
  size_t total = 0;
  for (int i = 0; i < kServers; ++i) {
    EXPECT_GE(SessionsOn(i), 1u) << "server " << i << " got no session; " << Distribution();
    total += SessionsOn(i);
  }
  EXPECT_EQ(total, sessions.size()) << Distribution();
  // A session stays on its server: every one still calls.
  for (WorkingSession& session : sessions) EXPECT_THAT(session.cos(0.0), IsOk());
}

// Each health-checking client channel holds one grpc.health.v1 Watch per server; ffiboxd's
// server-wide bound on Watch streams (1024) leaves room for every one of them.
TEST_F(ScaleOutTest, SeveralHealthCheckedClientsEachSpreadSessionsOverEveryServer) {
  constexpr int kClients = 8;
  std::vector<std::unique_ptr<Client>> clients;
  for (int c = 0; c < kClients; ++c) {
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(target_, options_);
    ASSERT_OK(client);
    clients.push_back(std::move(*client));
  }
  std::vector<std::unique_ptr<Session>> sessions;
  for (int c = 0; c < kClients; ++c) {
    for (int i = 0; i < kServers; ++i) {
      absl::StatusOr<std::unique_ptr<Session>> session = clients[c]->OpenSession();
      ASSERT_OK(session);
      ASSERT_OK((*session)->Load("libm.so.6"));
      sessions.push_back(std::move(*session));
    }
  }
  size_t total = 0;
  for (int i = 0; i < kServers; ++i) {
    EXPECT_GE(SessionsOn(i), 1u) << "server " << i << " got no session; " << Distribution();
    total += SessionsOn(i);
  }
  EXPECT_EQ(total, sessions.size()) << Distribution();
}

TEST_F(ScaleOutTest, KilledServersSessionsFailUnavailablePromptlyAndNewSessionsGoElsewhere) {
  std::vector<WorkingSession> sessions;
  ASSERT_OK(OpenWorkingSessions(3 * kServers, &sessions));
  const size_t on_victim = SessionsOn(0);
  ASSERT_GE(on_victim, 1u) << Distribution();
  const size_t on_others = SessionsOn(1) + SessionsOn(2);

  ASSERT_EQ(kill(servers_[0]->pid(), SIGKILL), 0);
  servers_[0]->Stop();  // reaps it

  size_t failed = 0;
  for (WorkingSession& session : sessions) {
    const absl::Time start = absl::Now();
    absl::StatusOr<double> result = session.cos(0.0);
    const absl::Duration took = absl::Now() - start;
    // A lost server's wait would be the call's deadline.
    EXPECT_LT(took, absl::Seconds(4)) << "a call took " << took << ": " << result.status();
    if (result.ok()) continue;
    ++failed;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable) << result.status();
  }
  EXPECT_EQ(failed, on_victim);

  ASSERT_OK(OpenWorkingSessions(2 * kServers, &sessions, /*on_every_server=*/false));
  EXPECT_EQ(SessionsOn(1) + SessionsOn(2), on_others + 2 * kServers);
}

}  // namespace
}  // namespace ffibox

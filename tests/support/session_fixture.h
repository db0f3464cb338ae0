// A GoogleTest fixture for integration tests: a real ffiboxd (TestServer), a client
// connected to it, one open session, and the test library loaded in it.
#ifndef FFIBOX_TESTS_SUPPORT_SESSION_FIXTURE_H_
#define FFIBOX_TESTS_SUPPORT_SESSION_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "client/cpp/ffibox_client.h"
#include "gtest/gtest.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace test_support {

class SessionFixture : public ::testing::Test {
 protected:
  // Extra ffiboxd flags for this fixture's server.
  virtual std::vector<std::string> ServerFlags() const { return {}; }
  // The options of the fixture's session.
  virtual SessionOptions Options() const { return {}; }

  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start(ServerFlags());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_->address());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
    absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(Options());
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = std::move(*session);
    absl::StatusOr<Library> lib = session_->Load(TestLibPath());
    ASSERT_TRUE(lib.ok()) << lib.status();
    lib_ = std::make_unique<Library>(*lib);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<Library> lib_;  // tests/testlibs/libffibox_test.so in session_
};

}  // namespace test_support
}  // namespace ffibox

#endif  // FFIBOX_TESTS_SUPPORT_SESSION_FIXTURE_H_

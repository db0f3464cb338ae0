// The client checks what a server answers: a server that answers `done` to everything (the
// benchmarks' bare gRPC floor, bench/echo_session_server.h, a real gRPC server on a real
// socket) gets a typed INTERNAL error naming what it left out, never a crash or a result
// made up from an empty message.
#include <memory>
#include <string>

#include "bench/echo_session_server.h"
#include "client/cpp/client.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

TEST(UnexpectedAnswer, AServerThatAnswersDoneToAnOpenIsRefusedNamingWhatItLeftOut) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<bench::EchoSessionServer> server,
                       bench::EchoSessionServer::Start());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Connect(server->address()));
  absl::StatusOr<std::unique_ptr<Session>> session = client->OpenSession();
  ASSERT_FALSE(session.ok());
  v1::Error error = ToProtoError(session.status());
  EXPECT_EQ(error.code(), v1::INTERNAL);
  EXPECT_EQ(error.message(), "the server answered open without opened");
}

}  // namespace
}  // namespace ffibox

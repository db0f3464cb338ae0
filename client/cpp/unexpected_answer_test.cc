// The client checks what a server answers: a server that answers `done` to everything (the
// benchmarks' bare gRPC floor, bench/echo_session_server.h, a real gRPC server on a real
// socket) gets a typed INTERNAL error naming what it left out, never a crash or a result
// made up from an empty message.
#include <memory>
#include <string>

#include "bench/echo_session_server.h"
#include "client/cpp/batch.h"
#include "client/cpp/client.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/typed_function.h"
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

TEST(UnexpectedAnswer, ABatchAnsweredWithoutItsResultsIsRefused) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<bench::EchoSessionServer> server,
                       bench::EchoSessionServer::Start());
  ASSERT_OK_AND_ASSIGN(std::shared_ptr<client_internal::SessionStream> stream,
                       client_internal::SessionStream::Start(grpc::CreateChannel(
                           server->address(), grpc::InsecureChannelCredentials())));
  auto memory = std::make_shared<client_internal::MemoryOps>(stream);
  Function<int(int, int)> add(
      RawFunction(stream, memory, 1, "add", Function<int(int, int)>::Signature(), RemotePtr()));
  Batch batch(stream, memory);
  BatchCall<int> sum = batch.Add(add, 1, 2);
  absl::Status ran = batch.Run();
  v1::Error error = ToProtoError(ran);
  EXPECT_EQ(error.code(), v1::INTERNAL);
  EXPECT_EQ(error.message(), "the server answered a batch of 1 calls with 0 results");
  EXPECT_THAT(batch.Result(sum), StatusIs(v1::INTERNAL));  // no result made up
}

}  // namespace
}  // namespace ffibox

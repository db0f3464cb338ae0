#include "server/broker/grpc_pollers.h"

#include <chrono>
#include <memory>

#include "core/thread_name.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

// A real gRPC server on loopback TCP with a GrpcPollers queue.
class GrpcPollersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    pollers_ = std::make_unique<GrpcPollers>(&builder);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  std::unique_ptr<GrpcPollers> pollers_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(GrpcPollersTest, StartedThreadsWaitUntilTheServerIsShutDownAndThenEnd) {
  pollers_->Start(2);
  EXPECT_EQ(ThreadsNamed("ffibox-poll"), 2);
  server_->Shutdown(std::chrono::system_clock::now());
  pollers_.reset();  // joins: would hang if a thread did not see the queue's shutdown
  EXPECT_EQ(ThreadsNamed("ffibox-poll"), 0);
}

TEST_F(GrpcPollersTest, AQueueNeverStartedIsDrainedOnDestruction) {
  server_->Shutdown(std::chrono::system_clock::now());
  pollers_.reset();  // gRPC aborts on deleting a queue that was not shut down and drained
  EXPECT_EQ(ThreadsNamed("ffibox-poll"), 0);
}

}  // namespace
}  // namespace ffibox

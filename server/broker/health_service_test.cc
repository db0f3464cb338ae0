#include "server/broker/health_service.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/thread_name.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// A real gRPC server on loopback TCP serving one HealthService, and a client channel to it.
class HealthServiceTest : public ::testing::Test {
 protected:
  static constexpr int kMaxWatches = 3;

  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    health_.AddTo(&builder);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    health_.Serve();
    stub_ = Health::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    health_.SetServing(true);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
    health_.Stop();  // before the server is destroyed
  }

  // An open Watch of `service` as a client holds it.
  struct OpenWatch {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> reader;
  };

  std::unique_ptr<OpenWatch> Watch(const std::string& service) {
    auto watch = std::make_unique<OpenWatch>();
    watch->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    HealthCheckRequest request;
    request.set_service(service);
    watch->reader = stub_->Watch(&watch->context, request);
    return watch;
  }

  grpc::Status Check(const std::string& service, HealthCheckResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    HealthCheckRequest request;
    request.set_service(service);
    return stub_->Check(&context, request, response);
  }

  bool WaitForOpenWatches(int count) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (health_.OpenWatches() != count) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  HealthService health_{kMaxWatches};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthServiceTest, CheckAnswersTheServerAndTheFfiboxServiceAndNotFoundForOthers) {
  HealthCheckResponse response;
  ASSERT_TRUE(Check("", &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  ASSERT_TRUE(Check(kFfiboxServiceName, &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check("no.such.Service", &response).error_code(), grpc::StatusCode::NOT_FOUND);
  health_.SetServing(false);
  ASSERT_TRUE(Check(kFfiboxServiceName, &response).ok());
  EXPECT_EQ(response.status(), HealthCheckResponse::NOT_SERVING);
}

TEST_F(HealthServiceTest, ChecksAreNotCountedAgainstTheWatchBound) {
  for (int i = 0; i < 10 * kMaxWatches; ++i) {
    HealthCheckResponse response;
    ASSERT_TRUE(Check("", &response).ok());
  }
  EXPECT_EQ(health_.OpenWatches(), 0);
}

TEST_F(HealthServiceTest, WatchesPastTheBoundAreRefusedAtOnceAndAClosedOneFreesItsPlace) {
  std::vector<std::unique_ptr<OpenWatch>> watches;
  for (int i = 0; i < kMaxWatches; ++i) {
    watches.push_back(Watch(kFfiboxServiceName));
    HealthCheckResponse update;
    ASSERT_TRUE(watches.back()->reader->Read(&update));
    EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);
  }
  EXPECT_EQ(health_.OpenWatches(), kMaxWatches);

  std::unique_ptr<OpenWatch> refused = Watch("");
  HealthCheckResponse update;
  EXPECT_FALSE(refused->reader->Read(&update));
  EXPECT_EQ(refused->reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  watches.front()->context.TryCancel();
  watches.front()->reader->Finish();
  ASSERT_TRUE(WaitForOpenWatches(kMaxWatches - 1));
  std::unique_ptr<OpenWatch> admitted = Watch("");
  ASSERT_TRUE(admitted->reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);
}

TEST_F(HealthServiceTest, WatchersAreToldOfChangesAndOfTheWithdrawal) {
  std::unique_ptr<OpenWatch> watch = Watch(kFfiboxServiceName);
  HealthCheckResponse update;
  ASSERT_TRUE(watch->reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);
  health_.SetServing(false);
  ASSERT_TRUE(watch->reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);
  health_.SetServing(true);
  ASSERT_TRUE(watch->reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVING);

  health_.Withdraw();
  ASSERT_TRUE(watch->reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::NOT_SERVING);
  health_.SetServing(true);  // for good: ignored
  HealthCheckResponse check;
  ASSERT_TRUE(Check("", &check).ok());
  EXPECT_EQ(check.status(), HealthCheckResponse::NOT_SERVING);

  // The stream ends when the server shuts down, within its deadline.
  const auto started = std::chrono::steady_clock::now();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  EXPECT_FALSE(watch->reader->Read(&update));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  EXPECT_TRUE(WaitForOpenWatches(0));
}

TEST_F(HealthServiceTest, AWatchOfAnUnknownServiceIsToldServiceUnknown) {
  std::unique_ptr<OpenWatch> watch = Watch("no.such.Service");
  HealthCheckResponse update;
  ASSERT_TRUE(watch->reader->Read(&update));
  EXPECT_EQ(update.status(), HealthCheckResponse::SERVICE_UNKNOWN);
}

TEST_F(HealthServiceTest, AnOverlongServiceNameIsRefusedAndNotKept) {
  const std::string name(kMaxHealthServiceNameBytes + 1, 'x');
  HealthCheckResponse response;
  EXPECT_EQ(Check(name, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::unique_ptr<OpenWatch> watch = Watch(name);
  HealthCheckResponse update;
  EXPECT_FALSE(watch->reader->Read(&update));
  EXPECT_EQ(watch->reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(health_.OpenWatches(), 0);
}

// gRPC's callback API would start the process's callback queue, whose threads (named
// "nexting_thread") sleep 100 ms after each idle second while holding the polling role:
// every stream of every service that started then waited for them (a session's open took
// 7 ms on average instead of 4). Health answers on its own queue and thread instead.
TEST_F(HealthServiceTest, ServingStartsNoCallbackQueueThreads) {
  HealthCheckResponse response;
  ASSERT_TRUE(Check("", &response).ok());
  std::unique_ptr<OpenWatch> watch = Watch("");
  HealthCheckResponse update;
  ASSERT_TRUE(watch->reader->Read(&update));
  EXPECT_EQ(ThreadsNamed("nexting_thread"), 0);
  EXPECT_EQ(ThreadsNamed("ffibox-health"), 1);
}

}  // namespace
}  // namespace ffibox

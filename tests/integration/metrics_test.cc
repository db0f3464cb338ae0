// ffiboxd's Prometheus metrics as an operator sees them: a real ffiboxd started with
// --metrics_listen, real sessions, calls, a crash, a timeout and a seccomp violation in real
// jailed workers, and /metrics scraped over real HTTP after each.
#include <signal.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/cpp/ffibox_client.h"
#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/http_get.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::HttpAnswer;
using test_support::HttpRequest;
using test_support::RunfilePath;
using test_support::TestLibPath;
using test_support::TestServer;
using test_support::WaitFor;

constexpr char kMetricsLine[] = "ffiboxd metrics on http://127.0.0.1:";

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_,
                         TestServer::Start({"--metrics_listen=127.0.0.1:0", "--pool_size=1"}));
    // The metrics address is printed after the listening line.
    ASSERT_TRUE(WaitFor([this] { return server_->Stdout().find("/metrics") != std::string::npos; },
                        absl::Seconds(10)))
        << server_->Stdout();
    const std::string out = server_->Stdout();
    const size_t at = out.find(kMetricsLine);
    ASSERT_NE(at, std::string::npos) << out;
    const std::string rest = out.substr(at + sizeof(kMetricsLine) - 1);
    ASSERT_TRUE(absl::SimpleAtoi(rest.substr(0, rest.find('/')), &port_)) << out;
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(server_->address()));
  }

  // The scraped text.
  std::string Scrape() {
    absl::StatusOr<HttpAnswer> answer = HttpRequest("127.0.0.1", port_, "GET", "/metrics");
    EXPECT_OK(answer);
    if (!answer.ok()) return "";
    EXPECT_EQ(answer->status, 200);
    EXPECT_THAT(answer->content_type, ::testing::StartsWith("text/plain; version=0.0.4"));
    return answer->body;
  }

  // The value of the sample `series` (name and labels, as rendered) in a fresh scrape, or -1
  // when it is absent.
  double Value(const std::string& series) {
    for (absl::string_view line : absl::StrSplit(Scrape(), '\n')) {
      if (!absl::ConsumePrefix(&line, series) || !absl::ConsumePrefix(&line, " ")) continue;
      double value = 0;
      return absl::SimpleAtod(line, &value) ? value : -1;
    }
    return -1;
  }

  std::unique_ptr<TestServer> server_;
  int port_ = 0;
  std::unique_ptr<Client> client_;
};

TEST_F(MetricsTest, SessionsCallsAndLatencyAreCounted) {
  EXPECT_EQ(Value("ffibox_sessions_open"), 0);
  EXPECT_EQ(Value("ffibox_sessions_total"), 0);
  EXPECT_TRUE(WaitFor([this] { return Value("ffibox_worker_pool_idle") == 1; }, absl::Seconds(10)))
      << "the pool's idle worker";

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  for (int i = 0; i < 3; ++i) EXPECT_THAT(add(i, 1), IsOk());
  ASSERT_OK_AND_ASSIGN(auto len, lib.Function<size_t(const char*)>("str_len"));
  EXPECT_THAT(len("x"), IsOk());

  EXPECT_EQ(Value("ffibox_sessions_open"), 1);
  EXPECT_EQ(Value("ffibox_sessions_total"), 1);
  EXPECT_EQ(Value("ffibox_identity_sessions_total{identity=\"local\"}"), 1);
  EXPECT_EQ(Value("ffibox_calls_total{code=\"OK\"}"), 4);
  EXPECT_EQ(Value("ffibox_identity_calls_total{identity=\"local\"}"), 4);
  EXPECT_EQ(Value("ffibox_call_duration_seconds_count{op=\"call\"}"), 4);
  EXPECT_EQ(Value("ffibox_call_duration_seconds_bucket{op=\"call\",le=\"+Inf\"}"), 4);
  EXPECT_GT(Value("ffibox_call_duration_seconds_sum{op=\"call\"}"), 0);
  EXPECT_LT(Value("ffibox_call_duration_seconds_sum{op=\"call\"}"), 10);
  // The session took the pooled worker; the pool starts another.
  EXPECT_TRUE(WaitFor([this] { return Value("ffibox_worker_pool_idle") == 1; }, absl::Seconds(10)));

  const double down = Value("ffibox_relayed_bytes_total{direction=\"client_to_worker\"}");
  const double up = Value("ffibox_relayed_bytes_total{direction=\"worker_to_client\"}");
  EXPECT_GT(down, 0);
  EXPECT_GT(up, 0);
  // A call with a 64 KiB string: at least that much more goes down.
  ASSERT_OK_AND_ASSIGN(auto big_len, lib.Function<size_t(const char*)>("str_len"));
  const std::string big(64 << 10, 'x');
  ASSERT_OK_AND_ASSIGN(size_t length, big_len(big.c_str()));
  EXPECT_EQ(length, big.size());
  // Counted once the broker's write of the frame returned, which may be after the worker
  // answered (the worker reads the frame as it is written).
  EXPECT_TRUE(WaitFor(
      [&] {
        return Value("ffibox_relayed_bytes_total{direction=\"client_to_worker\"}") >=
               down + big.size();
      },
      absl::Seconds(5)));

  ASSERT_OK(session->Close());
  EXPECT_TRUE(WaitFor([this] { return Value("ffibox_sessions_open") == 0; }, absl::Seconds(10)));
  EXPECT_EQ(Value("ffibox_identity_sessions_open{identity=\"local\"}"), 0);
  EXPECT_EQ(Value("ffibox_sessions_total"), 1);
}

TEST_F(MetricsTest, CrashesTimeoutsAndRestartsAreCounted) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto crash, lib.Function<int()>("crash_null_deref"));
  EXPECT_THAT(crash(), StatusIs(v1::WORKER_CRASHED));
  EXPECT_EQ(Value("ffibox_worker_crashes_total{signal=\"SIGSEGV\"}"), 1);
  EXPECT_EQ(Value("ffibox_calls_total{code=\"WORKER_CRASHED\"}"), 1);
  EXPECT_EQ(Value("ffibox_worker_restarts_total"), 0) << "restarted on the next request only";

  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(2, 3));
  EXPECT_EQ(sum, 5);
  EXPECT_EQ(Value("ffibox_worker_restarts_total"), 1);
  EXPECT_EQ(Value("ffibox_calls_total{code=\"OK\"}"), 1);

  ASSERT_OK_AND_ASSIGN(auto abort_call, lib.Function<int()>("crash_abort"));
  EXPECT_THAT(abort_call(), StatusIs(v1::WORKER_CRASHED));
  EXPECT_EQ(Value("ffibox_worker_crashes_total{signal=\"SIGABRT\"}"), 1);

  ASSERT_OK_AND_ASSIGN(auto hang, lib.Function<int()>("hang_forever"));
  EXPECT_THAT(hang.CallWithTimeout(absl::Milliseconds(200)), StatusIs(v1::CALL_TIMEOUT));
  EXPECT_EQ(Value("ffibox_call_timeouts_total"), 1);
  EXPECT_EQ(Value("ffibox_calls_total{code=\"CALL_TIMEOUT\"}"), 1);
  // A timeout is not a crash.
  EXPECT_EQ(Value("ffibox_worker_crashes_total{signal=\"SIGKILL\"}"), -1);
  // The timed-out call took at least its deadline, and is counted above 100 ms.
  EXPECT_EQ(Value("ffibox_call_duration_seconds_count{op=\"call\"}"), 4);
  EXPECT_GE(Value("ffibox_call_duration_seconds_sum{op=\"call\"}"), 0.2);
  EXPECT_LE(Value("ffibox_call_duration_seconds_bucket{op=\"call\",le=\"0.1\"}"), 3);
  EXPECT_EQ(Value("ffibox_identity_calls_total{identity=\"local\"}"), 4);
}

TEST_F(MetricsTest, ASandboxViolationIsCountedBySyscall) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library probe,
                       session->Load(RunfilePath("tests/testlibs/libffibox_probe.so")));
  ASSERT_OK_AND_ASSIGN(auto execve_call, probe.Function<int(const char*)>("probe_execve"));
  absl::StatusOr<int> result = execve_call("/bin/true");
  ASSERT_THAT(result, StatusIs(v1::SANDBOX_VIOLATION));
  EXPECT_EQ(Value("ffibox_sandbox_violations_total{syscall=\"execve\"}"), 1);
  EXPECT_EQ(Value("ffibox_calls_total{code=\"SANDBOX_VIOLATION\"}"), 1);
  EXPECT_EQ(Value("ffibox_worker_crashes_total{signal=\"SIGKILL\"}"), -1)
      << "a violation is not a crash";
}

TEST_F(MetricsTest, RefusedCallsAndBatchesAreCountedWithTheirCode) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  // A call of a function handle the session never had: refused by the broker.
  v1::Request request;
  request.mutable_call()->set_function(999);
  EXPECT_THAT(session->Send(request), StatusIs(v1::NOT_FOUND));
  EXPECT_EQ(Value("ffibox_calls_total{code=\"NOT_FOUND\"}"), 1);

  Batch batch = session->NewBatch();
  BatchCall<int> first = batch.Add(add, 1, 2);
  BatchCall<int> second = batch.Add(add, 3, 4);
  ASSERT_OK(batch.Run());
  EXPECT_EQ(*batch.Result(first), 3);
  EXPECT_EQ(*batch.Result(second), 7);
  EXPECT_EQ(Value("ffibox_calls_total{code=\"OK\"}"), 2) << "each call of a batch";
  EXPECT_EQ(Value("ffibox_call_duration_seconds_count{op=\"batch\"}"), 1);
  EXPECT_EQ(Value("ffibox_identity_calls_total{identity=\"local\"}"), 3);
}

TEST_F(MetricsTest, OnlyMetricsIsServed) {
  ASSERT_OK_AND_ASSIGN(HttpAnswer root, HttpRequest("127.0.0.1", port_, "GET", "/"));
  EXPECT_EQ(root.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpAnswer file, HttpRequest("127.0.0.1", port_, "GET", "/etc/passwd"));
  EXPECT_EQ(file.status, 404);
  ASSERT_OK_AND_ASSIGN(HttpAnswer post, HttpRequest("127.0.0.1", port_, "POST", "/metrics"));
  EXPECT_EQ(post.status, 405);
}

TEST(MetricsListenTest, WithoutTheFlagNothingIsServed) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server, TestServer::Start());
  EXPECT_EQ(server->Stdout().find("/metrics"), std::string::npos) << server->Stdout();
}

TEST(MetricsListenTest, ABadAddressStopsTheServer) {
  absl::StatusOr<std::unique_ptr<TestServer>> server =
      TestServer::Start({"--metrics_listen=localhost:9464"}, absl::Seconds(5));
  EXPECT_FALSE(server.ok());
}

}  // namespace
}  // namespace ffibox

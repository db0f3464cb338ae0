#include "server/broker/broker_metrics.h"

#include <signal.h>

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/metrics.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class BrokerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(metrics_, BrokerMetrics::Create(&registry_, /*pool=*/nullptr));
  }

  metrics::Registry registry_;
  std::unique_ptr<BrokerMetrics> metrics_;
};

TEST_F(BrokerMetricsTest, EveryMetricIsThereFromTheStart) {
  const std::string text = registry_.Render();
  for (const char* line :
       {"ffibox_sessions_open 0\n", "ffibox_sessions_total 0\n",
        "ffibox_calls_total{code=\"OK\"} 0\n", "ffibox_calls_total{code=\"WORKER_CRASHED\"} 0\n",
        "ffibox_call_timeouts_total 0\n", "ffibox_worker_restarts_total 0\n",
        "ffibox_worker_pool_idle 0\n", "ffibox_call_duration_seconds_count{op=\"call\"} 0\n",
        "# TYPE ffibox_worker_crashes_total counter\n",
        "# TYPE ffibox_sandbox_violations_total counter\n",
        "# TYPE ffibox_relayed_bytes_total counter\n", "# TYPE ffibox_buffered_reply_bytes gauge\n",
        "# TYPE ffibox_identity_calls_total counter\n"}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  // The error codes' names, never a number or the unspecified code.
  EXPECT_THAT(text, Not(HasSubstr("ERROR_CODE_UNSPECIFIED")));
}

TEST_F(BrokerMetricsTest, SessionsAreCountedOverallAndByIdentity) {
  metrics_->SessionStarted("alice");
  metrics_->SessionStarted("bob");
  metrics_->SessionStarted("alice");
  metrics_->SessionEnded("alice");
  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("ffibox_sessions_open 2\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_sessions_total 3\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_identity_sessions_total{identity=\"alice\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_identity_sessions_total{identity=\"bob\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_identity_sessions_open{identity=\"alice\"} 1\n"));
}

TEST_F(BrokerMetricsTest, CallsAreCountedByResultAndIdentityWithTheirLatency) {
  SessionMetrics alice = metrics_->SessionStarted("alice");
  alice.CallsAnswered(v1::Request::kCall, 1, v1::ERROR_CODE_UNSPECIFIED);
  alice.CallLatency(v1::Request::kCall, absl::Microseconds(40));
  alice.CallsAnswered(v1::Request::kCall, 0, v1::WORKER_CRASHED);
  // A batch whose fourth call failed: three results and one failure.
  alice.CallsAnswered(v1::Request::kBatch, 3, v1::MEMORY_FAULT);
  alice.CallLatency(v1::Request::kBatch, absl::Milliseconds(3));
  // Not calls: ignored.
  alice.CallsAnswered(v1::Request::kLoadLibrary, 0, v1::LIBRARY_NOT_ALLOWED);
  alice.CallLatency(v1::Request::kReadMemory, absl::Seconds(1));
  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("ffibox_calls_total{code=\"OK\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_calls_total{code=\"WORKER_CRASHED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_calls_total{code=\"MEMORY_FAULT\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_calls_total{code=\"LIBRARY_NOT_ALLOWED\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_identity_calls_total{identity=\"alice\"} 6\n"));
  EXPECT_THAT(text,
              HasSubstr("ffibox_call_duration_seconds_bucket{op=\"call\",le=\"2.5e-05\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_call_duration_seconds_bucket{op=\"call\",le=\"5e-05\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_call_duration_seconds_count{op=\"call\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("ffibox_call_duration_seconds_bucket{op=\"batch\",le=\"0.0025\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("ffibox_call_duration_seconds_bucket{op=\"batch\",le=\"0.005\"} 1\n"));
}

TEST_F(BrokerMetricsTest, DeathsAreCrashesViolationsOrTimeouts) {
  SessionMetrics session = metrics_->SessionStarted("local");
  v1::Error segv;
  segv.set_code(v1::WORKER_CRASHED);
  segv.set_signal(SIGSEGV);
  session.WorkerDied(segv, DeathCause::kUnexpected);
  session.WorkerDied(segv, DeathCause::kUnexpected);
  v1::Error exited;
  exited.set_code(v1::WORKER_CRASHED);
  exited.set_exit_code(3);
  session.WorkerDied(exited, DeathCause::kUnexpected);
  v1::Error violation;
  violation.set_code(v1::SANDBOX_VIOLATION);
  violation.set_signal(SIGKILL);
  violation.set_syscall("execve");
  session.WorkerDied(violation, DeathCause::kUnexpected);
  v1::Error timeout;
  timeout.set_code(v1::CALL_TIMEOUT);
  timeout.set_signal(SIGKILL);
  session.WorkerDied(timeout, DeathCause::kDeadline);
  session.WorkerRestarted();
  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("ffibox_worker_crashes_total{signal=\"SIGSEGV\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_worker_crashes_total{signal=\"exit\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("ffibox_worker_crashes_total{signal=\"SIGKILL\"}")))
      << "a violation or a timeout is not a crash";
  EXPECT_THAT(text, HasSubstr("ffibox_sandbox_violations_total{syscall=\"execve\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_call_timeouts_total 1\n"));
  EXPECT_THAT(text, HasSubstr("ffibox_worker_restarts_total 1\n"));
}

// A session of a server without metrics (a SessionConfig's default SessionMetrics, as in
// tests and embedders) takes every report without a registry to count it in: nothing to
// look at but that it does not crash.
TEST(SessionMetricsTest, ADefaultSessionMetricsTakesEveryReportWithoutCrashing) {
  SessionMetrics none;
  none.CallsAnswered(v1::Request::kCall, 1, v1::ERROR_CODE_UNSPECIFIED);
  none.CallLatency(v1::Request::kCall, absl::Seconds(1));
  none.WorkerDied(v1::Error(), DeathCause::kUnexpected);
  none.WorkerRestarted();
}

TEST(BrokerMetricsCreateTest, RefusesARegistryThatHasTheNamesAlready) {
  metrics::Registry registry;
  ASSERT_OK(BrokerMetrics::Create(&registry, nullptr));
  EXPECT_FALSE(BrokerMetrics::Create(&registry, nullptr).ok());
}

}  // namespace
}  // namespace ffibox

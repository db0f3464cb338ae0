#include "server/worker_death.h"

#include <signal.h>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

TEST(DescribeWorkerDeath, SignalNamesTheSignalAndTheFunction) {
  v1::Error error =
      DescribeWorkerDeath(WorkerExit{SIGSEGV, -1}, DeathCause::kUnexpected, "crash_null_deref");
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED);
  EXPECT_EQ(error.signal(), SIGSEGV);
  EXPECT_EQ(error.exit_code(), -1);
  EXPECT_EQ(error.function(), "crash_null_deref");
  EXPECT_NE(error.message().find("SIGSEGV"), std::string::npos) << error.message();
  EXPECT_NE(error.message().find("crash_null_deref"), std::string::npos) << error.message();
}

TEST(DescribeWorkerDeath, CrashReportAddsTheFaultAddress) {
  WorkerExit exit{SIGSEGV, -1};
  CrashReport report;
  report.magic = kCrashReportMagic;
  report.signal = SIGSEGV;
  report.address = 0x10;
  exit.report = report;
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "crash_null_deref");
  EXPECT_EQ(error.fault_address(), 0x10u);
  EXPECT_NE(error.message().find("at address 0x10"), std::string::npos) << error.message();
}

TEST(DescribeWorkerDeath, ExitCarriesTheExitCode) {
  v1::Error error = DescribeWorkerDeath(WorkerExit{0, 3}, DeathCause::kUnexpected, "crash_exit3");
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED);
  EXPECT_EQ(error.signal(), 0);
  EXPECT_EQ(error.exit_code(), 3);
  EXPECT_NE(error.message().find("status 3"), std::string::npos) << error.message();
}

TEST(DescribeWorkerDeath, DeadlineIsCallTimeoutEvenThoughTheBrokerSentSigkill) {
  v1::Error error = DescribeWorkerDeath(WorkerExit{SIGKILL, -1}, DeathCause::kDeadline,
                                        "hang_forever", absl::Milliseconds(250));
  EXPECT_EQ(error.code(), v1::CALL_TIMEOUT);
  EXPECT_EQ(error.function(), "hang_forever");
  EXPECT_NE(error.message().find("250ms"), std::string::npos) << error.message();
}

TEST(DescribeWorkerDeath, IdleDeathSaysIdle) {
  v1::Error error = DescribeWorkerDeath(WorkerExit{SIGSEGV, -1}, DeathCause::kUnexpected, "");
  EXPECT_NE(error.message().find("while idle"), std::string::npos) << error.message();
}

TEST(DescribeWorkerDeath, ProtocolViolationIsACrashWithTheDetail) {
  v1::Error error = DescribeWorkerDeath(WorkerExit{SIGKILL, -1}, DeathCause::kProtocolViolation,
                                        "cos", {}, "reply for unknown request 7");
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED);
  EXPECT_NE(error.message().find("unknown request 7"), std::string::npos) << error.message();
}

}  // namespace
}  // namespace ffibox

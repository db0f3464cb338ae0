#include "server/broker/worker_death.h"

#include <signal.h>
#include <sys/syscall.h>

#include <utility>

#include "gtest/gtest.h"
#include "server/jail/seccomp_policy.h"
#include "server/protocol/crash_report.h"

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

TEST(DescribeWorkerDeath, AWorkerWithoutItsThreadBeforeItStartedIsResourceExhausted) {
  // Its status is ffibox-worker's own only before it started: after, a library's exit(3) is
  // a crash (above).
  v1::Error error = DescribeWorkerDeath(WorkerExit{0, kWorkerExitNoThread},
                                        DeathCause::kBeforeStart, "its start");
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED);
  EXPECT_NE(error.message().find("could not start its own thread"), std::string::npos);
  EXPECT_EQ(DescribeWorkerDeath(WorkerExit{0, 2}, DeathCause::kBeforeStart, "its start").code(),
            v1::WORKER_CRASHED);
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

TEST(DescribeWorkerDeath, ListenerVerdictIsASandboxViolationNamingTheSyscall) {
  WorkerExit exit{SIGKILL, -1};
  exit.killed_by_broker = true;
  exit.seccomp_policy = "strict";
  exit.seccomp_violation = SYS_connect;
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "probe_connect");
  EXPECT_EQ(error.code(), v1::SANDBOX_VIOLATION);
  EXPECT_EQ(error.syscall(), "connect");
  EXPECT_NE(error.message().find("called connect, which the strict seccomp policy forbids"),
            std::string::npos)
      << error.message();
}

TEST(DescribeWorkerDeath, ListenerVerdictNamesWhatIdentifiesTheCall) {
  WorkerExit exit{SIGKILL, -1};
  exit.killed_by_broker = true;
  exit.seccomp_policy = "strict";
  exit.seccomp_violation = SYS_ioctl;
  exit.seccomp_violation_detail = "ioctl 0x5412";
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "SDL_Init");
  EXPECT_EQ(error.syscall(), "ioctl");
  EXPECT_NE(error.message().find("called ioctl 0x5412, which"), std::string::npos)
      << error.message();
}

TEST(DescribeWorkerDeath, ForgedSigsysReportIsACrashLabelledAsTheWorkersClaim) {
  // A library wrote a crash report naming execve and raised SIGSYS itself; the listener
  // saw nothing. That is no sandbox violation.
  WorkerExit exit{SIGSYS, -1};
  exit.seccomp_policy = "strict";
  CrashReport report;
  report.magic = kCrashReportMagic;
  report.signal = SIGSYS;
  report.syscall = SYS_execve;
  exit.report = report;
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "forge");
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED);
  EXPECT_EQ(error.syscall(), "");
  EXPECT_EQ(error.signal(), SIGSYS);
  EXPECT_NE(error.message().find("claims a forbidden execve"), std::string::npos)
      << error.message();
  EXPECT_NE(error.message().find("unverified"), std::string::npos) << error.message();
}

TEST(DescribeWorkerDeath, SigsysWithoutAJailIsACrash) {
  v1::Error error = DescribeWorkerDeath(WorkerExit{SIGSYS, -1}, DeathCause::kUnexpected, "f");
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED);
}

TEST(DescribeWorkerDeath, CpuLimitIsResourceExhausted) {
  WorkerExit exit{SIGXCPU, -1};
  exit.cpu_seconds = 2;
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "spin");
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED);
  EXPECT_NE(error.message().find("CPU time limit of 2 s exceeded"), std::string::npos)
      << error.message();
}

TEST(SyscallName, NamesKnownNumbersAndFallsBackToTheNumber) {
  EXPECT_EQ(SyscallName(SYS_execve), "execve");
  EXPECT_EQ(SyscallName(99999), "syscall 99999");
}

TEST(DescribeWorkerDeath, SigkillTheBrokerDidNotSendIsResourceExhausted) {
  WorkerExit exit{SIGKILL, -1};
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "spin_cpu_seconds");
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED) << error.message();
}

// How a SIGKILL ffiboxd did not send is described, given the worker's CPU-time limit, the
// CPU time it used and the OOM kills its cgroup counted.
v1::Error UnsentSigkill(uint64_t cpu_seconds, double cpu_used_seconds, uint64_t oom_kills) {
  WorkerExit exit{SIGKILL, -1};
  exit.cpu_seconds = cpu_seconds;
  exit.cpu_used_seconds = cpu_used_seconds;
  exit.oom_kills = oom_kills;
  return DescribeWorkerDeath(exit, DeathCause::kUnexpected, "f");
}

TEST(DescribeWorkerDeath, SigkillPastTheCpuLimitIsResourceExhaustedNamingTheLimit) {
  const v1::Error error = UnsentSigkill(1, 3.01, 0);
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED) << error.message();
  EXPECT_NE(error.message().find("CPU time limit of 1 s exceeded"), std::string::npos)
      << error.message();
}

TEST(DescribeWorkerDeath, SigkillWithAnOomKillInTheCgroupIsResourceExhausted) {
  const v1::Error error = UnsentSigkill(10, 0.5, 1);
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED) << error.message();
  EXPECT_NE(error.message().find("out-of-memory killer"), std::string::npos) << error.message();
}

TEST(DescribeWorkerDeath, SigkillFromNoLimitIsACrash) {
  // Within its CPU time, and its cgroup counted no OOM kill: the library's own SIGKILL.
  const v1::Error error = UnsentSigkill(10, 0.01, 0);
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << error.message();
  EXPECT_EQ(error.signal(), SIGKILL);
  EXPECT_NE(error.message().find("neither ffiboxd nor a limit"), std::string::npos)
      << error.message();
}

TEST(DescribeWorkerDeath, SigkillOfALingeringWorkerIsACrashNotAResourceLimit) {
  WorkerExit exit{SIGKILL, -1};
  exit.killed_by_broker = true;
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "close_channel");
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << error.message();
  EXPECT_NE(error.message().find("closed its channel"), std::string::npos) << error.message();
}

// Its cgroup counted an out-of-memory kill: memory ran out before ffiboxd killed what was
// left (an init slow to follow the worker it had relayed, a process of the library's).
TEST(DescribeWorkerDeath, AWorkerTheBrokerKilledAfterAnOomKillInItsCgroupRanOutOfMemory) {
  WorkerExit exit{SIGKILL, -1};
  exit.killed_by_broker = true;
  exit.oom_kills = 1;
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "allocate");
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED) << error.message();
  EXPECT_NE(error.message().find("out-of-memory killer"), std::string::npos) << error.message();
}

// The worker's report of its address space when it died: a death with at least half of its
// cap mapped says so (a mapping past the cap may be why the library gave up), one far below
// it says nothing of it.
WorkerExit ExitReporting(uint64_t mapped_mib, uint64_t cap_mib) {
  WorkerExit exit{0, 1};
  CrashReport report;
  report.magic = kCrashReportMagic;
  report.code = 1;
  report.address_space = mapped_mib << 20;
  report.address_space_cap = cap_mib << 20;
  exit.report = report;
  return exit;
}

TEST(DescribeWorkerDeath, AnExitWithMostOfTheAddressSpaceMappedNamesTheCap) {
  const v1::Error error =
      DescribeWorkerDeath(ExitReporting(3172, 4096), DeathCause::kUnexpected, "uc_mem_map");
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED);
  EXPECT_EQ(error.message(),
            "worker exited with status 1 while running uc_mem_map; the worker reported 3172 MiB "
            "of address space mapped, of its cap of 4096 MiB (the session's memory limit: the "
            "server's limits.session_memory_bytes, or the session's own memory_limit_bytes): a "
            "mapping past the cap fails inside the library");
}

TEST(DescribeWorkerDeath, AnExitFarBelowTheCapOrWithoutOneSaysNothingOfIt) {
  for (const auto& [mapped, cap] : {std::pair<uint64_t, uint64_t>{100, 4096}, {3172, 0}}) {
    const v1::Error error =
        DescribeWorkerDeath(ExitReporting(mapped, cap), DeathCause::kUnexpected, "f");
    EXPECT_EQ(error.message(), "worker exited with status 1 while running f") << mapped;
  }
}

}  // namespace
}  // namespace ffibox

// Real jailed workers started through WorkerProcess with JailOptions set directly: the
// self-check passes on this host, the seccomp self-test dies with SANDBOX_VIOLATION naming
// execve, the worker sees only its roots, and bad options are refused before any clone.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/jail/jail_layers.h"
#include "server/jail/sandbox_check.h"
#include "server/worker_death.h"
#include "server/worker_process.h"

namespace ffibox {
namespace {

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return srcdir != nullptr ? absl::StrCat(srcdir, "/ffibox/", path) : path;
}

std::string ProbeDirectory() {
  char resolved[PATH_MAX];
  std::string probe = Runfile("tests/testlibs/libffibox_probe.so");
  if (realpath(probe.c_str(), resolved) == nullptr) return "/nonexistent";
  std::string real(resolved);
  return real.substr(0, real.rfind('/'));
}

WorkerLaunchOptions JailedLaunch() {
  WorkerLaunchOptions launch;
  launch.worker_path = Runfile("server/ffibox-worker");
  launch.jail.library_roots = {ProbeDirectory()};
  return launch;
}

TEST(Jail, SandboxCheckFindsEveryLayerActiveOnThisHost) {
  JailOptions options = JailedLaunch().jail;
  EXPECT_EQ(RunSandboxCheck(options, Runfile("server/ffibox-worker")), 0)
      << DescribeJailLayers(options);
}

TEST(Jail, ExecveOnceJailedIsASandboxViolationNamingExecve) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail_self_test = true;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_TRUE(worker.ok()) << worker.status();
  WorkerExit exit = (*worker)->Reap(absl::Seconds(10));
  EXPECT_EQ(exit.signal, SIGSYS);
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "");
  EXPECT_EQ(error.code(), v1::SANDBOX_VIOLATION) << error.message();
  EXPECT_EQ(error.syscall(), "execve") << error.message();
}

TEST(Jail, TheWorkerSeesItsRootsAndSystemLibrariesOnly) {
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(JailedLaunch());
  ASSERT_TRUE(worker.ok()) << worker.status();
  const std::string root = absl::StrCat("/proc/", (*worker)->worker_pid(), "/root");
  struct stat st;
  EXPECT_EQ(stat((root + ProbeDirectory() + "/libffibox_probe.so").c_str(), &st), 0);
  EXPECT_EQ(stat((root + "/usr/lib/x86_64-linux-gnu/libc.so.6").c_str(), &st), 0);
  EXPECT_EQ(stat((root + "/etc/ld.so.cache").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/etc/shadow").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/etc/passwd").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/work").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/root/.bashrc").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/bin/sh").c_str(), &st), 0);
  EXPECT_TRUE((*worker)->jail_layers().unprivileged_ids);
}

TEST(Jail, UnknownExtraSyscallIsRefusedBeforeAnyWorkerStarts) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.extra_syscalls = {"not_a_syscall"};
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(worker.status().message().find("not_a_syscall"), std::string::npos);
}

TEST(Jail, RelativeLibraryRootIsRefused) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.library_roots = {"relative/dir"};
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Jail, DisabledJailRunsTheWorkerInOurNamespaces) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.enabled = false;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ((*worker)->worker_pid(), (*worker)->pid());
  char ours[64] = {}, its[64] = {};
  ASSERT_GT(readlink("/proc/self/ns/pid", ours, sizeof(ours) - 1), 0);
  ASSERT_GT(
      readlink(absl::StrCat("/proc/", (*worker)->pid(), "/ns/pid").c_str(), its, sizeof(its) - 1),
      0);
  EXPECT_STREQ(ours, its);
}

}  // namespace
}  // namespace ffibox

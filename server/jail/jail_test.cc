// Real jailed workers started through WorkerProcess with JailOptions set directly: the
// self-check passes on this host, the seccomp self-test dies with SANDBOX_VIOLATION naming
// execve, the worker sees only the system directories and its visible paths, a layer that
// cannot be applied fails the start (never a weaker worker), and bad options are refused
// before any clone.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/broker/worker_death.h"
#include "server/broker/worker_process.h"
#include "server/jail/filesystem.h"
#include "server/jail/jail_check.h"
#include "server/jail/jail_layers.h"
#include "tests/support/status_matchers.h"

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

// The names in directory `path` (without "." and ".."), sorted; empty if it cannot be read.
std::vector<std::string> Entries(const std::string& path) {
  std::vector<std::string> names;
  DIR* directory = opendir(path.c_str());
  if (directory == nullptr) return names;
  while (const struct dirent* entry = readdir(directory)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(directory);
  std::sort(names.begin(), names.end());
  return names;
}

WorkerLaunchOptions JailedLaunch() {
  WorkerLaunchOptions launch;
  launch.worker_path = Runfile("server/ffibox-worker");
  return launch;
}

TEST(Jail, SandboxCheckFindsEveryLayerActiveOnThisHost) {
  JailOptions options = JailedLaunch().jail;
  EXPECT_EQ(RunJailCheck(options, Runfile("server/ffibox-worker")), 0)
      << DescribeJailLayers(options);
}

TEST(Jail, ExecveOnceJailedIsASandboxViolationNamingExecve) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail_self_test = true;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_OK(worker);
  EXPECT_TRUE((*worker)->WaitForSeccompViolation(absl::Seconds(10)));
  WorkerExit exit = (*worker)->Reap(absl::Seconds(10));
  EXPECT_EQ(exit.signal, SIGKILL);
  v1::Error error = DescribeWorkerDeath(exit, DeathCause::kUnexpected, "");
  EXPECT_EQ(error.code(), v1::SANDBOX_VIOLATION) << error.message();
  EXPECT_EQ(error.syscall(), "execve") << error.message();
}

TEST(Jail, TheWorkerSeesItsVisiblePathsAndSystemDirectoriesOnly) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.visible_paths = {ProbeDirectory()};
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_OK(worker);
  const std::string root = absl::StrCat("/proc/", (*worker)->worker_pid(), "/root");
  struct stat st;
  EXPECT_EQ(stat((root + ProbeDirectory() + "/libffibox_probe.so").c_str(), &st), 0);
  EXPECT_EQ(stat((root + "/usr/share").c_str(), &st), 0);
  EXPECT_EQ(stat((root + "/usr/include/stdio.h").c_str(), &st), 0);
  EXPECT_EQ(stat((root + "/usr/lib/x86_64-linux-gnu/libc.so.6").c_str(), &st), 0);
  EXPECT_EQ(stat((root + "/etc/ld.so.cache").c_str(), &st), 0);
  // Libraries' configuration, where this host has it (fontconfig's comes with the JDK that
  // Bazel runs on).
  int configs = 0;
  for (const char* config : {"/etc/fonts/fonts.conf", "/etc/ssl/openssl.cnf",
                             "/etc/ImageMagick-6/policy.xml", "/etc/alternatives"}) {
    if (stat(config, &st) != 0) continue;
    ++configs;
    EXPECT_EQ(stat((root + config).c_str(), &st), 0) << config;
  }
  EXPECT_GT(configs, 0) << "no library configuration on this host to look for";
  EXPECT_NE(stat((root + "/etc/ssl/private").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/etc/hostname").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/etc/shadow").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/etc/passwd").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/root/.bashrc").c_str(), &st), 0);
  EXPECT_NE(stat((root + "/bin/sh").c_str(), &st), 0);
  // The directories on the way to the visible path are there, each holding only the next
  // one: nothing else of them (this test's own output tree, say) is shown.
  const std::string visible = ProbeDirectory();
  for (size_t slash = visible.find('/', 1); slash != std::string::npos;
       slash = visible.find('/', slash + 1)) {
    const std::string above = visible.substr(0, slash);
    const size_t next_end = visible.find('/', slash + 1);
    const std::string next = visible.substr(slash + 1, next_end - slash - 1);
    EXPECT_EQ(Entries(root + above), std::vector<std::string>{next}) << above;
  }
  EXPECT_TRUE((*worker)->jail_layers().unprivileged_ids);
}

TEST(Jail, WithoutVisiblePathsNoLibraryDirectoryIsShown) {
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(JailedLaunch());
  ASSERT_OK(worker);
  const std::string root = absl::StrCat("/proc/", (*worker)->worker_pid(), "/root");
  struct stat st;
  EXPECT_NE(stat((root + ProbeDirectory()).c_str(), &st), 0);
  EXPECT_NE(stat((root + "/tmp/..").c_str(), &st), -1);  // its own /tmp exists
  EXPECT_NE(stat((root + "/etc/shadow").c_str(), &st), 0);
}

TEST(Jail, ALayerThatCannotBeAppliedFailsTheStartNamingIt) {
  // The filesystem view without a mount namespace cannot exist: the start fails (a weaker
  // worker is never started), with the layer named for JAIL_UNAVAILABLE.
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.mount_namespace = false;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_EQ(FailedJailLayer(worker.status()), JailLayer::kFilesystem) << worker.status();
  // A visible path that is gone when a worker starts fails that start, every time.
  char directory[] = "/tmp/ffibox-jail-test-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  launch = JailedLaunch();
  launch.jail.visible_paths = {directory};
  ASSERT_TRUE(WorkerProcess::Start(launch).ok());
  ASSERT_EQ(rmdir(directory), 0);
  for (int attempt = 0; attempt < 2; ++attempt) {
    worker = WorkerProcess::Start(launch);
    ASSERT_FALSE(worker.ok());
    EXPECT_EQ(FailedJailLayer(worker.status()), JailLayer::kFilesystem) << worker.status();
  }
}

// The worker's own /tmp is a fresh tmpfs: a visible path below the host's /tmp is shown on
// top of it, not hidden under it.
TEST(Jail, AVisiblePathBelowTmpIsVisible) {
  char directory[] = "/tmp/ffibox-jail-test-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr);
  const std::string file = absl::StrCat(directory, "/data");
  FILE* f = fopen(file.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.visible_paths = {directory};
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_OK(worker);
  const std::string root = absl::StrCat("/proc/", (*worker)->worker_pid(), "/root");
  struct stat st;
  EXPECT_EQ(stat((root + file).c_str(), &st), 0) << file;
  EXPECT_EQ(stat((root + "/tmp").c_str(), &st), 0);
  worker->reset();
  unlink(file.c_str());
  rmdir(directory);
}

TEST(Jail, RunningOutOfDescriptorsRefusesTheWorkerAndLaterWorkersKeepEveryLayer) {
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  // Leave almost nothing free: the start must fail with RESOURCE_EXHAUSTED, not run a
  // worker without the filesystem view.
  std::vector<int> held;
  struct rlimit tight = saved;
  tight.rlim_cur = 96;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &tight), 0);
  for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;) held.push_back(fd);
  for (int i = 0; i < 6 && !held.empty(); ++i) {  // a few free, as under connection pressure
    close(held.back());
    held.pop_back();
  }
  absl::StatusOr<std::unique_ptr<WorkerProcess>> starved = WorkerProcess::Start(JailedLaunch());
  for (int fd : held) close(fd);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_FALSE(starved.ok());
  EXPECT_EQ(starved.status().code(), absl::StatusCode::kResourceExhausted) << starved.status();

  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(JailedLaunch());
  ASSERT_OK(worker);
  EXPECT_TRUE((*worker)->jail_layers().active[static_cast<int>(JailLayer::kFilesystem)]);
  struct stat st;
  EXPECT_NE(stat(absl::StrCat("/proc/", (*worker)->worker_pid(), "/root/etc/shadow").c_str(), &st),
            0);
}

TEST(Jail, UnknownWaiverIsRefusedAndAnAvailableLayerStaysOn) {
  JailOptions options;
  EXPECT_EQ(DecideJailLayers(&options, {"everything"}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(DecideJailLayers(&options, {"filesystem", "user"}).ok());
  // This host provides every layer: a waiver changes nothing.
  EXPECT_TRUE(options.filesystem);
  EXPECT_TRUE(options.user_namespace);
  EXPECT_TRUE(options.waived.empty());
  // A layer whose prerequisite is off must be waived by name too.
  JailOptions without_mount;
  without_mount.mount_namespace = false;
  absl::Status refused = DecideJailLayers(&without_mount, {});
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.message().find("--waive_jail_layer=filesystem"), std::string::npos) << refused;
  ASSERT_TRUE(DecideJailLayers(&without_mount, {"filesystem", "proc"}).ok());
  EXPECT_FALSE(without_mount.filesystem);
  EXPECT_FALSE(without_mount.proc);
  EXPECT_EQ(without_mount.waived.size(), 2u);
}

TEST(Jail, WithoutACgroupAWorkerInItsOwnUserNamespaceGetsItsCapAsRlimitNproc) {
  ASSERT_TRUE(KernelCountsProcessesPerUserNamespace()) << "this host's kernel predates 5.14";
  JailOptions with_cgroup;
  ASSERT_TRUE(DecideJailLayers(&with_cgroup, {}).ok());
  EXPECT_EQ(with_cgroup.processes, 0u);  // the cgroup's pids.max is the cap
  JailOptions without_cgroup;
  without_cgroup.cgroup = false;
  without_cgroup.worker_pids_max = 64;
  ASSERT_TRUE(DecideJailLayers(&without_cgroup, {}).ok());
  EXPECT_EQ(without_cgroup.processes, 64u);
  // Without a user namespace RLIMIT_NPROC would count every process of the host uid: no cap.
  JailOptions shared_uid;
  shared_uid.cgroup = false;
  shared_uid.user_namespace = false;
  CapProcessesWithoutCgroup(&shared_uid);
  EXPECT_EQ(shared_uid.processes, 0u);
}

// An unknown syscall, and clone3 (whose flags no filter sees), are refused as extras.
TEST(Jail, UnknownOrUnfilterableExtraSyscallIsRefusedBeforeAnyWorkerStarts) {
  for (const char* extra : {"not_a_syscall", "clone3"}) {
    WorkerLaunchOptions launch = JailedLaunch();
    launch.jail.extra_syscalls = {extra};
    absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
    ASSERT_FALSE(worker.ok()) << extra;
    EXPECT_EQ(worker.status().code(), absl::StatusCode::kInvalidArgument) << extra;
    EXPECT_NE(worker.status().message().find(extra), std::string::npos) << extra;
  }
}

TEST(Jail, RelativeVisiblePathIsRefused) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.visible_paths = {"relative/dir"};
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_EQ(FailedJailLayer(worker.status()), JailLayer::kFilesystem) << worker.status();
}

TEST(Jail, DisabledJailRunsTheWorkerInOurNamespaces) {
  WorkerLaunchOptions launch = JailedLaunch();
  launch.jail.enabled = false;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_OK(worker);
  EXPECT_EQ((*worker)->worker_pid(), (*worker)->pid());
  char ours[64] = {}, its[64] = {};
  ASSERT_GT(readlink("/proc/self/ns/pid", ours, sizeof(ours) - 1), 0);
  ASSERT_GT(
      readlink(absl::StrCat("/proc/", (*worker)->pid(), "/ns/pid").c_str(), its, sizeof(its) - 1),
      0);
  EXPECT_STREQ(ours, its);
}

// The contents of `path`, or "" if it cannot be read.
std::string ReadWholeFile(const std::string& path) {
  std::string contents;
  FILE* file = fopen(path.c_str(), "r");
  if (file == nullptr) return contents;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0) contents.append(buffer, n);
  fclose(file);
  return contents;
}

std::string LinkTarget(const std::string& path) {
  char target[PATH_MAX] = {};
  ssize_t n = readlink(path.c_str(), target, sizeof(target) - 1);
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : "";
}

// The jail's init is ffibox-init, a program of its own: nothing of the process that launched
// the worker (ffiboxd; here this test) lives on in it, and the worker is its child.
TEST(Jail, TheInitIsItsOwnProgramWithNothingOfTheBrokerMapped) {
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(JailedLaunch());
  ASSERT_OK(worker);
  const pid_t init = (*worker)->pid();
  ASSERT_NE(init, (*worker)->worker_pid());
  EXPECT_TRUE(absl::EndsWith(LinkTarget(absl::StrCat("/proc/", init, "/exe")), "/ffibox-init"));
  const std::string maps = ReadWholeFile(absl::StrCat("/proc/", init, "/maps"));
  ASSERT_FALSE(maps.empty());
  const std::string self = LinkTarget("/proc/self/exe");
  ASSERT_FALSE(self.empty());
  EXPECT_EQ(maps.find(self), std::string::npos) << maps;
  // Its command line is its name alone; the worker's parent is the init.
  const std::string cmdline = ReadWholeFile(absl::StrCat("/proc/", init, "/cmdline"));
  EXPECT_EQ(std::string(cmdline.c_str()), "ffibox-init");
  EXPECT_EQ(cmdline.find_first_not_of('\0', sizeof("ffibox-init")), std::string::npos);
  const std::string status =
      ReadWholeFile(absl::StrCat("/proc/", (*worker)->worker_pid(), "/status"));
  EXPECT_NE(status.find(absl::StrCat("\nPPid:\t", init, "\n")), std::string::npos) << status;
}

// A root broker's launch runs the child in the broker's memory until it execs (CLONE_VM |
// CLONE_VFORK): no page of the broker is copied or write-protected, so writing its memory
// after launches faults nothing in. With a copy (fork), each page would fault once.
TEST(Jail, LaunchingWorkersLeavesTheBrokersMemoryAsItWas) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "an unprivileged broker's child is a copy: it must be dumpable";
  }
  constexpr size_t kBytes = 32 << 20;
  void* mapped = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  char* memory = static_cast<char*>(mapped);
  madvise(memory, kBytes, MADV_NOHUGEPAGE);  // one fault per 4 KiB page, whatever THP does
  memset(memory, 1, kBytes);
  std::vector<std::unique_ptr<WorkerProcess>> workers;
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(JailedLaunch());
    ASSERT_OK(worker);
    workers.push_back(*std::move(worker));
  }
  struct rusage before, after;
  getrusage(RUSAGE_THREAD, &before);
  for (size_t at = 0; at < kBytes; at += 4096) memory[at] = 2;
  getrusage(RUSAGE_THREAD, &after);
  EXPECT_LT(after.ru_minflt - before.ru_minflt, 64) << "of " << kBytes / 4096 << " pages";
  munmap(mapped, kBytes);
}

// ffibox-init lies beside the worker binary. Without it, or with one that others could have
// written, a worker that needs a pid namespace is not started (never one without the
// layer); with that layer off, it is.
TEST(Jail, WithoutFfiboxInitBesideTheWorkerAWorkerWithAPidNamespaceIsNotStarted) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string directory = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/worker-alone");
  ASSERT_EQ(mkdir(directory.c_str(), 0755), 0);
  auto copy_runfile = [](const std::string& from, const std::string& to, mode_t mode) {
    const std::string binary = ReadWholeFile(Runfile(from));
    FILE* out = fopen(to.c_str(), "w");
    ASSERT_NE(out, nullptr);
    ASSERT_EQ(fwrite(binary.data(), 1, binary.size(), out), binary.size());
    ASSERT_EQ(fclose(out), 0);
    ASSERT_EQ(chmod(to.c_str(), mode), 0);
    ASSERT_FALSE(binary.empty());
  };
  const std::string copy = directory + "/ffibox-worker";
  copy_runfile("server/ffibox-worker", copy, 0755);
  WorkerLaunchOptions launch = JailedLaunch();
  launch.worker_path = copy;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kFailedPrecondition) << worker.status();
  // No layer is named: the host has it, so no waiver may turn it off for a missing init.
  EXPECT_EQ(FailedJailLayer(worker.status()), std::nullopt) << worker.status();
  EXPECT_NE(worker.status().message().find(directory + "/ffibox-init"), std::string::npos)
      << worker.status();
  // An init that others could have written runs nothing either.
  const std::string init = directory + "/ffibox-init";
  copy_runfile("server/ffibox-init", init, 0777);
  worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kFailedPrecondition) << worker.status();
  EXPECT_NE(worker.status().message().find("writable by no one else"), std::string::npos)
      << worker.status();
  ASSERT_EQ(chmod(init.c_str(), 0755), 0);
  worker = WorkerProcess::Start(launch);
  ASSERT_OK(worker);
  EXPECT_NE((*worker)->pid(), (*worker)->worker_pid());
  worker = absl::CancelledError();
  // Opened once (as ffiboxd does at its start), the init's owner and mode are still looked
  // at before each launch, and the files need not stay at their paths.
  absl::StatusOr<std::shared_ptr<const WorkerExecutables>> opened = WorkerExecutables::Open(copy);
  ASSERT_OK(opened);
  launch.executables = *opened;
  ASSERT_EQ(chmod(init.c_str(), 0777), 0);
  worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_NE(worker.status().message().find("writable by no one else"), std::string::npos)
      << worker.status();
  ASSERT_EQ(chmod(init.c_str(), 0755), 0);
  // So is the worker binary's: it runs before its own seccomp filter.
  ASSERT_EQ(chmod(copy.c_str(), 0775), 0);
  worker = WorkerProcess::Start(launch);
  ASSERT_FALSE(worker.ok());
  EXPECT_EQ(worker.status().code(), absl::StatusCode::kFailedPrecondition) << worker.status();
  EXPECT_NE(worker.status().message().find(copy + ": not a regular file owned by root or this "
                                                  "user and writable by no one else"),
            std::string::npos)
      << worker.status();
  ASSERT_EQ(chmod(copy.c_str(), 0755), 0);
  ASSERT_EQ(rename(init.c_str(), (init + ".moved").c_str()), 0);
  ASSERT_EQ(unlink(copy.c_str()), 0);
  worker = WorkerProcess::Start(launch);
  ASSERT_OK(worker);
  EXPECT_NE((*worker)->pid(), (*worker)->worker_pid());
  worker = absl::CancelledError();
  launch.executables = nullptr;
  copy_runfile("server/ffibox-worker", copy, 0755);
  ASSERT_EQ(rename((init + ".moved").c_str(), init.c_str()), 0);
  unlink(init.c_str());

  launch.jail.pid_namespace = false;
  launch.jail.proc = false;  // a fresh /proc needs the pid namespace
  worker = WorkerProcess::Start(launch);
  ASSERT_OK(worker);
  EXPECT_EQ((*worker)->pid(), (*worker)->worker_pid());
  unlink(copy.c_str());
  rmdir(directory.c_str());
}

// The worker binaries are opened only from a directory, and only as files, that no one but
// root or the broker's user could have written: whoever could would choose what runs before
// the jail is whole.
TEST(Jail, WorkerBinariesOthersCouldHaveWrittenAreNotOpened) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string directory = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/worker-shared");
  ASSERT_EQ(mkdir(directory.c_str(), 0755), 0);
  const std::string copy = directory + "/ffibox-worker";
  {
    const std::string binary = ReadWholeFile(Runfile("server/ffibox-worker"));
    ASSERT_FALSE(binary.empty());
    FILE* out = fopen(copy.c_str(), "w");
    ASSERT_NE(out, nullptr);
    ASSERT_EQ(fwrite(binary.data(), 1, binary.size(), out), binary.size());
    ASSERT_EQ(fclose(out), 0);
  }
  ASSERT_EQ(chmod(copy.c_str(), 0755), 0);
  ASSERT_OK(WorkerExecutables::Open(copy));

  ASSERT_EQ(chmod(directory.c_str(), 0777), 0);
  absl::StatusOr<std::shared_ptr<const WorkerExecutables>> opened = WorkerExecutables::Open(copy);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
  EXPECT_NE(opened.status().message().find(absl::StrCat("the directory of the worker binaries, ",
                                                        directory, ", is not owned by root")),
            std::string::npos)
      << opened.status();
  ASSERT_EQ(chmod(directory.c_str(), 0755), 0);

  for (mode_t mode : {0757, 0775}) {
    ASSERT_EQ(chmod(copy.c_str(), mode), 0);
    opened = WorkerExecutables::Open(copy);
    ASSERT_FALSE(opened.ok()) << std::oct << mode;
    EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
    EXPECT_NE(opened.status().message().find("writable by no one else"), std::string::npos)
        << opened.status();
  }
  ASSERT_EQ(chmod(copy.c_str(), 0644), 0);
  opened = WorkerExecutables::Open(copy);
  ASSERT_FALSE(opened.ok());
  EXPECT_NE(opened.status().message().find(copy + ": not executable"), std::string::npos)
      << opened.status();
  unlink(copy.c_str());
  rmdir(directory.c_str());
}

// ffibox-init does nothing unless it is a jail's pid 1 with the command line ffiboxd gives it.
TEST(Jail, FfiboxInitRefusesToRunOutsideAJail) {
  const std::string init = Runfile("server/ffibox-init");
  for (std::vector<std::string> args :
       {std::vector<std::string>{}, {"1", "/bin/true"}, {"99", "/bin/true"}, {"x", "/bin/true"}}) {
    std::vector<char*> argv = {const_cast<char*>("ffibox-init")};
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      int null = open("/dev/null", O_WRONLY);
      dup2(null, 2);
      execv(init.c_str(), argv.data());
      _exit(127);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 2) << args.size();
  }
}

}  // namespace
}  // namespace ffibox

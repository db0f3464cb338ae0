// The jail end to end: a real ffiboxd with the jail on, real jailed workers, and
// tests/testlibs/libffibox_probe.so trying what a library must not do. Each attempt is
// blocked (the call sees -errno) or kills its worker with SANDBOX_VIOLATION naming the
// syscall; a memory or CPU cap gives a failed allocation or RESOURCE_EXHAUSTED. Throughout,
// the broker stays up and a well-behaved session in parallel keeps its answers and its
// worker.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/ffibox_client.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "server/jail/sanitizers.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::RunfilePath;
using test_support::TestServer;

std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  return realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : path;
}

std::string ProbeLibPath() { return RealPath(RunfilePath("tests/testlibs/libffibox_probe.so")); }

// A scratch directory of the test, outside every library root.
std::string TestTmpDir() {
  const char* dir = getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

class JailEscapeTest : public ::testing::Test {
 protected:
  virtual std::vector<std::string> ServerFlags() const { return {}; }

  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start(ServerFlags());
    ASSERT_OK(server);
    server_ = std::move(*server);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_->address());
    ASSERT_OK(client);
    client_ = std::move(*client);
    StartBystander();
    absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession();
    ASSERT_OK(session);
    session_ = std::move(*session);
    absl::StatusOr<Library> probe = session_->Load(ProbeLibPath());
    ASSERT_OK(probe);
    probe_ = std::make_unique<Library>(*probe);
  }

  void TearDown() override {
    if (server_ == nullptr) return;
    EXPECT_EQ(kill(server_->pid(), 0), 0) << "the broker died";
    ExpectBystanderServing();
  }

  // A second session, in its own worker, that must keep working whatever the probe does.
  void StartBystander() {
    absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession();
    ASSERT_OK(session);
    bystander_ = std::move(*session);
    absl::StatusOr<Library> libm = bystander_->Load("libm.so.6");
    ASSERT_OK(libm);
    absl::StatusOr<TypedFunction<double(double)>> cos = libm->Function<double(double)>("cos");
    ASSERT_OK(cos);
    cos_ = std::make_unique<TypedFunction<double(double)>>(*cos);
    ExpectBystanderServing();
  }

  void ExpectBystanderServing() {
    ASSERT_NE(cos_, nullptr);
    absl::StatusOr<double> value = (*cos_)(0.5);
    ASSERT_OK(value);
    EXPECT_EQ(*value, std::cos(0.5));
    EXPECT_EQ(bystander_->generation(), 1u) << "the bystander's worker was disturbed";
  }

  template <typename Signature>
  TypedFunction<Signature> Probe(const char* name) {
    absl::StatusOr<TypedFunction<Signature>> function = probe_->Function<Signature>(name);
    EXPECT_TRUE(function.ok()) << function.status();
    return *function;
  }

  // Expects `result` to be the worker's death by the seccomp policy for one of `syscalls`.
  template <typename T>
  static void ExpectViolation(const absl::StatusOr<T>& result, std::vector<std::string> syscalls) {
    ASSERT_FALSE(result.ok()) << "the call succeeded: " << *result;
    v1::Error error = ErrorOf(result.status());
    EXPECT_EQ(error.code(), v1::SANDBOX_VIOLATION) << result.status();
    EXPECT_EQ(error.signal(), SIGKILL) << result.status();  // ffiboxd killed it
    EXPECT_TRUE(std::find(syscalls.begin(), syscalls.end(), error.syscall()) != syscalls.end())
        << "syscall \"" << error.syscall() << "\": " << result.status();
    EXPECT_NE(error.message().find(absl::StrCat("called ", error.syscall())), std::string::npos)
        << error.message();
  }

  // The session's next call runs on a fresh worker.
  void ExpectProbeRecovers() {
    absl::StatusOr<int> pid = Probe<int()>("probe_getpid")();
    ASSERT_OK(pid);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<Session> bystander_;
  std::unique_ptr<TypedFunction<double(double)>> cos_;
  std::unique_ptr<Session> session_;
  std::unique_ptr<Library> probe_;
};

TEST_F(JailEscapeTest, ReadingShadowOrAFileOutsideTheRootsIsBlocked) {
  auto read_file = Probe<long(const char*, Buffer&, long)>("probe_read_file");
  Buffer shadow = Buffer::Out(4096);
  absl::StatusOr<long> got = read_file("/etc/shadow", shadow, 4096);
  ASSERT_OK(got);
  EXPECT_LT(*got, 0) << "read " << *got << " bytes of /etc/shadow";
  EXPECT_EQ(shadow.data, std::string(4096, '\0'));

  const std::string secret_path = TestTmpDir() + "/sandbox_secret.txt";
  const std::string secret = "the launch codes are 0000";
  std::ofstream(secret_path) << secret;
  Buffer out = Buffer::Out(4096);
  got = read_file(secret_path.c_str(), out, 4096);
  ASSERT_OK(got);
  EXPECT_LT(*got, 0) << "read " << *got << " bytes of " << secret_path;
  EXPECT_EQ(out.data.find("launch codes"), std::string::npos);
  unlink(secret_path.c_str());
}

TEST_F(JailEscapeTest, WritingOutsideTmpFailsAndTmpIsWritable) {
  auto write_file = Probe<long(const char*, const char*)>("probe_write_file");
  const std::string outside = TestTmpDir() + "/sandbox_escape.txt";
  const std::string in_root = ProbeLibPath() + ".planted";
  for (const std::string& path : {std::string("/etc/ffibox_planted"), outside, in_root,
                                  std::string("/usr/lib/ffibox_planted")}) {
    absl::StatusOr<long> wrote = write_file(path.c_str(), "x");
    ASSERT_OK(wrote);
    EXPECT_LT(*wrote, 0) << "wrote " << path;
    EXPECT_NE(access(path.c_str(), F_OK), 0) << path << " appeared on the host";
  }
  absl::StatusOr<long> wrote = write_file("/tmp/probe.txt", "ok");
  ASSERT_OK(wrote);
  EXPECT_EQ(*wrote, 2);
  Buffer back = Buffer::Out(16);
  absl::StatusOr<long> got =
      Probe<long(const char*, Buffer&, long)>("probe_read_file")("/tmp/probe.txt", back, 16);
  ASSERT_OK(got);
  EXPECT_EQ(*got, 2);
  EXPECT_EQ(back.data.substr(0, 2), "ok");
}

// No socket of any family but unix (which fails alike) and netlink: socket() fails with
// EACCES (libcurl probes IPv6 as it starts, and goes on), and nothing reaches the listener.
TEST_F(JailEscapeTest, ConnectingToALoopbackListenerFailsAndNeverReachesIt) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address = {};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const int port = ntohs(address.sin_port);

  absl::StatusOr<int> connected = Probe<int(int)>("probe_connect_tcp")(port);
  ASSERT_OK(connected);
  EXPECT_EQ(*connected, -EACCES);
  pollfd pfd = {listener, POLLIN, 0};
  EXPECT_EQ(poll(&pfd, 1, 300), 0) << "the listener got a connection";
  EXPECT_LT(accept(listener, nullptr, nullptr), 0);
  close(listener);
  ExpectProbeRecovers();
}

// A unix stream listener of the host, on a path or an abstract address, that a library in
// the jail tries to reach.
class HostUnixListener {
 public:
  // Listens on `name`: a path, or with `abstract` set the abstract address "\0name".
  HostUnixListener(const std::string& name, bool abstract) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    const size_t offset = abstract ? 1 : 0;
    if (offset + name.size() >= sizeof(address.sun_path)) {
      ADD_FAILURE() << name << " is too long for a unix socket address";
      return;
    }
    memcpy(address.sun_path + offset, name.data(), name.size());
    const socklen_t size =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + offset + name.size());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&address), size), 0) << strerror(errno);
    EXPECT_EQ(listen(fd_, 8), 0) << strerror(errno);
  }
  ~HostUnixListener() { close(fd_); }

  // True when a connection is waiting, false after `wait_ms` without one.
  bool Reached(int wait_ms) const {
    pollfd pfd = {fd_, POLLIN, 0};
    return poll(&pfd, 1, wait_ms) != 0;
  }

 private:
  int fd_ = -1;
};

// What a worker reaches over AF_UNIX: nothing of the host. Expects probe_connect_unix to
// return (the worker lives) -`path_errno` for the broker's own socket and for a listener of
// the test's on a path, -`abstract_errno` for one on an abstract address, and none of the
// listeners to see a connection.
void ExpectNoUnixSocketOfTheHostReachable(const TestServer& server,
                                          TypedFunction<int(const char*, int)> connect_unix,
                                          int path_errno, int abstract_errno) {
  const std::string broker_socket = server.address().substr(strlen("unix:"));
  // TEST_TMPDIR is too long for a socket's path.
  char directory[] = "/tmp/ffibox-host-XXXXXX";
  ASSERT_NE(mkdtemp(directory), nullptr) << strerror(errno);
  const std::string path = absl::StrCat(directory, "/listener.sock");
  const std::string abstract = absl::StrCat("ffibox-host-listener-", getpid());
  HostUnixListener on_path(path, /*abstract=*/false);
  HostUnixListener on_abstract(abstract, /*abstract=*/true);
  for (const std::string& target : {broker_socket, path}) {
    absl::StatusOr<int> connected = connect_unix(target.c_str(), 0);
    ASSERT_OK(connected);
    EXPECT_EQ(*connected, -path_errno) << target << ": " << strerror(-*connected);
  }
  absl::StatusOr<int> connected = connect_unix(abstract.c_str(), 1);
  ASSERT_OK(connected);
  EXPECT_EQ(*connected, -abstract_errno) << "@" << abstract << ": " << strerror(-*connected);
  EXPECT_FALSE(on_path.Reached(300)) << "the listener on " << path << " got a connection";
  EXPECT_FALSE(on_abstract.Reached(0)) << "the listener on @" << abstract << " got one";
  unlink(path.c_str());
  rmdir(directory);
}

// The strict policy refuses every unix socket without killing the worker (socket() fails
// with EACCES), so nothing of the host is reached through seccomp alone.
TEST_F(JailEscapeTest, UnixSocketsFailWithoutKillingTheWorkerAndReachNothing) {
  ExpectNoUnixSocketOfTheHostReachable(*server_, Probe<int(const char*, int)>("probe_connect_unix"),
                                       EACCES, EACCES);
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
}

// getpwuid and friends first ask nscd over a unix socket; that must fail quietly so that
// glibc falls back to its files. The jail's view has no /etc/passwd: every lookup returns
// NULL with errno ENOENT (getpwuid_r returns ENOENT), as on a host without the file.
TEST_F(JailEscapeTest, PasswdLookupsReturnWithoutKillingTheWorker) {
  for (const char* function : {"probe_getpwuid", "probe_getpwuid_r"}) {
    Buffer name = Buffer::Out(256);
    absl::StatusOr<long> found = Probe<long(int, Buffer&, long)>(function)(0, name, 256);
    SCOPED_TRACE(function);
    ASSERT_OK(found);
    EXPECT_EQ(*found, -ENOENT) << function << " found " << name.data.c_str();
  }
  Buffer name = Buffer::Out(256);
  absl::StatusOr<long> found =
      Probe<long(const char*, Buffer&, long)>("probe_getpwnam")("root", name, 256);
  ASSERT_OK(found);
  EXPECT_EQ(*found, -ENOENT) << "probe_getpwnam found " << name.data.c_str();
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
}

TEST_F(JailEscapeTest, ExecveIsAViolation) {
  ExpectViolation(Probe<int(const char*)>("probe_execve")("/bin/true"), {"execve"});
  ExpectProbeRecovers();
}

TEST_F(JailEscapeTest, ALibrarysOwnSigsysHandlerCannotHideAViolation) {
  ExpectViolation(Probe<int(const char*)>("probe_swallow_sigsys_then_execve")("/bin/true"),
                  {"execve"});
  ExpectProbeRecovers();
}

TEST_F(JailEscapeTest, AForgedCrashReportIsACrashNotASandboxViolation) {
  absl::StatusOr<int> result = Probe<int()>("probe_forge_sigsys_report")();
  ASSERT_FALSE(result.ok());
  v1::Error error = ErrorOf(result.status());
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << result.status();
  EXPECT_EQ(error.syscall(), "") << result.status();
  EXPECT_EQ(error.signal(), SIGSYS) << result.status();
  EXPECT_NE(error.message().find("unverified"), std::string::npos) << error.message();
  ExpectProbeRecovers();
}

TEST_F(JailEscapeTest, TheJailsInitShowsNothingOfTheBroker) {
  Buffer buffer = Buffer::Out(4096);
  absl::StatusOr<long> n = Probe<long(Buffer&, long)>("probe_init_cmdline")(buffer, 4096);
  ASSERT_OK(n);
  ASSERT_GT(*n, 0) << "errno " << -*n;
  std::string cmdline = buffer.data.substr(0, static_cast<size_t>(*n));
  EXPECT_EQ(std::string(cmdline.c_str()), "ffibox-init");
  EXPECT_EQ(cmdline.find("ffiboxd"), std::string::npos);
  EXPECT_EQ(cmdline.find("--"), std::string::npos);
}

TEST_F(JailEscapeTest, WhatLibraryConstructorsCommonlyDoIsAllowed) {
  absl::StatusOr<int> result = Probe<int()>("probe_library_init_calls")();
  ASSERT_OK(result);
  EXPECT_EQ(*result, 0) << "errno " << -*result;
}

// A tmpfs's size does not count its inodes and dentries, which are kernel memory: with the
// kernel's default cap (half the host's pages), empty files in the worker's /tmp and
// /dev/shm pinned gigabytes of it, outside every limit but a cgroup's. Each has as many
// files as pages (16 MiB: 4096, its root included; 1 MiB: 256), and the worker lives.
TEST_F(JailEscapeTest, TheWorkersTmpfsMountsHoldAFileAPageAtMost) {
  auto fill = Probe<long(const char*, long)>("probe_fill_with_empty_files");
  for (const auto& [dir, pages] :
       std::vector<std::pair<const char*, long>>{{"/tmp", 4096}, {"/dev/shm", 256}}) {
    absl::StatusOr<long> made = fill(dir, 100000);
    ASSERT_OK(made);
    EXPECT_GT(*made, pages - 16) << dir;
    EXPECT_LT(*made, pages) << dir << ": " << *made << " empty files (-errno when negative)";
  }
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
}

// Descriptors queued where nobody reads them count against every worker's user (the kernel's
// in-flight count): past the sender's RLIMIT_NOFILE, no other worker could hand over its
// seccomp listener. The broker reads neither of its sockets after the listener, and has
// shut their reading ends: nothing stays queued. The bystander and a new worker still start.
TEST_F(JailEscapeTest, ALibraryCannotQueueDescriptorsInTheBrokersSockets) {
  auto find = Probe<int(int, int, int)>("probe_find_descriptor");
  for (int nth : {0, 1}) {  // the channel's hangup socket and the descriptor socket
    absl::StatusOr<int> fd = find(S_IFSOCK, 0, nth);
    ASSERT_OK(fd);
    ASSERT_GT(*fd, 2) << "socket " << nth << " not found: " << *fd;
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<int> passed = Probe<int(int)>("probe_pass_descriptor")(*fd);
      ASSERT_OK(passed);
      EXPECT_EQ(*passed, -EPIPE) << "fd " << *fd << ": a descriptor was queued";
    }
  }
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
  absl::StatusOr<std::unique_ptr<Session>> another = client_->OpenSession();
  ASSERT_OK(another);
  ASSERT_OK((*another)->Load("libm.so.6").status());
}

// Budgets the kernel keeps per user, which every worker shares: a worker's own share of each.
TEST_F(JailEscapeTest, AWorkersShareOfPerUserBudgetsIsItsOwnAndSmall) {
  auto hard = Probe<long(int)>("probe_hard_limit");
  const std::vector<std::pair<int, long>> most = {{RLIMIT_SIGPENDING, 32},    {RLIMIT_RTPRIO, 0},
                                                  {RLIMIT_NICE, 0},           {RLIMIT_MSGQUEUE, 0},
                                                  {RLIMIT_MEMLOCK, 64 << 10}, {RLIMIT_NOFILE, 256}};
  for (const auto& [resource, limit] : most) {
    absl::StatusOr<long> got = hard(resource);
    ASSERT_OK(got);
    EXPECT_GE(*got, 0) << "resource " << resource;
    EXPECT_LE(*got, limit) << "resource " << resource;
  }
  absl::StatusOr<int> queued = Probe<int(int)>("probe_queue_signals")(1000);
  ASSERT_OK(queued);
  EXPECT_GT(*queued, 0);
  EXPECT_LE(*queued, 32) << "signals queued to itself";
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
}

// What would take from what every process of the host shares: a bigger pipe buffer (counted
// per user), the page cache of a file (dropped for everyone). Refused with EPERM, without
// killing the worker; the rest of fcntl and advice works.
TEST_F(JailEscapeTest, GrowingPipesAndDroppingThePageCacheAreRefused) {
  auto fadvise = Probe<int(int)>("probe_fadvise");
  absl::StatusOr<int> dropped = fadvise(POSIX_FADV_DONTNEED);
  ASSERT_OK(dropped);
  EXPECT_EQ(*dropped, -EPERM);
  for (int advice :
       {POSIX_FADV_NORMAL, POSIX_FADV_SEQUENTIAL, POSIX_FADV_WILLNEED, POSIX_FADV_NOREUSE}) {
    absl::StatusOr<int> advised = fadvise(advice);
    ASSERT_OK(advised);
    EXPECT_EQ(*advised, 0) << "advice " << advice;
  }
  absl::StatusOr<int> grown = Probe<int(int)>("probe_grow_pipe")(1 << 20);
  ASSERT_OK(grown);
  EXPECT_EQ(*grown, -EPERM);
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
  ExpectProbeRecovers();
}

// What libraries probe at load and handle being refused: a real-time priority for a thread
// named by its tid (EPICS libCom) fails with EPERM, the kernel's refusal; whether an ambient
// capability is set (libcap-ng's constructor, which libaudit and libpam link) is answered, 0.
// Neither kills the worker.
TEST_F(JailEscapeTest, ThreadSchedulingIsRefusedAndAmbientCapabilitiesAreRead) {
  absl::StatusOr<int> probed = Probe<int()>("probe_scheduler_and_ambient_caps")();
  ASSERT_OK(probed);
  EXPECT_EQ(*probed, -EPERM * 1000 + 0);
  absl::StatusOr<int> param = Probe<int()>("probe_set_own_thread_param")();
  ASSERT_OK(param);
  EXPECT_EQ(*param, 0) << "its own thread's priority, unchanged";
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
  ExpectProbeRecovers();
}

TEST_F(JailEscapeTest, ForkBombIsAViolationAndLeavesNoProcesses) {
  ExpectViolation(Probe<int(int)>("probe_fork_bomb")(1000), {"clone", "fork", "vfork"});
  EXPECT_TRUE(test_support::WaitFor(
      [&] {
        for (pid_t pid : test_support::DescendantsOf(server_->pid())) {
          (void)pid;
        }
        return test_support::DescendantsOf(server_->pid()).size() < 16;
      },
      absl::Seconds(5)));
  ExpectProbeRecovers();
}

TEST_F(JailEscapeTest, KillingTheBrokerIsAViolationAndTheBrokerLives) {
  ExpectViolation(Probe<int(int, int)>("probe_kill")(server_->pid(), SIGKILL), {"kill"});
  EXPECT_EQ(kill(server_->pid(), 0), 0);
  ExpectProbeRecovers();
}

TEST_F(JailEscapeTest, PtraceOfItsParentIsAViolation) {
  ExpectViolation(Probe<long()>("probe_ptrace_parent")(), {"ptrace"});
  ExpectProbeRecovers();
}

TEST_F(JailEscapeTest, TheWorkerIsPidTwoOfItsOwnNamespace) {
  absl::StatusOr<int> pid = Probe<int()>("probe_getpid")();
  ASSERT_OK(pid);
  EXPECT_EQ(*pid, 2) << "pid namespace inactive? (1 is its init)";
}

// The permissive policy lets a library create unix sockets and connect them; the jail's
// other layers still hide every socket of the host: its mount namespace shows no path
// socket (ENOENT) and its own network namespace holds no abstract address (ECONNREFUSED).
class PermissivePolicyTest : public JailEscapeTest {
 protected:
  std::vector<std::string> ServerFlags() const override { return {"--jail_policy=permissive"}; }
};

TEST_F(PermissivePolicyTest, NamespacesHideTheHostsUnixSockets) {
  ExpectNoUnixSocketOfTheHostReachable(*server_, Probe<int(const char*, int)>("probe_connect_unix"),
                                       ENOENT, ECONNREFUSED);
  EXPECT_EQ(session_->generation(), 1u) << "the worker was replaced";
}

TEST_F(JailEscapeTest, ALibraryKillingItselfIsACrashNotAResourceLimit) {
  // A SIGKILL no limit sent (its cgroup counted no OOM kill, it used little CPU time).
  absl::StatusOr<int> pid = Probe<int()>("probe_getpid")();
  ASSERT_OK(pid);
  absl::StatusOr<int> killed = Probe<int(int, int)>("probe_kill")(*pid, SIGKILL);
  ASSERT_FALSE(killed.ok()) << "the worker survived its own SIGKILL";
  v1::Error error = ErrorOf(killed.status());
  EXPECT_EQ(error.signal(), SIGKILL) << killed.status();
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << killed.status();
  ExpectProbeRecovers();
}

class SandboxLimitsTest : public JailEscapeTest {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {"--session_memory_bytes=536870912", "--session_cpu_seconds=1", "--pool_size=0"};
  }
};

TEST_F(SandboxLimitsTest, AllocatingPastTheMemoryCapFailsAndSmallAllocationsStillWork) {
  auto allocate = Probe<int(long)>("probe_allocate");
  absl::StatusOr<int> big = allocate(1024);
  // RLIMIT_AS refuses the malloc; without it (an AddressSanitizer build) the cgroup's cap
  // on resident memory ends the worker as it touches the pages.
  if (big.ok() && !kAddressSanitizer) {
    EXPECT_EQ(*big, -1) << "malloc of 1 GiB succeeded under a 512 MiB cap";
  } else {
    EXPECT_EQ(ErrorOf(big.status()).code(), v1::RESOURCE_EXHAUSTED) << big.status();
  }
  absl::StatusOr<int> small = allocate(16);
  ASSERT_OK(small);
  EXPECT_EQ(*small, 0);
}

TEST_F(SandboxLimitsTest, SpinningPastTheHardCpuCapIsResourceExhaustedNotACrash) {
  // SIGXCPU ignored: the kernel's SIGKILL at the hard limit, which the CPU time tells.
  absl::StatusOr<long> spun = Probe<long(long)>("probe_spin_ignoring_sigxcpu")(30);
  ASSERT_FALSE(spun.ok()) << "spun " << *spun << " s under a 1 s cap";
  v1::Error error = ErrorOf(spun.status());
  EXPECT_EQ(error.signal(), SIGKILL) << spun.status();
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED) << spun.status();
  EXPECT_NE(error.message().find("CPU time limit of 1 s"), std::string::npos) << error.message();
  ExpectProbeRecovers();
}

TEST_F(SandboxLimitsTest, SpinningPastTheCpuCapIsResourceExhausted) {
  absl::StatusOr<long> spun = Probe<long(long)>("probe_spin")(30);
  ASSERT_FALSE(spun.ok()) << "spun " << *spun << " s under a 1 s cap";
  v1::Error error = ErrorOf(spun.status());
  EXPECT_EQ(error.code(), v1::RESOURCE_EXHAUSTED) << spun.status();
  EXPECT_NE(error.message().find("CPU time limit of 1 s"), std::string::npos) << error.message();
  ExpectProbeRecovers();
}

}  // namespace
}  // namespace ffibox

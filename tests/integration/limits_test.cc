// Limits end to end, through real ffiboxd processes: session quotas (per server and per
// identity), the message size cap, the library allowlist (paths outside the roots, symlinks
// and `..` escapes, per-identity roots), the per-session memory and CPU caps, and the pool
// of pre-started workers. Each limit gives its typed error while the server, and a parallel
// session, keep working.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cpp/ffibox_client.h"
#include "core/test_types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/jail/sanitizers.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::ChildrenOf;
using test_support::TestLibPath;
using test_support::TestServer;
using test_support::WaitFor;

constexpr char kOtherToken[] = "other-identity-token-0123456789";
constexpr char kNarrowToken[] = "narrow-identity-token-0123456789";

// A fresh directory under the test's temporary directory, by its real path.
std::string MakeDirectory(const std::string& name) {
  const char* tmp = getenv("TEST_TMPDIR");
  std::filesystem::path path = std::filesystem::path(tmp != nullptr ? tmp : "/tmp") / name;
  std::filesystem::create_directories(path);
  return std::filesystem::canonical(path).string();
}

std::string WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream(path) << contents;
  return path;
}

class LimitsTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> flags) {
    absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start(flags);
    ASSERT_OK(server);
    server_ = std::move(*server);
    client_ = Connect();
  }

  std::unique_ptr<Client> Connect(const std::string& token = "") {
    ConnectOptions options;
    options.bearer_token = token;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_->address(), options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  std::unique_ptr<Session> Open(Client& client) {
    absl::StatusOr<std::unique_ptr<Session>> session = client.OpenSession();
    EXPECT_TRUE(session.ok()) << session.status();
    return session.ok() ? std::move(*session) : nullptr;
  }

  // cos(0) through `session`: proves the session (and its worker) serves.
  static void ExpectCosWorks(Session& session) {
    absl::StatusOr<Library> libm = session.Load("libm.so.6");
    ASSERT_OK(libm);
    absl::StatusOr<TypedFunction<double(double)>> cos = libm->Function<double(double)>("cos");
    ASSERT_OK(cos);
    absl::StatusOr<double> one = (*cos)(0.0);
    ASSERT_OK(one);
    EXPECT_EQ(*one, 1.0);
  }

  static void ExpectAddWorks(Library& library) {
    absl::StatusOr<TypedFunction<int(int, int)>> add = library.Function<int(int, int)>("add_int");
    ASSERT_OK(add);
    absl::StatusOr<int> sum = (*add)(2, 3);
    ASSERT_OK(sum);
    EXPECT_EQ(*sum, 5);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(LimitsTest, MaxSessionsRefusesTheNextSessionWhileOpenOnesKeepWorking) {
  StartServer({"--max_sessions=2"});
  std::unique_ptr<Session> first = Open(*client_);
  std::unique_ptr<Session> second = Open(*client_);
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  absl::StatusOr<std::unique_ptr<Session>> third = client_->OpenSession();
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(ErrorOf(third.status()).code(), v1::RESOURCE_EXHAUSTED) << third.status();
  EXPECT_NE(third.status().message().find("limits.max_sessions"), std::string::npos)
      << third.status();
  ExpectCosWorks(*first);
  ExpectCosWorks(*second);
  // A closed session gives its slot back.
  second.reset();
  std::unique_ptr<Session> again;
  EXPECT_TRUE(WaitFor(
      [&] {
        absl::StatusOr<std::unique_ptr<Session>> opened = client_->OpenSession();
        if (opened.ok()) again = std::move(*opened);
        return again != nullptr;
      },
      absl::Seconds(5)));
  ASSERT_NE(again, nullptr);
  ExpectCosWorks(*again);
}

TEST_F(LimitsTest, SessionsPerIdentityAreCountedPerIdentity) {
  const std::string dir = MakeDirectory("per_identity");
  const std::string config =
      WriteFile(dir + "/ffiboxd.conf", absl::StrCat("identities { name: \"other\" bearer_token: \"",
                                                    kOtherToken, "\" max_sessions: 2 }"));
  StartServer({"--config=" + config, "--max_sessions_per_identity=1"});
  std::unique_ptr<Session> local = Open(*client_);
  ASSERT_NE(local, nullptr);
  absl::StatusOr<std::unique_ptr<Session>> refused = client_->OpenSession();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorOf(refused.status()).code(), v1::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.status().message().find("\"local\""), std::string::npos) << refused.status();

  // Another identity has its own quota (2, from its configuration).
  std::unique_ptr<Client> other = Connect(kOtherToken);
  ASSERT_NE(other, nullptr);
  std::unique_ptr<Session> other1 = Open(*other);
  std::unique_ptr<Session> other2 = Open(*other);
  ASSERT_NE(other2, nullptr);
  EXPECT_EQ(ErrorOf(other->OpenSession().status()).code(), v1::RESOURCE_EXHAUSTED);
  ExpectCosWorks(*local);
  ExpectCosWorks(*other1);
}

TEST_F(LimitsTest, OversizedRequestIsRefusedAndTheSessionStaysUsable) {
  StartServer({"--max_message_bytes=4096"});
  std::unique_ptr<Session> session = Open(*client_);
  ASSERT_NE(session, nullptr);
  absl::StatusOr<Library> huge = session->Load("/" + std::string(8000, 'x'));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(ErrorOf(huge.status()).code(), v1::RESOURCE_EXHAUSTED) << huge.status();
  ExpectCosWorks(*session);
}

// The broker hands the worker its block limit: a call whose blocks are over the worker's
// built-in 256 MiB but within a server's larger --max_block_bytes runs, and one over the
// server's limit is refused.
TEST_F(LimitsTest, TheWorkerAcceptsTheBlocksTheServersLimitAllows) {
  StartServer({"--max_block_bytes=536870912"});
  std::unique_ptr<Session> session = Open(*client_);
  ASSERT_NE(session, nullptr);
  absl::StatusOr<Library> lib = session->Load(TestLibPath());
  ASSERT_OK(lib);
  v1::Signature signature;
  *signature.mutable_result() = ::ffibox::testing::ScalarType(v1::INT);
  *signature.add_params() = ::ffibox::testing::ScalarType(v1::INT);
  *signature.add_params() = ::ffibox::testing::ScalarType(v1::INT);
  absl::StatusOr<RawFunction> add = lib->Resolve("add_int", signature);
  ASSERT_OK(add);
  v1::Call call;
  *call.add_args() = ::ffibox::testing::IntValue(2);
  *call.add_args() = ::ffibox::testing::IntValue(3);
  v1::MemoryBlock* block = call.add_blocks();
  block->set_size(uint64_t{300} << 20);  // an IN block the function ignores; no data sent
  block->set_direction(v1::IN);
  absl::StatusOr<v1::CallResult> result = add->Call(call);
  ASSERT_OK(result);
  EXPECT_EQ(result->result().int_value(), 5);
  block->set_size(uint64_t{600} << 20);
  EXPECT_THAT(add->Call(call), StatusIs(v1::RESOURCE_EXHAUSTED));
  ExpectAddWorks(*lib);
}

class AllowlistTest : public LimitsTest {
 protected:
  void SetUp() override {
    // roots/libin.so (a copy of the test library), outside/libout.so (another copy),
    // roots/libescape.so -> outside/libout.so; in a directory others may search (a root
    // ffiboxd hands another identity's workers nothing else), unlike the test's own
    // temporary directory, in root's home.
    char base[] = "/tmp/ffibox-allow-XXXXXX";
    ASSERT_NE(mkdtemp(base), nullptr);
    ASSERT_EQ(chmod(base, 0755), 0);
    base_ = base;
    roots_ = base_ + "/allow/roots";
    outside_ = base_ + "/allow/outside";
    std::filesystem::create_directories(roots_);
    std::filesystem::create_directories(outside_);
    std::filesystem::copy_file(TestLibPath(), roots_ + "/libin.so",
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(TestLibPath(), outside_ + "/libout.so",
                               std::filesystem::copy_options::overwrite_existing);
    std::filesystem::remove(roots_ + "/libescape.so");
    std::filesystem::create_symlink(outside_ + "/libout.so", roots_ + "/libescape.so");
    const std::string config =
        WriteFile(base_ + "/ffiboxd.conf",
                  absl::StrCat("identities { name: \"narrow\" bearer_token: \"", kNarrowToken,
                               "\" allowed_library_roots: \"", roots_, "\" }"));
    StartServer({"--allow_root=" + roots_, "--config=" + config});
    session_ = Open(*client_);
    ASSERT_NE(session_, nullptr);
  }

  void TearDown() override {
    LimitsTest::TearDown();
    std::filesystem::remove_all(base_);
  }

  void ExpectNotAllowed(const std::string& path) {
    absl::StatusOr<Library> library = session_->Load(path);
    ASSERT_FALSE(library.ok()) << path;
    EXPECT_EQ(ErrorOf(library.status()).code(), v1::LIBRARY_NOT_ALLOWED) << library.status();
    EXPECT_NE(library.status().message().find("outside the allowed roots ["), std::string::npos)
        << library.status();
    EXPECT_NE(library.status().message().find(roots_), std::string::npos) << library.status();
  }

  std::string base_;
  std::string roots_;
  std::string outside_;
  std::unique_ptr<Session> session_;
};

TEST_F(AllowlistTest, LibraryInsideTheRootsLoads) {
  absl::StatusOr<Library> library = session_->Load(roots_ + "/libin.so");
  ASSERT_OK(library);
  ExpectAddWorks(*library);
}

TEST_F(AllowlistTest, PathOutsideTheRootsIsNotAllowed) {
  ExpectNotAllowed(outside_ + "/libout.so");
  ExpectCosWorks(*session_);
}

TEST_F(AllowlistTest, SymlinkInsideTheRootsPointingOutsideIsNotAllowed) {
  ExpectNotAllowed(roots_ + "/libescape.so");
}

TEST_F(AllowlistTest, DotDotEscapeIsNotAllowed) {
  ExpectNotAllowed(roots_ + "/../outside/libout.so");
  ExpectNotAllowed(roots_ + "/../../allow/outside/./libout.so");
}

TEST_F(AllowlistTest, AllowlistsDifferPerIdentity) {
  // "narrow" may load only from roots_: not the system libraries, not the test library.
  std::unique_ptr<Client> narrow = Connect(kNarrowToken);
  ASSERT_NE(narrow, nullptr);
  std::unique_ptr<Session> session = Open(*narrow);
  ASSERT_NE(session, nullptr);
  absl::StatusOr<Library> in = session->Load(roots_ + "/libin.so");
  ASSERT_OK(in);
  ExpectAddWorks(*in);
  EXPECT_EQ(ErrorOf(session->Load("libm.so.6").status()).code(), v1::LIBRARY_NOT_ALLOWED);
  EXPECT_EQ(ErrorOf(session->Load(TestLibPath()).status()).code(), v1::LIBRARY_NOT_ALLOWED);
  // A library inside its roots but in a directory others may not search: the worker runs
  // as nobody, and a root ffiboxd opens it only for clients who may read it (the local
  // identity, ffiboxd's own user), never for another identity.
  const std::string closed = roots_ + "/closed";
  std::filesystem::create_directories(closed);
  ASSERT_EQ(chmod(closed.c_str(), 0700), 0);
  std::filesystem::copy_file(TestLibPath(), closed + "/libclosed.so");
  ASSERT_EQ(chmod((closed + "/libclosed.so").c_str(), 0755), 0);
  if (geteuid() == 0) {
    absl::StatusOr<Library> refused = session->Load(closed + "/libclosed.so");
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(ErrorOf(refused.status()).code(), v1::LIBRARY_LOAD_FAILED) << refused.status();
    EXPECT_NE(refused.status().message().find("which others may not search"), std::string::npos)
        << refused.status();
  }
  ASSERT_OK(session_->Load(closed + "/libclosed.so"));
  // The local identity has the default roots, which include the system libraries.
  absl::StatusOr<Library> testlib = session_->Load(TestLibPath());
  ASSERT_OK(testlib);
  ExpectCosWorks(*session_);
}

// The memory cap refused `allocate_mib` (tests/testlibs/limits.c): RLIMIT_AS made its
// malloc return NULL, or, in an AddressSanitizer build (no RLIMIT_AS:
// server/jail/sanitizers.h), the cgroup's cap on resident memory ended the worker.
void ExpectAllocationRefused(const absl::StatusOr<int>& result, const char* what) {
  if (kAddressSanitizer) {
    ASSERT_FALSE(result.ok()) << what;
    EXPECT_EQ(ErrorOf(result.status()).code(), v1::RESOURCE_EXHAUSTED) << result.status();
  } else {
    ASSERT_OK(result);
    EXPECT_EQ(*result, 0) << what;
  }
}

TEST_F(LimitsTest, AllocationPastTheMemoryCapFailsWhileAParallelSessionWorks) {
  StartServer({"--session_memory_bytes=268435456"});  // 256 MiB of address space
  std::unique_ptr<Session> session = Open(*client_);
  std::unique_ptr<Session> bystander = Open(*client_);
  ASSERT_NE(bystander, nullptr);
  absl::StatusOr<Library> library = session->Load(TestLibPath());
  ASSERT_OK(library);
  absl::StatusOr<TypedFunction<int(int)>> allocate = library->Function<int(int)>("allocate_mib");
  ASSERT_OK(allocate);
  absl::StatusOr<int> small = (*allocate)(16);
  ASSERT_OK(small);
  EXPECT_EQ(*small, 1);
  ExpectAllocationRefused((*allocate)(1024), "malloc of 1 GiB succeeded under a 256 MiB cap");
  ExpectCosWorks(*bystander);
  ExpectCosWorks(*session);
}

TEST_F(LimitsTest, SessionMemoryLimitCapsOnlyThatSession) {
  StartServer({});  // no server-wide cap
  SessionOptions capped;
  capped.memory_limit_bytes = uint64_t{256} << 20;
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(capped);
  ASSERT_OK(session);
  EXPECT_EQ((*session)->info().memory_limit_bytes(), uint64_t{256} << 20);
  std::unique_ptr<Session> uncapped = Open(*client_);
  ASSERT_NE(uncapped, nullptr);
  for (Session* s : {session->get(), uncapped.get()}) {
    absl::StatusOr<Library> library = s->Load(TestLibPath());
    ASSERT_OK(library);
    absl::StatusOr<TypedFunction<int(int)>> allocate = library->Function<int(int)>("allocate_mib");
    ASSERT_OK(allocate);
    absl::StatusOr<int> big = (*allocate)(512);
    if (s == uncapped.get()) {
      ASSERT_OK(big);
      EXPECT_EQ(*big, 1);
    } else {
      ExpectAllocationRefused(big, "512 MiB with a 256 MiB session cap");
    }
  }
}

TEST_F(LimitsTest, SessionMemoryLimitAboveTheServersCapOrTooSmallIsRefused) {
  StartServer({"--session_memory_bytes=268435456"});
  for (uint64_t bytes : {uint64_t{1} << 30, uint64_t{1} << 20}) {
    SessionOptions options;
    options.memory_limit_bytes = bytes;
    absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(options);
    v1::Error error = ErrorOf(session.status());
    EXPECT_EQ(error.code(), v1::INVALID_ARGUMENT) << session.status();
    EXPECT_EQ(error.field(), "open.memory_limit_bytes") << session.status();
  }
}

TEST_F(LimitsTest, SpinningPastTheCpuCapIsResourceExhaustedWhileAParallelSessionWorks) {
  StartServer({"--session_cpu_seconds=1"});
  std::unique_ptr<Session> session = Open(*client_);
  std::unique_ptr<Session> bystander = Open(*client_);
  ASSERT_NE(bystander, nullptr);
  absl::StatusOr<Library> library = session->Load(TestLibPath());
  ASSERT_OK(library);
  absl::StatusOr<TypedFunction<int(int)>> spin = library->Function<int(int)>("spin_cpu_seconds");
  ASSERT_OK(spin);
  absl::StatusOr<int> spun = (*spin)(10);
  ASSERT_FALSE(spun.ok());
  EXPECT_EQ(ErrorOf(spun.status()).code(), v1::RESOURCE_EXHAUSTED) << spun.status();
  ExpectCosWorks(*bystander);
  // The session restarts its worker, with a fresh CPU budget.
  ExpectAddWorks(*library);
}

TEST_F(LimitsTest, PooledWorkersServeSessionsLikeFreshOnes) {
  StartServer({"--pool_size=2"});
  ASSERT_TRUE(WaitFor([&] { return ChildrenOf(server_->pid()).size() >= 2; }, absl::Seconds(10)))
      << "the pool did not start its idle workers";
  for (int i = 0; i < 4; ++i) {
    std::unique_ptr<Session> session = Open(*client_);
    ASSERT_NE(session, nullptr);
    absl::StatusOr<Library> library = session->Load(TestLibPath());
    ASSERT_OK(library);
    ExpectAddWorks(*library);
    // A crash in a pooled worker is the same typed error, and the session restarts.
    absl::StatusOr<TypedFunction<int()>> crash = library->Function<int()>("crash_null_deref");
    ASSERT_OK(crash);
    absl::StatusOr<int> crashed = (*crash)();
    EXPECT_EQ(ErrorOf(crashed.status()).code(), v1::WORKER_CRASHED) << crashed.status();
    ExpectAddWorks(*library);
    ExpectCosWorks(*session);
  }
  // Sessions are gone; only the refilled pool remains.
  EXPECT_TRUE(WaitFor([&] { return ChildrenOf(server_->pid()).size() == 2; }, absl::Seconds(10)))
      << ChildrenOf(server_->pid()).size() << " children";
}

// The directory of the memory cgroup process `pid` is in, from /proc/PID/cgroup (cgroup v1:
// "N:controllers:/path" under /sys/fs/cgroup/memory; v2: "0::/path" under /sys/fs/cgroup);
// "" when there is none.
std::string MemoryCgroupOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/cgroup"));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[1].empty()) return absl::StrCat("/sys/fs/cgroup", parts[2]);
    std::vector<absl::string_view> controllers = absl::StrSplit(parts[1], ',');
    if (absl::c_linear_search(controllers, "memory")) {
      return absl::StrCat("/sys/fs/cgroup/memory", parts[2]);
    }
  }
  return "";
}

// The memory cap of each process of the server that is in a worker cgroup of its own.
std::map<pid_t, std::string> WorkerGroupMemoryCapsByPid(pid_t server) {
  std::map<pid_t, std::string> caps;
  for (pid_t pid : test_support::DescendantsOf(server)) {
    const std::string group = MemoryCgroupOf(pid);
    if (!absl::StrContains(group, "/worker-")) continue;
    for (const char* file : {"/memory.limit_in_bytes", "/memory.max"}) {
      std::ifstream in(group + file);
      std::string cap;
      if (std::getline(in, cap)) caps[pid] = cap;
    }
  }
  return caps;
}

std::vector<std::string> WorkerGroupMemoryCaps(pid_t server) {
  std::vector<std::string> caps;
  for (const auto& [pid, cap] : WorkerGroupMemoryCapsByPid(server)) caps.push_back(cap);
  return caps;
}

// The workers whose group has a memory cap of `cap`.
std::vector<pid_t> WorkersCappedAt(pid_t server, const std::string& cap) {
  std::vector<pid_t> pids;
  for (const auto& [pid, its_cap] : WorkerGroupMemoryCapsByPid(server)) {
    if (its_cap == cap) pids.push_back(pid);
  }
  return pids;
}

// Pooled workers wait in cgroups of their own (moving a process into a group is slow on
// cgroup v1, so it is not left for the session), and the session that takes one gets its
// own caps written into that group.
TEST_F(LimitsTest, PooledWorkersWaitInTheirOwnCgroupsAndTakeTheSessionsCap) {
  StartServer({"--pool_size=2", "--session_memory_bytes=1073741824"});
  ASSERT_TRUE(
      WaitFor([&] { return WorkerGroupMemoryCaps(server_->pid()).size() == 2; }, absl::Seconds(10)))
      << "idle pooled workers are not in worker cgroups: "
      << absl::StrJoin(WorkerGroupMemoryCaps(server_->pid()), ", ");
  EXPECT_THAT(WorkerGroupMemoryCaps(server_->pid()),
              ::testing::Each(::testing::StrEq(absl::StrCat(uint64_t{1} << 30))));
  SessionOptions capped;
  capped.memory_limit_bytes = uint64_t{256} << 20;
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(capped);
  ASSERT_OK(session);
  ExpectCosWorks(**session);  // takes a pooled worker
  EXPECT_THAT(WorkerGroupMemoryCaps(server_->pid()),
              ::testing::Contains(::testing::StrEq(absl::StrCat(uint64_t{256} << 20))).Times(1));
}

// The open alone takes the pooled worker, its cap written while the answer travels, so the
// first load does not wait for that; a session closed without a request leaves no worker.
TEST_F(LimitsTest, AnOpenTakesAPooledWorkerAndItsCloseReapsIt) {
  StartServer({"--pool_size=2", "--session_memory_bytes=1073741824"});
  const std::string session_cap = absl::StrCat(uint64_t{256} << 20);
  ASSERT_TRUE(WaitFor([&] { return WorkerGroupMemoryCaps(server_->pid()).size() == 2; },
                      absl::Seconds(10)));
  std::vector<pid_t> idle = WorkersCappedAt(server_->pid(), absl::StrCat(uint64_t{1} << 30));
  SessionOptions capped;
  capped.memory_limit_bytes = uint64_t{256} << 20;
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(capped);
  ASSERT_OK(session);
  ASSERT_TRUE(WaitFor([&] { return WorkersCappedAt(server_->pid(), session_cap).size() == 1; },
                      absl::Seconds(10)))
      << "no worker took the session's cap after its open: "
      << absl::StrJoin(WorkerGroupMemoryCaps(server_->pid()), ", ");
  const pid_t taken = WorkersCappedAt(server_->pid(), session_cap)[0];
  EXPECT_THAT(idle, ::testing::Contains(taken)) << "the session's worker was not a pooled one";
  ASSERT_OK((*session)->Close());
  EXPECT_TRUE(WaitFor([&] { return test_support::ProcessState(taken) == '\0'; }, absl::Seconds(10)))
      << "the worker of a session closed without a request outlived it";
}

// A session that does not restart workers takes its worker with its first request that
// needs one, as before: one taken at the open that died idle would end the session unused.
TEST_F(LimitsTest, ASessionThatDoesNotRestartTakesItsWorkerWithItsFirstRequest) {
  StartServer({"--pool_size=2", "--session_memory_bytes=1073741824"});
  const std::string session_cap = absl::StrCat(uint64_t{256} << 20);
  ASSERT_TRUE(WaitFor([&] { return WorkerGroupMemoryCaps(server_->pid()).size() == 2; },
                      absl::Seconds(10)));
  SessionOptions capped;
  capped.memory_limit_bytes = uint64_t{256} << 20;
  capped.restart = false;
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(capped);
  ASSERT_OK(session);
  EXPECT_FALSE(WaitFor([&] { return !WorkersCappedAt(server_->pid(), session_cap).empty(); },
                       absl::Seconds(1)))
      << "a session that does not restart workers took one at its open";
  ExpectCosWorks(**session);
  EXPECT_EQ(WorkersCappedAt(server_->pid(), session_cap).size(), 1u);
}

// A restart after a crash takes a pooled worker too: the worker that serves the session
// after the crash is one that was idle in the pool before it, with the session's cap.
TEST_F(LimitsTest, ARestartAfterACrashTakesAPooledWorker) {
  StartServer({"--pool_size=2", "--session_memory_bytes=1073741824"});
  const std::string session_cap = absl::StrCat(uint64_t{256} << 20);
  SessionOptions capped;
  capped.memory_limit_bytes = uint64_t{256} << 20;
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(capped);
  ASSERT_OK(session);
  absl::StatusOr<Library> library = (*session)->Load(TestLibPath());
  ASSERT_OK(library);
  ExpectAddWorks(*library);
  // The session's worker and two idle ones, each in its group.
  ASSERT_TRUE(WaitFor([&] { return WorkerGroupMemoryCaps(server_->pid()).size() == 3; },
                      absl::Seconds(10)));
  std::vector<pid_t> before = WorkersCappedAt(server_->pid(), session_cap);
  ASSERT_EQ(before.size(), 1u);
  std::vector<pid_t> idle = WorkersCappedAt(server_->pid(), absl::StrCat(uint64_t{1} << 30));
  ASSERT_EQ(idle.size(), 2u);

  absl::StatusOr<TypedFunction<int()>> crash = library->Function<int()>("crash_null_deref");
  ASSERT_OK(crash);
  EXPECT_THAT((*crash)().status(), StatusIs(v1::WORKER_CRASHED));
  ExpectAddWorks(*library);
  std::vector<pid_t> after = WorkersCappedAt(server_->pid(), session_cap);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_NE(after[0], before[0]);
  EXPECT_THAT(idle, ::testing::Contains(after[0]))
      << "the restarted worker was not one of the pool's idle workers";
}

TEST_F(LimitsTest, PoolSizeZeroKeepsNoIdleWorkers) {
  StartServer({"--pool_size=0"});
  std::unique_ptr<Session> session = Open(*client_);
  ASSERT_NE(session, nullptr);
  ExpectCosWorks(*session);
  session.reset();
  EXPECT_TRUE(WaitFor([&] { return ChildrenOf(server_->pid()).empty(); }, absl::Seconds(5)));
}

}  // namespace
}  // namespace ffibox

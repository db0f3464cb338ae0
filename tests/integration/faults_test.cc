// Crash isolation end to end: a real ffiboxd, real workers, real crashes in
// tests/testlibs/libffibox_test.so, driven through the C++ client. Every fault kind gives
// its typed error, the broker and other sessions keep serving, the next call works, and no
// worker outlives its session. The behaviour tests run in every way a server can run its
// workers: from the pool or started per session, jailed or not (ServerMode).
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <string>
#include <tuple>

#include "absl/time/clock.h"
#include "client/cpp/ffibox_client.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::ChildrenOf;
using test_support::ProcessState;
using test_support::RunfilePath;
using test_support::TestLibPath;
using test_support::TestServer;
using test_support::WaitFor;

// How the server runs its workers.
struct ServerMode {
  bool pool;  // the first worker of a session comes from a pool of two (else started)
  bool jail;  // workers are jailed (else crash-isolated only)
};

std::string ModeName(const ServerMode& mode) {
  return std::string(mode.pool ? "Pool" : "NoPool") + (mode.jail ? "Jail" : "NoJail");
}

std::string HostileLibPath() {
  char real[PATH_MAX];
  const std::string path = RunfilePath("tests/testlibs/libffibox_hostile.so");
  return realpath(path.c_str(), real) != nullptr ? real : path;
}

const ServerMode kEveryMode[] = {{false, true}, {true, true}, {false, false}, {true, false}};

// Process accounting (no worker left, no descriptor leaked) counts the server's children,
// so it runs without a pool; the behaviour tests run in every ServerMode.
class FaultsTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(ServerMode{/*pool=*/false, /*jail=*/true}); }

  void StartServer(const ServerMode& mode) {
    absl::StatusOr<std::unique_ptr<TestServer>> server =
        TestServer::Start({"--call_timeout_ms=5000", mode.pool ? "--pool_size=2" : "--pool_size=0",
                           mode.jail ? "--jail" : "--nojail"});
    ASSERT_OK(server);
    server_ = std::move(*server);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_->address());
    ASSERT_OK(client);
    client_ = std::move(*client);
  }

  // The number of file descriptors the broker holds.
  int BrokerFdCount() const {
    std::string dir = "/proc/" + std::to_string(server_->pid()) + "/fd";
    int count = 0;
    if (DIR* d = opendir(dir.c_str())) {
      while (readdir(d) != nullptr) ++count;
      closedir(d);
    }
    return count;
  }

  bool NoWorkersLeft() const { return ChildrenOf(server_->pid()).empty(); }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

// A second session that checks it still gets correct answers.
class Bystander {
 public:
  explicit Bystander(Client& client) {
    absl::StatusOr<std::unique_ptr<Session>> session = client.OpenSession();
    if (!session.ok()) {
      ADD_FAILURE() << "bystander session: " << session.status();
      return;
    }
    session_ = std::move(*session);
    absl::StatusOr<Library> libm = session_->Load("libm.so.6");
    if (!libm.ok()) {
      ADD_FAILURE() << "bystander libm: " << libm.status();
      return;
    }
    absl::StatusOr<TypedFunction<double(double)>> cos = libm->Function<double(double)>("cos");
    if (!cos.ok()) {
      ADD_FAILURE() << "bystander cos: " << cos.status();
      return;
    }
    cos_ = std::make_unique<TypedFunction<double(double)>>(*cos);
  }

  void ExpectServing() {
    ASSERT_NE(cos_, nullptr) << "the bystander never started";
    absl::StatusOr<double> value = (*cos_)(0.5);
    ASSERT_OK(value);
    EXPECT_EQ(*value, std::cos(0.5));
    EXPECT_EQ(session_->generation(), 1u) << "the bystander's worker was disturbed";
  }

 private:
  std::unique_ptr<Session> session_;
  std::unique_ptr<TypedFunction<double(double)>> cos_;
};

struct Fault {
  const char* function;
  bool takes_int;
  int signal;     // expected terminating signal, or 0
  int exit_code;  // expected exit status, or -1
};

// The behaviour tests: the server runs its workers as GetParam() says.
class EveryMode : public FaultsTest, public ::testing::WithParamInterface<ServerMode> {
 protected:
  void SetUp() override { StartServer(GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(Modes, EveryMode, ::testing::ValuesIn(kEveryMode),
                         [](const ::testing::TestParamInfo<ServerMode>& info) {
                           return ModeName(info.param);
                         });

class EveryFault : public FaultsTest,
                   public ::testing::WithParamInterface<std::tuple<ServerMode, Fault>> {
 protected:
  void SetUp() override { StartServer(std::get<0>(GetParam())); }
};

TEST_P(EveryFault, GivesWorkerCrashedWhileOtherSessionsServeAndTheNextCallWorks) {
  const Fault& fault = std::get<1>(GetParam());
  Bystander bystander(*client_);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  absl::StatusOr<TypedFunction<int(int, int)>> add = lib.Function<int(int, int)>("add_int");
  ASSERT_OK(add);
  ASSERT_EQ(*(*add)(41, 1), 42);
  bystander.ExpectServing();

  absl::StatusOr<int> crashed;
  if (fault.takes_int) {
    absl::StatusOr<TypedFunction<int(int)>> faulty = lib.Function<int(int)>(fault.function);
    ASSERT_OK(faulty);
    crashed = (*faulty)(1);
  } else {
    absl::StatusOr<TypedFunction<int()>> faulty = lib.Function<int()>(fault.function);
    ASSERT_OK(faulty);
    crashed = (*faulty)();
  }
  ASSERT_FALSE(crashed.ok());
  v1::Error error = ErrorOf(crashed.status());
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << crashed.status();
  EXPECT_EQ(error.signal(), fault.signal) << crashed.status();
  EXPECT_EQ(error.exit_code(), fault.exit_code) << crashed.status();
  EXPECT_EQ(error.function(), fault.function);
  if (std::string(fault.function) == "crash_null_deref") {
    // The worker's own crash report adds where it faulted: the NULL page.
    EXPECT_LT(error.fault_address(), 4096u) << crashed.status();
    EXPECT_NE(error.message().find("at address 0x"), std::string::npos) << error.message();
  }

  bystander.ExpectServing();
  // The handle resolved before the crash works on the restarted worker.
  absl::StatusOr<int> after = (*add)(1, 1);
  ASSERT_OK(after);
  EXPECT_EQ(*after, 2);
  EXPECT_EQ(session->generation(), 2u);
  EXPECT_EQ(kill(server_->pid(), 0), 0) << "the broker died";
}

INSTANTIATE_TEST_SUITE_P(
    Faults, EveryFault,
    ::testing::Combine(::testing::ValuesIn(kEveryMode),
                       ::testing::Values(Fault{"crash_null_deref", false, SIGSEGV, -1},
                                         Fault{"crash_abort", false, SIGABRT, -1},
                                         Fault{"crash_div_zero", true, SIGFPE, -1},
                                         Fault{"crash_stack_overflow", true, SIGSEGV, -1},
                                         Fault{"crash_exit3", false, 0, 3})),
    [](const ::testing::TestParamInfo<std::tuple<ServerMode, Fault>>& info) {
      return ModeName(std::get<0>(info.param)) + "_" +
             std::string(std::get<1>(info.param).function);
    });

TEST_P(EveryMode, HungCallTimesOutNearItsDeadlineAndTheNextCallWorks) {
  Bystander bystander(*client_);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  absl::StatusOr<TypedFunction<int()>> hang = lib.Function<int()>("hang_forever");
  ASSERT_OK(hang);
  const absl::Duration deadline = absl::Milliseconds(300);
  absl::Time start = absl::Now();
  absl::StatusOr<int> result = hang->CallWithTimeout(deadline);
  absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(result.ok());
  v1::Error error = ErrorOf(result.status());
  EXPECT_EQ(error.code(), v1::CALL_TIMEOUT) << result.status();
  EXPECT_EQ(error.function(), "hang_forever");
  EXPECT_GE(took, deadline);
  // Generous bound for a loaded machine; bench/ measures the real overshoot.
  EXPECT_LT(took, deadline + absl::Seconds(2));
  bystander.ExpectServing();

  absl::StatusOr<TypedFunction<int(int, int)>> add = lib.Function<int(int, int)>("add_int");
  ASSERT_OK(add);
  EXPECT_EQ(*(*add)(1, 1), 2);
}

// A library can write anywhere in its worker's memory, the channel to the broker included
// (tests/testlibs/hostile.c finds it in /proc/self/maps): impossible positions there end that
// worker with WORKER_CRASHED, the broker and the other sessions go on, and the session's
// next call runs on a new worker.
TEST_P(EveryMode, ALibraryThatCorruptsTheChannelGetsItsWorkerKilledAndTheNextCallWorks) {
  Bystander bystander(*client_);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  absl::StatusOr<Library> hostile = session->Load(HostileLibPath());
  ASSERT_OK(hostile);
  absl::StatusOr<TypedFunction<int(int)>> corrupt =
      hostile->Function<int(int)>("hostile_corrupt_channel");
  ASSERT_OK(corrupt);
  for (int garbage : {0xff, 0x00, 0x7f}) {
    SCOPED_TRACE(garbage);
    absl::StatusOr<int> result = (*corrupt)(garbage);
    ASSERT_FALSE(result.ok()) << "the worker answered on a corrupt channel";
    v1::Error error = ErrorOf(result.status());
    EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << result.status();
    EXPECT_EQ(error.function(), "hostile_corrupt_channel") << result.status();
    EXPECT_NE(error.message().find("broke the channel protocol"), std::string::npos)
        << error.message();
    bystander.ExpectServing();
    absl::StatusOr<TypedFunction<int(int, int)>> add = lib.Function<int(int, int)>("add_int");
    ASSERT_OK(add);
    absl::StatusOr<int> after = (*add)(2, 3);
    ASSERT_OK(after);
    EXPECT_EQ(*after, 5);
  }
  EXPECT_EQ(session->generation(), 4u);
  EXPECT_EQ(kill(server_->pid(), 0), 0) << "the broker died";
}

TEST_P(EveryMode, SessionDeadlineAppliesWhenTheCallGivesNone) {
  SessionOptions options;
  // It covers the library's load too: long enough for a dlopen on a loaded machine.
  options.call_timeout = absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession(options));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  absl::StatusOr<TypedFunction<int(int)>> sleep_ms = lib.Function<int(int)>("sleep_ms");
  ASSERT_OK(sleep_ms);
  absl::StatusOr<int> quick = (*sleep_ms)(10);
  ASSERT_OK(quick);
  EXPECT_EQ(*quick, 10);
  absl::StatusOr<int> slow = (*sleep_ms)(3000);
  EXPECT_EQ(ErrorOf(slow.status()).code(), v1::CALL_TIMEOUT) << slow.status();
}

TEST_P(EveryMode, CrashInALibraryThreadAfterTheCallReturnedIsReportedAndRecovered) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  absl::StatusOr<TypedFunction<int(int)>> later = lib.Function<int(int)>("crash_later_thread");
  ASSERT_OK(later);
  absl::StatusOr<int> returned = (*later)(50);
  ASSERT_OK(returned);
  EXPECT_EQ(*returned, 0);

  std::vector<v1::SessionEvent> events;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (v1::SessionEvent& event : session->TakeEvents()) events.push_back(event);
        return !events.empty();
      },
      absl::Seconds(5)));
  EXPECT_EQ(events[0].kind(), v1::SessionEvent::WORKER_LOST);
  EXPECT_EQ(events[0].error().code(), v1::WORKER_CRASHED);
  EXPECT_EQ(events[0].error().signal(), SIGSEGV);

  absl::StatusOr<TypedFunction<int(int, int)>> add = lib.Function<int(int, int)>("add_int");
  ASSERT_OK(add);
  EXPECT_EQ(*(*add)(1, 1), 2);
}

TEST_P(EveryMode, RestartReloadsLibrariesWithFreshState) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  absl::StatusOr<TypedFunction<int()>> next = lib.Function<int()>("counter_next");
  absl::StatusOr<TypedFunction<int()>> crash = lib.Function<int()>("crash_abort");
  ASSERT_TRUE(next.ok() && crash.ok());
  int first = *(*next)();
  EXPECT_EQ(*(*next)(), first + 1) << "state persists within one worker";
  EXPECT_FALSE((*crash)().ok());
  EXPECT_EQ(*(*next)(), first) << "a new worker starts from the library's initial state";
}

TEST_P(EveryMode, NoRestartSessionReportsTheLossOnLaterCalls) {
  SessionOptions options;
  options.restart = false;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession(options));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  absl::StatusOr<TypedFunction<int()>> crash = lib.Function<int()>("crash_null_deref");
  absl::StatusOr<TypedFunction<int(int, int)>> add = lib.Function<int(int, int)>("add_int");
  ASSERT_TRUE(crash.ok() && add.ok());
  EXPECT_EQ(ErrorOf((*crash)().status()).code(), v1::WORKER_CRASHED);
  absl::StatusOr<int> after = (*add)(1, 1);
  EXPECT_EQ(ErrorOf(after.status()).code(), v1::FAILED_PRECONDITION) << after.status();
}

TEST_F(FaultsTest, ClosingTheSessionKillsAndReapsItsWorker) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  ASSERT_OK(session->Load(TestLibPath()));
  std::vector<pid_t> workers = ChildrenOf(server_->pid());
  ASSERT_EQ(workers.size(), 1u);
  ASSERT_TRUE(session->Close().ok());
  EXPECT_TRUE(WaitFor([&] { return NoWorkersLeft(); }, absl::Seconds(5)));
  EXPECT_EQ(ProcessState(workers[0]), '\0') << "the worker is still there (or a zombie)";
}

TEST_F(FaultsTest, ClientKilledWithSigkillLeavesNoWorkerAndNoZombie) {
  // A separate client process (the ffibox CLI) whose call keeps its worker busy.
  std::string cli = test_support::RunfilePath("client/cli/ffibox");
  std::string address_flag = "--address=" + server_->address();
  std::string lib = TestLibPath();
  absl::StatusOr<pid_t> spawned = test_support::SpawnProcess(
      {cli, address_flag, "--timeout_ms=60000", "call", lib, "int sleep_ms(int)", "60000"});
  ASSERT_OK(spawned);
  pid_t client = *spawned;
  pid_t worker = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::vector<pid_t> children = ChildrenOf(server_->pid());
        if (children.size() == 1) worker = children[0];
        return worker != 0;
      },
      absl::Seconds(10)))
      << "the client process never got a worker";
  int client_status = 0;
  ASSERT_EQ(waitpid(client, &client_status, WNOHANG), 0)
      << "the client exited before it was killed (wait status " << client_status << ")";

  kill(client, SIGKILL);
  waitpid(client, nullptr, 0);
  EXPECT_TRUE(WaitFor([&] { return NoWorkersLeft(); }, absl::Seconds(10)))
      << "worker " << worker << " outlived its killed client";
  EXPECT_EQ(ProcessState(worker), '\0');
  Bystander(*client_).ExpectServing();
}

TEST_F(FaultsTest, RepeatedCrashesLeakNoFileDescriptorsOrProcesses) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> warmup, client_->OpenSession());
  ASSERT_OK(warmup->Load(TestLibPath()));
  warmup->Close().IgnoreError();
  ASSERT_TRUE(WaitFor([&] { return NoWorkersLeft(); }, absl::Seconds(5)));
  int fds_before = BrokerFdCount();

  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
    ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
    absl::StatusOr<TypedFunction<int()>> crash = lib.Function<int()>("crash_null_deref");
    ASSERT_TRUE(crash.ok());
    EXPECT_EQ(ErrorOf((*crash)().status()).code(), v1::WORKER_CRASHED);
    EXPECT_EQ(ErrorOf((*crash)().status()).code(), v1::WORKER_CRASHED);
    ASSERT_TRUE(session->Close().ok());
  }
  EXPECT_TRUE(WaitFor([&] { return NoWorkersLeft(); }, absl::Seconds(5)));
  EXPECT_TRUE(WaitFor([&] { return BrokerFdCount() == fds_before; }, absl::Seconds(5)))
      << "broker fds: " << fds_before << " before, " << BrokerFdCount() << " after";
}

}  // namespace
}  // namespace ffibox

// The C++ client against a real ffiboxd, real workers and the real test library.
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/cpp/ffibox_client.h"
#include "core/errors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::TestLibPath;
using test_support::TestServer;

// Expects `expression` (an absl::StatusOr) to succeed with `expected`, without aborting the
// test binary when it fails.
#define EXPECT_RESULT(expression, expected)                            \
  do {                                                                 \
    auto result_ = (expression);                                       \
    if (result_.ok()) {                                                \
      EXPECT_EQ(*result_, (expected)) << #expression;                  \
    } else {                                                           \
      ADD_FAILURE() << #expression << " failed: " << result_.status(); \
    }                                                                  \
  } while (0)

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start();
    ASSERT_OK(server);
    server_ = *std::move(server);
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_->address());
    ASSERT_OK(client);
    client_ = *std::move(client);
    absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession();
    ASSERT_OK(session);
    session_ = *std::move(session);
    absl::StatusOr<Library> library = session_->Load(TestLibPath());
    ASSERT_OK(library);
    lib_.emplace(*std::move(library));
  }

  // Resolves `symbol` as Sig; a symbol that cannot be resolved fails the test and ends the
  // test binary (there is no function to return).
  template <typename Sig>
  Function<Sig> Fn(const std::string& symbol) {
    absl::StatusOr<Function<Sig>> function = lib_->Function<Sig>(symbol);
    EXPECT_TRUE(function.ok()) << symbol << ": " << function.status();
    return *std::move(function);
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<Session> session_;
  std::optional<Library> lib_;
};

TEST_F(ClientTest, CosFromLibmMatchesTheLocalCos) {
  absl::StatusOr<Library> libm = session_->Load("libm.so.6");
  ASSERT_OK(libm);
  absl::StatusOr<Function<double(double)>> cos = libm->Function<double(double)>("cos");
  ASSERT_OK(cos);
  absl::StatusOr<double> result = (*cos)(0.5);
  ASSERT_OK(result);
  EXPECT_EQ(*result, std::cos(0.5));
  EXPECT_EQ(session_->generation(), 1u);
}

TEST_F(ClientTest, APipelinedStartLoadsResolvesAndCallsWithOneWait) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  Library libm = session->LoadAsync("libm.so.6");
  ASSERT_OK_AND_ASSIGN(Function<double(double)> cos, libm.FunctionAsync<double(double)>("cos"));
  Library testlib = session->LoadAsync(TestLibPath());
  // A variable read through a library whose load may not be answered yet.
  EXPECT_RESULT(testlib.Variable<int>("ffibox_test_counter"), 42);
  EXPECT_RESULT(cos(0.5), std::cos(0.5));
  EXPECT_OK(libm.Wait());
  EXPECT_NE(libm.handle(), 0u);
  EXPECT_NE(cos.raw().address().address, 0u);
  // Later calls, and functions resolved the usual way, use the handles.
  EXPECT_RESULT(cos(0.0), 1.0);
  ASSERT_OK_AND_ASSIGN(Function<double(double)> sin, libm.Function<double(double)>("sin"));
  EXPECT_RESULT(sin(0.0), 0.0);
  // A batch of calls of a function whose resolve was pipelined.
  auto add = testlib.FunctionAsync<int(int, int)>("add_int");
  ASSERT_OK(add);
  Batch batch = session->NewBatch();
  BatchCall<int> first = batch.Add(*add, 1, 2);
  BatchCall<int> second = batch.Add(*add, 3, 4);
  ASSERT_OK(batch.Run());
  EXPECT_RESULT(batch.Result(first), 3);
  EXPECT_RESULT(batch.Result(second), 7);
}

TEST_F(ClientTest, APipelinedStartReportsTheFirstFailureAtTheFirstWait) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  // Refused by the broker (no such file): what depends on it fails the same way. The call is
  // sent before anything waited for the load's answer.
  Library refused = session->LoadAsync("/nonexistent/libnope.so");
  ASSERT_OK_AND_ASSIGN(Function<double(double)> never,
                       refused.FunctionAsync<double(double)>("cos"));
  const absl::Status first = never(0.5).status();
  const absl::Status refusal = refused.Wait();
  EXPECT_EQ(ErrorCodeOf(refusal), v1::LIBRARY_LOAD_FAILED) << refusal;
  EXPECT_THAT(refusal.message(), testing::HasSubstr("/nonexistent/libnope.so"));
  EXPECT_EQ(first, refusal);
  EXPECT_EQ(never.raw().Wait(), refusal);
  // So does a batch of its calls, naming the call.
  Batch batch = session->NewBatch();
  batch.Add(never, 1.0);
  const absl::Status batch_failure = batch.Run();
  EXPECT_EQ(ErrorCodeOf(batch_failure), v1::LIBRARY_LOAD_FAILED) << batch_failure;
  EXPECT_EQ(ErrorOf(batch_failure).batch_index(), 0u);
  EXPECT_EQ(refused.Function<int()>("x").status(), refusal);
  EXPECT_EQ(refused.Variable<int>("x").status(), refusal);
  EXPECT_EQ(refused.handle(), 0u);

  // Failed in the worker (a linker script, no ELF object): the requests behind it were
  // accepted while it was pending.
  Library script = session->LoadAsync("/usr/lib/x86_64-linux-gnu/libc.so");
  ASSERT_OK_AND_ASSIGN(Function<int()> none, script.FunctionAsync<int()>("getpid"));
  const absl::Status none_called = none().status();
  const absl::Status failed = script.Wait();
  EXPECT_EQ(ErrorCodeOf(failed), v1::LIBRARY_LOAD_FAILED) << failed;
  EXPECT_THAT(failed.message(), testing::HasSubstr("invalid ELF header"));  // dlopen's own
  // naming the library as asked for, not the descriptor the worker loaded it from
  EXPECT_THAT(failed.message(), testing::HasSubstr("libc.so: invalid ELF header"));
  EXPECT_THAT(failed.message(), testing::Not(testing::HasSubstr("/proc/self/fd")));
  EXPECT_EQ(none_called, failed);

  // The library loads, the symbol does not resolve: the call says so.
  Library libm = session->LoadAsync("libm.so.6");
  ASSERT_OK_AND_ASSIGN(Function<double(double)> missing,
                       libm.FunctionAsync<double(double)>("no_such_function"));
  EXPECT_EQ(ErrorCodeOf(missing(0.5).status()), v1::SYMBOL_NOT_FOUND);
  Batch after_missing = session->NewBatch();
  after_missing.Add(missing, 1.0);
  EXPECT_EQ(ErrorCodeOf(after_missing.Run()), v1::SYMBOL_NOT_FOUND);
  EXPECT_OK(libm.Wait());

  // The session goes on.
  ASSERT_OK_AND_ASSIGN(Function<double(double)> cos, libm.FunctionAsync<double(double)>("cos"));
  EXPECT_RESULT(cos(0.0), 1.0);
}

// A relative path is the caller's, as dlopen in this process would take it (the server
// refuses relative paths: its own directory would load another library); text that is not
// UTF-8 is refused before it is sent, where it would end the session's stream.
TEST_F(ClientTest, RelativePathsAreTheCallersAndTextThatIsNotUtf8IsRefused) {
  const std::string path = TestLibPath();
  char before[PATH_MAX];
  ASSERT_NE(getcwd(before, sizeof(before)), nullptr);
  ASSERT_EQ(chdir(path.substr(0, path.rfind('/')).c_str()), 0);
  absl::StatusOr<Library> relative = session_->Load("./libffibox_test.so");
  Library relative_async = session_->LoadAsync("../testlibs/libffibox_test.so");
  ASSERT_EQ(chdir(before), 0);
  ASSERT_OK(relative);
  ASSERT_OK_AND_ASSIGN(Function<int(int, int)> add, relative->Function<int(int, int)>("add_int"));
  EXPECT_RESULT(add(2, 3), 5);
  ASSERT_OK_AND_ASSIGN(Function<int(int, int)> add_async,
                       relative_async.FunctionAsync<int(int, int)>("add_int"));
  EXPECT_RESULT(add_async(4, 5), 9);

  EXPECT_EQ(ErrorCodeOf(session_->Load("/tmp/\xff.so").status()), v1::INVALID_ARGUMENT);
  Library refused = session_->LoadAsync("/tmp/\xff.so");
  ASSERT_OK_AND_ASSIGN(Function<int()> never, refused.FunctionAsync<int()>("getpid"));
  EXPECT_EQ(ErrorCodeOf(never().status()), v1::INVALID_ARGUMENT);
  EXPECT_EQ(ErrorCodeOf(lib_->Function<int()>("add\xff").status()), v1::INVALID_ARGUMENT);
  ASSERT_OK_AND_ASSIGN(Function<int()> unnamed, lib_->FunctionAsync<int()>("add\xff"));
  EXPECT_EQ(ErrorCodeOf(unnamed().status()), v1::INVALID_ARGUMENT);
  SessionOptions options;
  options.environment["NAME\xff"] = "x";
  EXPECT_EQ(ErrorCodeOf(client_->OpenSession(options).status()), v1::INVALID_ARGUMENT);
  // The session goes on.
  EXPECT_RESULT(add(6, 7), 13);
}

TEST_F(ClientTest, EveryScalarTypeRoundTrips) {
  EXPECT_RESULT(Fn<bool(int)>("is_even")(4), true);
  EXPECT_RESULT(Fn<bool(bool)>("not_bool")(true), false);
  EXPECT_RESULT(Fn<char(char)>("next_char")('a'), 'b');
  EXPECT_RESULT(Fn<signed char(signed char)>("neg_schar")(5), -5);
  EXPECT_RESULT(Fn<unsigned char(unsigned char, unsigned char)>("add_uchar")(200, 100), 44);
  EXPECT_RESULT(Fn<short(short, short)>("add_short")(-300, 100), -200);
  EXPECT_RESULT(Fn<unsigned short(unsigned short, unsigned short)>("add_ushort")(65535, 2), 1);
  EXPECT_RESULT(Fn<int(int, int)>("add_int")(2, 3), 5);
  EXPECT_RESULT(Fn<unsigned(unsigned, unsigned)>("add_uint")(4294967295u, 2), 1u);
  EXPECT_RESULT(Fn<long(long, long)>("add_long")(-5000000000L, 1), -4999999999L);
  EXPECT_RESULT(Fn<unsigned long(unsigned long, unsigned long)>("add_ulong")(~0ul, 2), 1ul);
  EXPECT_RESULT(Fn<long long(long long, long long)>("add_longlong")(1LL << 40, 1), (1LL << 40) + 1);
  EXPECT_RESULT(
      Fn<unsigned long long(unsigned long long, unsigned long long)>("add_ulonglong")(~0ull, ~0ull),
      ~0ull - 1);
  EXPECT_RESULT(Fn<int8_t(int8_t)>("neg_int8")(-128), -128);
  EXPECT_RESULT(Fn<uint8_t(uint8_t, uint8_t)>("add_uint8")(255, 1), 0);
  EXPECT_RESULT(Fn<int16_t(int16_t)>("neg_int16")(1234), -1234);
  EXPECT_RESULT(Fn<uint16_t(uint16_t, uint16_t)>("add_uint16")(65535, 1), 0);
  EXPECT_RESULT(Fn<int32_t(int32_t)>("neg_int32")(INT32_MIN), INT32_MIN);
  EXPECT_RESULT(Fn<uint32_t(uint32_t, uint32_t)>("add_uint32")(1, 2), 3u);
  EXPECT_RESULT(Fn<int64_t(int64_t)>("neg_int64")(INT64_MAX), -INT64_MAX);
  EXPECT_RESULT(Fn<uint64_t(uint64_t, uint64_t)>("add_uint64")(UINT64_MAX, 1), 0u);
  EXPECT_RESULT(Fn<size_t(size_t)>("twice_size")(21), 42u);
  EXPECT_RESULT(Fn<ssize_t(ssize_t)>("neg_ssize")(-7), 7);
  EXPECT_RESULT(Fn<float(float, float)>("mul_float")(1.5f, 2.5f), 3.75f);
  EXPECT_RESULT(Fn<double(double, double)>("mul_double")(0.1, 3.0), 0.1 * 3.0);
  EXPECT_RESULT(Fn<long double(long double)>("ld_half")(5.0L), 2.5L);
  EXPECT_RESULT(Fn<wchar_t(wchar_t)>("upper_wchar")(L'a'), L'A');
  EXPECT_RESULT(Fn<int(int, int, int, int, int, int, int, int, int, int)>("sum_ints")(
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
                55);
  EXPECT_RESULT(
      Fn<double(int, double, long, float, unsigned char)>("sum_mixed")(1, 0.5, 2, 0.25f, 3), 6.75);
}

TEST_F(ClientTest, PointersAreWorkerAddresses) {
  absl::StatusOr<RemotePtr> base = Fn<void*()>("greeting")();
  ASSERT_OK(base);
  EXPECT_FALSE(base->is_null());
  EXPECT_EQ(base->generation, session_->generation());
  absl::StatusOr<RemotePtr> moved = Fn<void*(void*, long)>("ptr_offset")(*base, 7);
  ASSERT_OK(moved);
  EXPECT_EQ(moved->address, base->address + 7);
  EXPECT_RESULT(session_->ReadCString(*moved), "ffibox");
  EXPECT_RESULT(Fn<void*(void*, long)>("ptr_offset")(nullptr, 0), RemotePtr());
}

TEST_F(ClientTest, StringsInAndOut) {
  EXPECT_RESULT(Fn<size_t(const char*)>("str_len")("hello"), 5u);
  EXPECT_RESULT(Fn<size_t(std::string)>("str_len")(std::string("four")), 4u);
  EXPECT_RESULT(Fn<size_t(const char*)>("str_len")(nullptr), 0u);
  EXPECT_RESULT(Fn<std::string()>("greeting")(), "hello, ffibox");
  EXPECT_RESULT(Fn<std::string(const char*)>("str_dup_upper")("MiXed"), "MIXED");
  EXPECT_RESULT(Fn<size_t(const wchar_t*)>("wstr_len")(L"h\u00e9llo \u4e16\u754c"), 8u);
  EXPECT_RESULT(Fn<std::wstring()>("wgreeting")(), L"h\u00e9llo \u4e16\u754c");
  EXPECT_RESULT(Fn<std::optional<std::string>()>("null_string")(), std::nullopt);
  EXPECT_EQ(ErrorCodeOf(Fn<std::string()>("null_string")().status()), v1::FAILED_PRECONDITION);
}

TEST_F(ClientTest, BuffersInOutAndInOut) {
  Buffer out = Buffer::Out(5);
  ASSERT_TRUE(Fn<void(Buffer&, size_t, char)>("fill_buffer")(out, 5, 'x').ok());
  EXPECT_EQ(out.data, "xxxxx");

  const Buffer in = Buffer::In(std::string("\x01\x02\x03\xff", 4));
  EXPECT_RESULT(Fn<size_t(const Buffer&, size_t)>("sum_bytes")(in, 4), 1u + 2u + 3u + 255u);

  Buffer inout = Buffer::InOut("abcdef");
  ASSERT_TRUE(Fn<void(Buffer*, size_t)>("reverse_in_place")(&inout, 6).ok());
  EXPECT_EQ(inout.data, "fedcba");
}

TEST_F(ClientTest, IntPointersAreOutParameters) {
  auto divmod = Fn<int(int, int, int*, int*)>("divmod");
  int quotient = 0;
  int remainder = 0;
  EXPECT_RESULT(divmod(17, 5, &quotient, &remainder), 0);
  EXPECT_EQ(quotient, 3);
  EXPECT_EQ(remainder, 2);

  int counter = 41;
  ASSERT_TRUE(Fn<void(int*)>("increment")(&counter).ok());
  EXPECT_EQ(counter, 42);
  ASSERT_TRUE(Fn<void(int&)>("increment")(counter).ok());
  EXPECT_EQ(counter, 43);
}

TEST_F(ClientTest, ErrnoIsCapturedOnRequest) {
  absl::StatusOr<WithErrno<int>> result = Fn<int(int)>("set_errno_to").CallWithErrno(ENOENT);
  ASSERT_OK(result);
  EXPECT_EQ(result->value, -1);
  EXPECT_EQ(result->error_number, ENOENT);
}

TEST_F(ClientTest, ExportedVariablesAreRead) {
  EXPECT_RESULT(lib_->Variable<int>("ffibox_test_counter"), 42);
}

TEST_F(ClientTest, StatePersistsWithinAWorker) {
  auto next = Fn<int()>("counter_next");
  EXPECT_RESULT(next(), 1);
  EXPECT_RESULT(next(), 2);
}

TEST_F(ClientTest, MissingSymbolIsATypedError) {
  absl::StatusOr<Function<int()>> missing = lib_->Function<int()>("no_such_function");
  EXPECT_EQ(ErrorCodeOf(missing.status()), v1::SYMBOL_NOT_FOUND);
  EXPECT_THAT(missing.status().message(), testing::HasSubstr("libffibox_test.so: undefined"));
  EXPECT_THAT(missing.status().message(), testing::Not(testing::HasSubstr("/proc/self/fd")));
}

TEST_F(ClientTest, CrashIsReportedAndTheWorkerRestarts) {
  absl::Status crash = Fn<int()>("crash_null_deref")().status();
  const v1::Error error = ErrorOf(crash);
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << crash;
  EXPECT_EQ(error.signal(), SIGSEGV);
  absl::StatusOr<int> after = Fn<int(int, int)>("add_int")(1, 2);
  ASSERT_OK(after);
  EXPECT_EQ(*after, 3);
  EXPECT_GT(session_->generation(), 1u);
}

TEST_F(ClientTest, CallTimeoutKillsTheCall) {
  absl::StatusOr<int> hung = Fn<int()>("hang_forever").CallWithTimeout(absl::Milliseconds(200));
  EXPECT_EQ(ErrorCodeOf(hung.status()), v1::CALL_TIMEOUT) << hung.status();
}

// A negative deadline is refused, never taken for the session's (what 0 asks for).
TEST_F(ClientTest, ANegativeTimeoutIsRefused) {
  auto add = Fn<int(int, int)>("add_int");
  for (absl::Duration negative : {absl::Milliseconds(-1), absl::Seconds(-5)}) {
    absl::StatusOr<int> sum = add.CallWithTimeout(negative, 1, 2);
    EXPECT_EQ(ErrorCodeOf(sum.status()), v1::INVALID_ARGUMENT) << sum.status();
    EXPECT_THAT(sum.status().message(), testing::HasSubstr("negative"));
  }
  EXPECT_RESULT(add.CallWithTimeout(absl::Seconds(5), 1, 2), 3);
  SessionOptions options;
  options.call_timeout = absl::Seconds(-1);
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(options);
  EXPECT_EQ(ErrorCodeOf(session.status()), v1::INVALID_ARGUMENT) << session.status();
}

TEST_F(ClientTest, CloseEndsTheSessionCleanly) {
  auto add = Fn<int(int, int)>("add_int");
  EXPECT_TRUE(session_->Close().ok());
  EXPECT_EQ(add(1, 2).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(session_->Close().ok());
}

TEST_F(ClientTest, ConcurrentCallsArePipelinedOnOneSession) {
  auto add = Fn<long(long, long)>("add_long");
  std::vector<std::thread> threads;
  std::vector<int> wrong(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (long i = 0; i < 50; ++i) {
        absl::StatusOr<long> sum = add(t * 1000, i);
        if (!sum.ok() || *sum != t * 1000 + i) ++wrong[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(wrong[t], 0) << "thread " << t;
}

TEST_F(ClientTest, ServerDeathFailsTheCallInFlightWithUnavailable) {
  auto sleep = Fn<int(int)>("sleep_ms");
  absl::Status in_flight;
  std::thread caller([&] { in_flight = sleep(10000).status(); });
  absl::SleepFor(absl::Milliseconds(200));
  server_->Stop(/*grace=*/absl::Milliseconds(100));
  caller.join();
  EXPECT_FALSE(in_flight.ok());
  EXPECT_FALSE(sleep(1).ok());
}

// A session opened after the server went away fails UNAVAILABLE saying that no session was
// opened (it said a session's stream broke, when there had been none).
TEST(ServerGoneTest, OpeningASessionSaysNoneWasOpened) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server, TestServer::Start({}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Connect(server->address()));
  server->Stop(/*grace=*/absl::Milliseconds(100));
  absl::StatusOr<std::unique_ptr<Session>> session = client->OpenSession();
  ASSERT_FALSE(session.ok());
  EXPECT_EQ(session.status().code(), absl::StatusCode::kUnavailable) << session.status();
  EXPECT_TRUE(absl::StrContains(session.status().message(), "could not open an ffibox session"))
      << session.status();
}

// A server that stops answering without closing its connection (its host gone, its process
// stopped): the client's keepalive pings go unacknowledged and the call fails, instead of
// waiting forever. An idle session's pings are taken by a server that answers.
TEST(KeepaliveTest, AServerThatStopsAnsweringFailsTheCallInsteadOfHangingIt) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server, TestServer::Start({}));
  ConnectOptions options;
  options.keepalive_time = absl::Seconds(1);
  options.keepalive_timeout = absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Connect(server->address(), options));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(auto sleep, lib.Function<int(int)>("sleep_ms"));
  absl::SleepFor(absl::Seconds(4));  // pings, and no data between them
  ASSERT_OK_AND_ASSIGN(int sum, add(1, 2));
  EXPECT_EQ(sum, 3);
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(300));
    kill(server->pid(), SIGSTOP);
  });
  const absl::Time start = absl::Now();
  absl::StatusOr<int> slept = sleep(3000);
  const absl::Duration waited = absl::Now() - start;
  stopper.join();
  kill(server->pid(), SIGCONT);
  ASSERT_FALSE(slept.ok());
  EXPECT_EQ(slept.status().code(), absl::StatusCode::kUnavailable) << slept.status();
  EXPECT_LT(waited, absl::Seconds(10));
  EXPECT_FALSE(add(1, 2).ok()) << "the session ended with its connection";
}

// A server and a client; Open makes a session whose answers have a 1 s margin.
class AnswerDeadlineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, TestServer::Start({}));
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(server_->address()));
  }

  // Opens session_ (calls of `call_timeout`, on the same-host channel when `same_host`),
  // loads the test library and resolves add_int and sleep_ms.
  void Open(absl::Duration call_timeout, bool same_host) {
    SessionOptions options;
    options.call_timeout = call_timeout;
    options.answer_margin = absl::Seconds(1);
    options.same_host = same_host;
    ASSERT_OK_AND_ASSIGN(session_, client_->OpenSession(options));
    ASSERT_EQ(session_->same_host(), same_host);
    ASSERT_OK_AND_ASSIGN(Library lib, session_->Load(TestLibPath()));
    lib_.emplace(std::move(lib));
    ASSERT_OK_AND_ASSIGN(auto add, lib_->Function<int(int, int)>("add_int"));
    add_.emplace(std::move(add));
    ASSERT_OK_AND_ASSIGN(auto sleep, lib_->Function<int(int)>("sleep_ms"));
    sleep_.emplace(std::move(sleep));
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<Session> session_;
  std::optional<Library> lib_;
  std::optional<Function<int(int, int)>> add_;
  std::optional<Function<int(int)>> sleep_;
};

// A server that stops answering while its connection stays up (wedged, or stopped for
// longer than keepalive notices: 50 s by default): the call fails once nothing has come for
// its deadline plus the answer margin, instead of waiting forever, and the session is over.
TEST_F(AnswerDeadlineTest, AServerThatStopsAnsweringFailsTheCallAtItsDeadlinePlusTheMargin) {
  ASSERT_NO_FATAL_FAILURE(Open(absl::Seconds(1), /*same_host=*/false));
  Function<int(int, int)>& add = *add_;
  EXPECT_RESULT(add(1, 2), 3);
  kill(server_->pid(), SIGSTOP);
  if (!test_support::WaitFor([&] { return test_support::AllThreadsStopped(server_->pid()); },
                             absl::Seconds(5))) {
    kill(server_->pid(), SIGCONT);
    FAIL() << "ffiboxd did not stop";
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<int> sum = add(2, 3);
  const absl::Duration waited = absl::Now() - start;
  absl::StatusOr<int> after = add(1, 2);
  const absl::Status closed = session_->Close();
  kill(server_->pid(), SIGCONT);
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.status().code(), absl::StatusCode::kDeadlineExceeded) << sum.status();
  EXPECT_THAT(sum.status().message(), ::testing::HasSubstr("ffiboxd sent nothing for"));
  EXPECT_GE(waited, absl::Milliseconds(1990));
  EXPECT_LT(waited, absl::Seconds(6));
  EXPECT_EQ(after.status().code(), absl::StatusCode::kDeadlineExceeded) << after.status();
  EXPECT_EQ(closed.code(), absl::StatusCode::kDeadlineExceeded) << closed;
  // The server answers again: a new session works.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> next, client_->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library next_lib, next->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto next_add, next_lib.Function<int(int, int)>("add_int"));
  EXPECT_RESULT(next_add(1, 2), 3);
}

// The answer deadline does not end a session whose server is merely busy. A short call
// queued behind a slow one waits far longer than its own bound, and a slow call queued
// behind both is answered later than any bound counted from when they were sent: the wait
// counts the longest bound waiting, from the server's latest message. A handler slower than
// the margin holds nothing up either.
TEST_F(AnswerDeadlineTest, SlowCallsQueuedCallsAndSlowHandlersAreNotTakenForASilentServer) {
  ASSERT_NO_FATAL_FAILURE(Open(absl::Seconds(2), /*same_host=*/false));
  Function<int(int, int)>& add = *add_;
  Function<int(int)>& sleep = *sleep_;
  const absl::Time start = absl::Now();
  absl::StatusOr<int> first;   // bound 3 s, answered at 1.5 s
  absl::StatusOr<int> second;  // bound 1.2 s, answered after the first
  absl::StatusOr<int> third;   // bound 3 s, answered at 3.3 s
  std::thread first_caller([&] { first = sleep(1500); });
  absl::SleepFor(absl::Milliseconds(100));
  std::thread second_caller([&] { second = add.CallWithTimeout(absl::Milliseconds(200), 1, 2); });
  absl::SleepFor(absl::Milliseconds(100));
  std::thread third_caller([&] { third = sleep(1800); });
  first_caller.join();
  second_caller.join();
  third_caller.join();
  EXPECT_RESULT(first, 1500);
  EXPECT_RESULT(second, 3);
  EXPECT_RESULT(third, 1800);
  EXPECT_GT(absl::Now() - start, absl::Milliseconds(3300));
  ASSERT_OK_AND_ASSIGN(auto twice,
                       (lib_->Function<int(Callback<int(int)>, int)>("call_twice_nested")));
  ASSERT_OK_AND_ASSIGN(auto slow_increment,
                       session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> {
                         absl::SleepFor(absl::Milliseconds(1300));
                         return x + 1;
                       }));
  EXPECT_RESULT(twice.CallWithTimeout(absl::Seconds(5), slow_increment, 1), 3);
  EXPECT_RESULT(add(2, 3), 5);
}

// A call on the same-host channel sends nothing on the stream, but requests through the
// broker wait behind it in the worker (whose deadline the broker starts again once, when it
// passes during such a call): they are not taken for a silent server's.
TEST_F(AnswerDeadlineTest, RequestsThroughTheBrokerMayWaitBehindACallOnTheChannel) {
  ASSERT_NO_FATAL_FAILURE(Open(absl::Seconds(2), /*same_host=*/true));
  absl::StatusOr<int> slept;
  std::thread slow([&] { slept = sleep_->CallWithTimeout(absl::Seconds(5), 3500); });
  absl::SleepFor(absl::Milliseconds(200));
  // Through the broker; the worker runs it once the call on the channel returns, at 3.5 s,
  // past its own bound (3 s) counted from when it was sent.
  absl::StatusOr<Library> libm = session_->Load("libm.so.6");
  slow.join();
  EXPECT_RESULT(slept, 3500);
  EXPECT_OK(libm.status());
  EXPECT_RESULT((*add_)(1, 2), 3);
}

// The other way round: a call on the channel waits in the worker behind a request through
// the broker that runs first, longer than the call's own deadline and margin; its wait
// counts that request's bound too, so it is not taken for a call that got no answer.
TEST_F(AnswerDeadlineTest, ACallOnTheChannelMayWaitBehindARequestThroughTheBroker) {
  ASSERT_NO_FATAL_FAILURE(Open(absl::Seconds(2), /*same_host=*/true));
  v1::Request slow;
  slow.mutable_call()->set_function(sleep_->raw().handle());
  slow.mutable_call()->add_args()->set_int_value(6000);
  slow.mutable_call()->set_timeout_ms(8000);
  std::future<absl::StatusOr<v1::Response>> through_broker = session_->SendAsync(slow);
  absl::SleepFor(absl::Milliseconds(300));  // the worker runs it by now
  // On the channel: it starts in the worker at 6 s, past its deadline (2 s) and the
  // channel's margin (5 s) counted from when it was sent, and returns within its deadline.
  EXPECT_RESULT((*sleep_)(1500), 1500);
  absl::StatusOr<v1::Response> slept = through_broker.get();
  ASSERT_OK(slept.status());
  EXPECT_FALSE(slept->has_error()) << slept->error().message();
  EXPECT_EQ(slept->call().result().int_value(), 6000);
  EXPECT_TRUE(session_->same_host());
  EXPECT_RESULT((*add_)(1, 2), 3);
}

// A session left idle longer than any bound, whose server therefore sent nothing for that
// long, then makes a call on the same-host channel that takes longer than the margin: the
// call is not taken for one waiting on a silent server (it has its own deadline).
TEST_F(AnswerDeadlineTest, ACallOnTheChannelAfterAnIdleSpellIsNotTakenForASilentServer) {
  ASSERT_NO_FATAL_FAILURE(Open(absl::Seconds(2), /*same_host=*/true));
  absl::SleepFor(absl::Seconds(4));      // idle: longer than a call's bound (3 s)
  EXPECT_RESULT((*sleep_)(1500), 1500);  // the watchdog looks during it
  EXPECT_RESULT((*sleep_)(1), 1);
}

// This process is stopped (SIGSTOP; a shell it started sends SIGCONT) from before its call's
// answer until a little after the call's bound was due: too little after it to be taken for
// a stop of the process, so the silence counts. The answer came meanwhile and waits unread:
// it is taken, and the session goes on.
TEST_F(AnswerDeadlineTest, AnAnswerThatCameWhileThisProcessWasStoppedIsTaken) {
  ASSERT_NO_FATAL_FAILURE(Open(absl::Seconds(2), /*same_host=*/false));
  absl::StatusOr<int> slept;  // bound 3 s, answered at 1.5 s
  std::thread caller([&] { slept = (*sleep_)(1500); });
  absl::SleepFor(absl::Milliseconds(300));
  const std::string resume = absl::StrCat("sleep 3.1; kill -CONT ", getpid());
  const char* argv[] = {"/bin/sh", "-c", resume.c_str(), nullptr};
  pid_t waker = 0;
  ASSERT_EQ(posix_spawn(&waker, "/bin/sh", nullptr, nullptr, const_cast<char**>(argv), environ), 0);
  kill(getpid(), SIGSTOP);
  int status = 0;
  EXPECT_EQ(waitpid(waker, &status, 0), waker);
  caller.join();
  EXPECT_RESULT(slept, 1500);
  EXPECT_RESULT((*add_)(1, 2), 3);
}

TEST_F(AnswerDeadlineTest, AMarginThatIsNotPositiveAndFiniteIsRefused) {
  for (absl::Duration margin :
       {absl::ZeroDuration(), absl::Seconds(-1), absl::InfiniteDuration()}) {
    SessionOptions options;
    options.answer_margin = margin;
    absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(options);
    ASSERT_FALSE(session.ok()) << margin;
    EXPECT_EQ(ToProtoError(session.status()).code(), v1::INVALID_ARGUMENT) << session.status();
    EXPECT_THAT(session.status().message(), ::testing::HasSubstr("answer_margin"));
  }
}

TEST_F(ClientTest, NoWorkerOutlivesItsSession) {
  ASSERT_TRUE(Fn<int(int, int)>("add_int")(1, 2).ok());
  const std::vector<pid_t> before = test_support::DescendantsOf(server_->pid());
  EXPECT_FALSE(before.empty());
  ASSERT_TRUE(session_->Close().ok());
  // Workers of closed sessions are killed and reaped: none remains, not even as a zombie.
  // (A pool of idle workers, if the server keeps one, is not among `before`'s session.)
  EXPECT_TRUE(test_support::WaitFor(
      [&] {
        for (pid_t pid : before) {
          if (test_support::ProcessState(pid) != '\0') return false;
        }
        return true;
      },
      absl::Seconds(5)));
}

TEST_F(ClientTest, TheSessionReportsEveryJailLayerAndCanRequireThem) {
  const auto& layers = session_->info().jail_layers();
  for (absl::string_view layer : kJailLayerNames) {
    EXPECT_NE(std::find(layers.begin(), layers.end(), layer), layers.end()) << layer;
  }
  EXPECT_TRUE(session_->info().waived_jail_layers().empty());
  SessionOptions options;
  options.required_jail_layers = {"filesystem", "seccomp"};
  EXPECT_TRUE(client_->OpenSession(options).ok());
  options.required_jail_layers = {"all"};
  EXPECT_TRUE(client_->OpenSession(options).ok());
  // A name that is no layer is refused as such, not taken for a layer the server lacks.
  options.required_jail_layers = {"filesystem", "filesytem"};
  absl::StatusOr<std::unique_ptr<Session>> misspelt = client_->OpenSession(options);
  ASSERT_FALSE(misspelt.ok());
  EXPECT_EQ(ToProtoError(misspelt.status()).code(), v1::INVALID_ARGUMENT) << misspelt.status();
  EXPECT_NE(misspelt.status().message().find("no jail layer is called 'filesytem'"),
            std::string::npos)
      << misspelt.status();
}

TEST(RequiredJailLayersTest, AServerWithoutTheJailRefusesASessionThatRequiresALayer) {
  absl::StatusOr<std::unique_ptr<TestServer>> server = TestServer::Start({"--nojail"});
  ASSERT_OK(server);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect((*server)->address());
  ASSERT_OK(client);
  SessionOptions options;
  options.required_jail_layers = {"seccomp"};
  absl::StatusOr<std::unique_ptr<Session>> refused = (*client)->OpenSession(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ToProtoError(refused.status()).code(), v1::JAIL_UNAVAILABLE) << refused.status();
  EXPECT_NE(refused.status().message().find("jail layers seccomp (it gives: none"),
            std::string::npos)
      << refused.status();
  EXPECT_OK((*client)->OpenSession(SessionOptions()));
}

TEST(ScratchDirectoryTest, ASessionAsksForOneAndItIsGoneWithTheSession) {
  const char* tmp = getenv("TEST_TMPDIR");
  const std::string root = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/scratch-root");
  absl::StatusOr<std::unique_ptr<TestServer>> server =
      TestServer::Start({"--scratch_root=" + root});
  ASSERT_OK(server);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect((*server)->address());
  ASSERT_OK(client);
  absl::StatusOr<std::unique_ptr<Session>> plain = (*client)->OpenSession();
  ASSERT_OK(plain);
  EXPECT_EQ((*plain)->info().scratch_directory(), "");

  SessionOptions options;
  options.scratch_directory = true;
  absl::StatusOr<std::unique_ptr<Session>> session = (*client)->OpenSession(options);
  ASSERT_OK(session);
  const std::string path = (*session)->info().scratch_directory();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0) << path;
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0777u);
  EXPECT_NE(path.find("/scratch-root/"), std::string::npos) << path;
  session->reset();
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = stat(path.c_str(), &st) != 0;
    if (!gone) absl::SleepFor(absl::Milliseconds(25));
  }
  EXPECT_TRUE(gone) << path << " outlived its session";
}

TEST_F(ClientTest, WhatTheLibraryPrintsReachesTheOutputHandler) {
  absl::Mutex mu;
  std::string out, err;
  SessionOptions options;
  options.on_output = [&](v1::OutputStream stream, absl::string_view bytes) {
    absl::MutexLock lock(&mu);
    (stream == v1::STDOUT ? out : err).append(bytes.data(), bytes.size());
  };
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(options);
  ASSERT_OK(session);
  absl::StatusOr<Library> libc = (*session)->Load("libc.so.6");
  ASSERT_OK(libc);
  absl::StatusOr<Function<long(int, const char*, unsigned long)>> write =
      libc->Function<long(int, const char*, unsigned long)>("write");
  ASSERT_OK(write);
  EXPECT_RESULT((*write)(1, "to stdout\n", 10), 10);
  EXPECT_RESULT((*write)(2, "to stderr\n", 10), 10);
  EXPECT_TRUE(test_support::WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return out == "to stdout\n" && err == "to stderr\n";
      },
      absl::Seconds(5)));
  absl::MutexLock lock(&mu);
  EXPECT_EQ(out, "to stdout\n");
  EXPECT_EQ(err, "to stderr\n");
}

// A variadic function typed `int(int, ...)`: each argument after the fixed ones goes as the
// C type its C++ type promotes to (a char, a short and a bool as int).
TEST_F(ClientTest, VariadicFunctionsTakeTheirArgumentsPromoted) {
  Function<int(int, ...)> sum = Fn<int(int, ...)>("sum_variadic");
  EXPECT_RESULT(sum(0), 0);
  EXPECT_RESULT(sum(3, 1, 2, 3), 6);
  EXPECT_RESULT(sum(4, 'a', short{-2}, true, uint8_t{200}), 'a' - 2 + 1 + 200);
  EXPECT_EQ(Function<int(int, ...)>::Signature().variadic(), true);
  EXPECT_RESULT(sum.CallWithTimeout(absl::Seconds(5), 2, 20, 22), 42);
  absl::StatusOr<WithErrno<int>> with_errno = sum.CallWithErrno(1, 7);
  ASSERT_OK(with_errno);
  EXPECT_EQ(with_errno->value, 7);

  // Strings, doubles (a float promoted), 64-bit integers and pointers, through snprintf into
  // a buffer of the worker's.
  absl::StatusOr<Library> libc = session_->Load("libc.so.6");
  ASSERT_OK(libc);
  absl::StatusOr<Function<int(RemotePtr, size_t, const char*, ...)>> snprintf =
      libc->Function<int(RemotePtr, size_t, const char*, ...)>("snprintf");
  ASSERT_OK(snprintf);
  absl::StatusOr<RemotePtr> buffer = session_->AllocMemory(64);
  ASSERT_OK(buffer);
  const std::string text = "text";
  EXPECT_RESULT((*snprintf)(*buffer, 64, "%s %s %.2f %lld %c %p", "literal", text, 2.5f,
                            int64_t{1} << 40, 'x', nullptr),
                static_cast<int>(strlen("literal text 2.50 1099511627776 x (nil)")));
  EXPECT_RESULT(session_->ReadCString(*buffer),
                std::string("literal text 2.50 1099511627776 x (nil)"));
  // The variadic arguments' own errors name them.
  absl::Status bad = (*snprintf)(*buffer, 64, "%s", RemotePtr(0x1000, 99)).status();
  EXPECT_EQ(ErrorOf(bad).code(), v1::STALE_HANDLE) << bad;
  EXPECT_OK(session_->FreeMemory(*buffer));
}

// stdio's buffer of stdout holds a line until it ends: what a library printed without a
// newline (a prompt) is flushed when its call returns, not when the worker ends (a session
// that ends kills its worker, and the text was lost).
TEST_F(ClientTest, WhatTheLibraryPrintsWithoutANewlineArrivesWithItsCall) {
  absl::Mutex mu;
  std::string out;
  SessionOptions options;
  options.on_output = [&](v1::OutputStream stream, absl::string_view bytes) {
    absl::MutexLock lock(&mu);
    if (stream == v1::STDOUT) out.append(bytes.data(), bytes.size());
  };
  absl::StatusOr<std::unique_ptr<Session>> session = client_->OpenSession(options);
  ASSERT_OK(session);
  absl::StatusOr<Library> libc = (*session)->Load("libc.so.6");
  ASSERT_OK(libc);
  absl::StatusOr<Function<int(const char*)>> puts_no_newline =
      libc->Function<int(const char*)>("printf");
  ASSERT_OK(puts_no_newline);
  EXPECT_RESULT((*puts_no_newline)("no newline"), 10);
  EXPECT_TRUE(test_support::WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return out == "no newline";
      },
      absl::Seconds(5)))
      << "the session is still open: only a flush after the call sends it";

  // The same for a call of scalars on the same-host channel, which the worker runs from the
  // arguments' bits on a path of its own.
  options.same_host = true;
  absl::StatusOr<std::unique_ptr<Session>> same_host = client_->OpenSession(options);
  ASSERT_OK(same_host);
  absl::StatusOr<Library> same_host_libc = (*same_host)->Load("libc.so.6");
  ASSERT_OK(same_host_libc);
  absl::StatusOr<Function<int(int)>> putchar = same_host_libc->Function<int(int)>("putchar");
  ASSERT_OK(putchar);
  EXPECT_RESULT((*putchar)('!'), '!');
  EXPECT_RESULT((*putchar)('?'), '?');
  EXPECT_GE((*same_host)->same_host_scalar_calls(), 1u);
  EXPECT_TRUE(test_support::WaitFor(
      [&] {
        absl::MutexLock lock(&mu);
        return out == "no newline!?";
      },
      absl::Seconds(5)))
      << "stdout so far: " << out;
}

}  // namespace
}  // namespace ffibox

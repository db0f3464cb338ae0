// The same-host channel end to end: a real ffiboxd on its unix socket, a real jailed worker,
// the C++ client with SessionOptions::same_host. Calls give what they give over gRPC; a crash
// in a call on the channel is WORKER_CRASHED and the session goes on; a call that overruns
// the session's timeout is killed by the broker; the door hands a channel over once, only
// for its token, only to its owner's user.
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cpp/ffibox_client.h"
#include "client/cpp/internal/local_path.h"
#include "core/bulk_copy.h"
#include "core/descriptor_passing.h"
#include "core/status_macros.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"
#include "tests/testlibs/shapes.h"

// The library's own declaration, described for the client.
FFIBOX_STRUCT(IntPair, a, b)

namespace ffibox {
namespace {

using test_support::RunfilePath;
using test_support::TestLibPath;
using test_support::TestServer;

// A server started with `flags`, a client of it and a session of that client on the
// same-host channel (`options` with same_host set); torn down in the reverse order.
struct SameHostServer {
  std::unique_ptr<TestServer> server;
  std::unique_ptr<Client> client;
  std::unique_ptr<Session> session;
};

absl::StatusOr<SameHostServer> StartSameHost(const std::vector<std::string>& flags,
                                             SessionOptions options = {}) {
  SameHostServer started;
  FFIBOX_ASSIGN_OR_RETURN(started.server, TestServer::Start(flags));
  FFIBOX_ASSIGN_OR_RETURN(started.client, Client::Connect(started.server->address()));
  options.same_host = true;
  FFIBOX_ASSIGN_OR_RETURN(started.session, started.client->OpenSession(options));
  return started;
}

class SameHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, TestServer::Start({"--pool_size=1"}));
    ASSERT_OK_AND_ASSIGN(client_, Client::Connect(server_->address()));
  }

  absl::StatusOr<std::unique_ptr<Session>> Open(absl::Duration call_timeout = absl::Seconds(30)) {
    SessionOptions options;
    options.same_host = true;
    options.call_timeout = call_timeout;
    options.on_output = [](v1::OutputStream, absl::string_view) {};  // crash reports
    return client_->OpenSession(options);
  }

  // A same-host session and a session over gRPC, each with the test library loaded: what
  // a test compares the channel with.
  struct BothWays {
    std::unique_ptr<Session> local;
    std::unique_ptr<Session> remote;
    std::optional<Library> a;  // loaded in `local`
    std::optional<Library> b;  // loaded in `remote`
  };
  absl::StatusOr<BothWays> OpenBothWays() {
    BothWays both;
    FFIBOX_ASSIGN_OR_RETURN(both.local, Open());
    SessionOptions options;
    options.on_output = [](v1::OutputStream, absl::string_view) {};
    FFIBOX_ASSIGN_OR_RETURN(both.remote, client_->OpenSession(options));
    FFIBOX_ASSIGN_OR_RETURN(both.a, both.local->Load(TestLibPath()));
    FFIBOX_ASSIGN_OR_RETURN(both.b, both.remote->Load(TestLibPath()));
    return both;
  }

  // A session over gRPC whose library output is dropped, with the test library loaded and
  // a callback of int(int) that gives its argument back defined: what a test that opens a
  // same-host channel of its own by hand starts from.
  struct QuietSession {
    std::unique_ptr<Session> session;
    std::optional<Library> lib;
    std::optional<Callback<int(int)>> identity;
  };
  absl::StatusOr<QuietSession> OpenQuietWithIdentity() {
    QuietSession quiet;
    SessionOptions options;
    options.on_output = [](v1::OutputStream, absl::string_view) {};
    FFIBOX_ASSIGN_OR_RETURN(quiet.session, client_->OpenSession(options));
    FFIBOX_ASSIGN_OR_RETURN(quiet.lib, quiet.session->Load(TestLibPath()));
    FFIBOX_ASSIGN_OR_RETURN(quiet.identity, quiet.session->DefineCallback<int(int)>(
                                                [](int x) -> absl::StatusOr<int> { return x; }));
    return quiet;
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(SameHostTest, APipelinedStartCallsThroughTheChannel) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  Library lib = session->LoadAsync(TestLibPath());
  ASSERT_OK_AND_ASSIGN(auto add, lib.FunctionAsync<int(int, int)>("add_int"));
  // The channel's worker knows functions by handle only: the call waits for the resolve's
  // answer, then goes on the channel.
  ASSERT_OK_AND_ASSIGN(int sum, add(2, 3));
  EXPECT_EQ(sum, 5);
  EXPECT_TRUE(session->same_host());
  Library missing = session->LoadAsync("/nonexistent/libnope.so");
  ASSERT_OK_AND_ASSIGN(auto never, missing.FunctionAsync<int(int, int)>("add_int"));
  const absl::Status first = never(1, 2).status();
  const absl::Status refusal = missing.Wait();
  ASSERT_FALSE(refusal.ok());
  EXPECT_EQ(first, refusal);
  ASSERT_OK_AND_ASSIGN(sum, add(4, 5));
  EXPECT_EQ(sum, 9);
}

// Calls `symbol` as Sig with `args` in both sessions' libraries and expects the same outcome:
// the same value (bit for bit), or an error of the same code.
template <typename Sig, typename... Args>
void ExpectSameBothWays(const Library& on_channel, const Library& over_grpc, const char* symbol,
                        Args... args) {
  absl::StatusOr<TypedFunction<Sig>> local = on_channel.Function<Sig>(symbol);
  absl::StatusOr<TypedFunction<Sig>> remote = over_grpc.Function<Sig>(symbol);
  ASSERT_TRUE(local.ok() && remote.ok()) << symbol << ": " << local.status() << remote.status();
  const auto got = (*local)(args...);
  const auto expected = (*remote)(args...);
  if constexpr (std::is_same_v<std::decay_t<decltype(got)>, absl::Status>) {
    EXPECT_EQ(ErrorCodeOf(got), ErrorCodeOf(expected)) << symbol << ": " << got << expected;
  } else {
    ASSERT_EQ(got.ok(), expected.ok()) << symbol << ": " << got.status() << expected.status();
    if (!got.ok()) {
      EXPECT_EQ(ErrorCodeOf(got.status()), ErrorCodeOf(expected.status())) << symbol;
      return;
    }
    using T = std::decay_t<decltype(*got)>;
    if constexpr (std::is_same_v<T, long double>) {
      EXPECT_EQ(*got, *expected) << symbol;  // (its padding is no part of its value)
    } else {
      EXPECT_EQ(memcmp(&*got, &*expected, sizeof(T)), 0)
          << symbol << ": " << *got << " against " << *expected;
    }
  }
}

// TypedFunction calls whose arguments and result are all scalars go on the channel as scalar
// calls (their request written and their answer read without the messages): every scalar
// type at its edges gives what the same call gives over gRPC, value, void and error alike; a
// crash and a call's own timeout are the typed errors the stream gives; calls that ask for
// errno go the general way, and give the same as well.
TEST_F(SameHostTest, ScalarCallsGiveWhatTheyGiveOverGrpc) {
  ASSERT_OK_AND_ASSIGN(BothWays both, OpenBothWays());
  const std::unique_ptr<Session>& local = both.local;
  const std::unique_ptr<Session>& remote = both.remote;
  Library& a = *both.a;
  Library& b = *both.b;
  using L = std::numeric_limits<long>;
  using LL = std::numeric_limits<long long>;
  ExpectSameBothWays<bool(int)>(a, b, "is_even", INT_MIN);
  ExpectSameBothWays<bool(bool)>(a, b, "not_bool", false);
  ExpectSameBothWays<char(char)>(a, b, "next_char", 'y');
  ExpectSameBothWays<signed char(signed char)>(a, b, "neg_schar", static_cast<signed char>(-127));
  ExpectSameBothWays<unsigned char(unsigned char, unsigned char)>(
      a, b, "add_uchar", static_cast<unsigned char>(255), static_cast<unsigned char>(2));
  ExpectSameBothWays<short(short, short)>(a, b, "add_short", static_cast<short>(-32768),
                                          static_cast<short>(1));
  ExpectSameBothWays<unsigned short(unsigned short, unsigned short)>(
      a, b, "add_ushort", static_cast<unsigned short>(65535), static_cast<unsigned short>(1));
  ExpectSameBothWays<int(int, int)>(a, b, "add_int", INT_MAX, -1);
  ExpectSameBothWays<unsigned(unsigned, unsigned)>(a, b, "add_uint", UINT_MAX, 2u);
  ExpectSameBothWays<long(long, long)>(a, b, "add_long", L::min(), L::max());
  ExpectSameBothWays<unsigned long(unsigned long, unsigned long)>(a, b, "add_ulong", ULONG_MAX,
                                                                  1ul);
  ExpectSameBothWays<long long(long long, long long)>(a, b, "add_longlong", LL::max(), 0ll);
  ExpectSameBothWays<unsigned long long(unsigned long long, unsigned long long)>(
      a, b, "add_ulonglong", ULLONG_MAX, ULLONG_MAX);
  ExpectSameBothWays<int64_t(int64_t)>(a, b, "neg_int64", INT64_MIN + 1);
  ExpectSameBothWays<uint64_t(uint64_t, uint64_t)>(a, b, "add_uint64", uint64_t{1} << 63,
                                                   uint64_t{1} << 62);
  ExpectSameBothWays<size_t(size_t)>(a, b, "twice_size", SIZE_MAX / 2);
  ExpectSameBothWays<ssize_t(ssize_t)>(a, b, "neg_ssize", static_cast<ssize_t>(-5));
  ExpectSameBothWays<float(float, float)>(a, b, "mul_float", std::numeric_limits<float>::max(),
                                          2.0f);
  ExpectSameBothWays<double(double, double)>(a, b, "mul_double", -0.0, 1e308);
  ExpectSameBothWays<double(double, double)>(a, b, "mul_double",
                                             std::numeric_limits<double>::denorm_min(), 0.5);
  ExpectSameBothWays<long double(long double)>(a, b, "ld_half", 3.0L);
  ExpectSameBothWays<wchar_t(wchar_t)>(a, b, "upper_wchar", L'\u00e9');
  ExpectSameBothWays<int(int, int, int, int, int, int, int, int, int, int)>(
      a, b, "sum_ints", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
  ExpectSameBothWays<double(int, double, long, float, unsigned char)>(
      a, b, "sum_mixed", -1, 0.25, 1000000000000L, 0.5f, static_cast<unsigned char>(200));
  ExpectSameBothWays<void(int, int)>(a, b, "set_owned_number", 0, 70);
  ExpectSameBothWays<int(int)>(a, b, "owned_number_at", 0);
  ExpectSameBothWays<int(int)>(a, b, "crash_div_zero", 1);
  ExpectSameBothWays<int()>(a, b, "counter_next");  // each worker's first after the crash
  const uint64_t scalar_calls = local->same_host_scalar_calls();
  // 28 calls on the channel, but the crash's (the answer is the broker's) and the one after
  // it (through the broker, which starts the next worker, then a channel to it).
  EXPECT_EQ(scalar_calls, 26u);
  EXPECT_EQ(remote->same_host_scalar_calls(), 0u);
  // A call's own timeout: CALL_TIMEOUT, the session goes on.
  ASSERT_OK_AND_ASSIGN(auto sleep, a.Function<int(int)>("sleep_ms"));
  ASSERT_OK_AND_ASSIGN(auto add, a.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(1, 2));  // the channel to the next worker
  EXPECT_THAT(sleep.CallWithTimeout(absl::Milliseconds(100), 5000).status(),
              StatusIs(v1::CALL_TIMEOUT));
  ASSERT_OK_AND_ASSIGN(sum, add(2, 2));
  EXPECT_EQ(sum, 4);
  // With errno: the general way, the same errno.
  ASSERT_OK_AND_ASSIGN(auto set_errno, a.Function<int(int)>("set_errno_to"));
  const uint64_t before = local->same_host_scalar_calls();
  ASSERT_OK_AND_ASSIGN(WithErrno<int> failed, set_errno.CallWithErrno(ERANGE));
  EXPECT_EQ(failed.value, -1);
  EXPECT_EQ(failed.error_number, ERANGE);
  EXPECT_EQ(local->same_host_scalar_calls(), before);
  EXPECT_TRUE(local->same_host());
}

// The worker runs a scalar call from its arguments' bits, without the request's parse
// (WorkerExecutor::CallScalar), and counts it in the channel (kLocalScalarCallsWord): every
// scalar call is counted, a callback's round trip included, and what goes the general way
// (errno asked for, a buffer) is not.
TEST_F(SameHostTest, TheWorkerRunsScalarCallsWithoutTheRequestsParse) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(1, 2));  // the channel's first call
  EXPECT_EQ(sum, 3);
  ASSERT_TRUE(session->same_host());
  const uint64_t first = session->same_host_worker_scalar_calls();
  EXPECT_EQ(first, 1u);
  for (int i = 0; i < 50; ++i) {
    ASSERT_OK_AND_ASSIGN(sum, add(i, 7));
    ASSERT_EQ(sum, i + 7);
  }
  EXPECT_EQ(session->same_host_worker_scalar_calls(), first + 50);

  // The handler asks for the count during the call that runs it, on the calling thread.
  uint64_t seen_in_handler = 0;
  ASSERT_OK_AND_ASSIGN(Callback<int(int)> twice,
                       session->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
                         seen_in_handler = session->same_host_worker_scalar_calls();
                         return 2 * x;
                       }));
  ASSERT_OK_AND_ASSIGN(auto register_handler,
                       lib.Function<void(Callback<int(int)>)>("register_handler"));
  ASSERT_OK_AND_ASSIGN(auto fire_handler, lib.Function<int(int)>("fire_handler"));
  ASSERT_OK(register_handler(twice));
  const uint64_t before_callbacks = session->same_host_worker_scalar_calls();
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(int doubled, fire_handler(i));
    ASSERT_EQ(doubled, 2 * i);
  }
  EXPECT_EQ(session->same_host_worker_scalar_calls(), before_callbacks + 10);
  EXPECT_EQ(seen_in_handler, before_callbacks + 9);

  const uint64_t before_general = session->same_host_worker_scalar_calls();
  ASSERT_OK_AND_ASSIGN(auto set_errno, lib.Function<int(int)>("set_errno_to"));
  ASSERT_OK_AND_ASSIGN(WithErrno<int> failed, set_errno.CallWithErrno(ERANGE));
  EXPECT_EQ(failed.error_number, ERANGE);
  ASSERT_OK_AND_ASSIGN(Library libc, session->Load("libc.so.6"));
  ASSERT_OK_AND_ASSIGN(auto strlen_fn, libc.Function<size_t(const char*)>("strlen"));
  ASSERT_OK_AND_ASSIGN(size_t length, strlen_fn("four"));
  EXPECT_EQ(length, 4u);
  EXPECT_EQ(session->same_host_worker_scalar_calls(), before_general);
  EXPECT_TRUE(session->same_host());
}

// `count` parameters of T: Sig is T(T, ..., T).
template <typename T, typename Sequence>
struct ManyOf;
template <typename T, size_t... I>
struct ManyOf<T, std::index_sequence<I...>> {
  template <size_t>
  using Each = T;
  using Sig = T(Each<I>...);
};

// A scalar call too large for a request (the server's --max_message_bytes) is refused as the
// broker refuses it, RESOURCE_EXHAUSTED, and the channel stays: the next calls go on it.
TEST(SameHostLimitsTest, AScalarCallTooLargeForARequestIsRefusedAndTheChannelStays) {
  ASSERT_OK_AND_ASSIGN(SameHostServer started,
                       StartSameHost({"--pool_size=1", "--max_message_bytes=1024"}));
  const std::unique_ptr<Session>& session = started.session;
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(1, 2));
  EXPECT_EQ(sum, 3);
  // 90 arguments of 13 bytes each in the request: never run (the library's sum_ints takes 10).
  using Huge = ManyOf<int64_t, std::make_index_sequence<90>>::Sig;
  ASSERT_OK_AND_ASSIGN(auto huge, lib.Function<Huge>("sum_ints"));
  std::array<int64_t, 90> args;
  args.fill(std::numeric_limits<int64_t>::min());
  EXPECT_THAT(std::apply(huge, args).status(), StatusIs(v1::RESOURCE_EXHAUSTED));
  EXPECT_TRUE(session->same_host());
  const uint64_t before = session->same_host_scalar_calls();
  ASSERT_OK_AND_ASSIGN(sum, add(2, 2));
  EXPECT_EQ(sum, 4);
  EXPECT_EQ(session->same_host_scalar_calls(), before + 1);
}

TEST_F(SameHostTest, CallsGiveWhatTheyGiveOverGrpc) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  EXPECT_TRUE(session->same_host());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  for (int i = 0; i < 1000; ++i) {
    ASSERT_OK_AND_ASSIGN(int sum, add(i, 7));
    ASSERT_EQ(sum, i + 7);
  }
  ASSERT_OK_AND_ASSIGN(Library libm, session->Load("libm.so.6"));
  ASSERT_OK_AND_ASSIGN(auto cos, libm.Function<double(double)>("cos"));
  ASSERT_OK_AND_ASSIGN(double c, cos(0.5));
  EXPECT_EQ(c, std::cos(0.5));
  // Blocks both ways, larger than a ring (256 KiB): they go through the shared area.
  ASSERT_OK_AND_ASSIGN(Library libc, session->Load("libc.so.6"));
  ASSERT_OK_AND_ASSIGN(auto memset, (libc.Function<void*(Buffer&, int, size_t)>("memset")));
  const size_t size = size_t{3} << 20;
  Buffer buffer = Buffer::InOut(std::string(size, 'a'));
  ASSERT_OK(memset(buffer, 'z', size - 1).status());
  EXPECT_EQ(buffer.data.size(), size);
  EXPECT_EQ(buffer.data.find_first_not_of('z'), size - 1);
  EXPECT_TRUE(session->same_host());
}

// Large blocks travel in the channel's shared area, not in frames: with requests capped at
// 1 MiB, a call with 10 MiB of buffers in each direction is refused over gRPC and runs on the
// channel, its bytes exact both ways, IN, OUT and INOUT alike, next to small blocks that stay
// in the frame. (10 MiB: at least kBulkCopyMinBytes, so the client copies them in and out
// around the caches, in two halves.)
TEST(SameHostSharedAreaTest, BlocksLargerThanAMessageTravelInTheSharedArea) {
  ASSERT_OK_AND_ASSIGN(SameHostServer started,
                       StartSameHost({"--pool_size=1", "--max_message_bytes=1048576"}));
  const std::unique_ptr<Session>& session = started.session;
  ASSERT_OK_AND_ASSIGN(Library libc, session->Load("libc.so.6"));
  ASSERT_OK_AND_ASSIGN(auto memcpy_fn,
                       (libc.Function<void*(Buffer&, const Buffer&, size_t)>("memcpy")));
  ASSERT_OK_AND_ASSIGN(auto memset_fn, (libc.Function<void*(Buffer&, int, size_t)>("memset")));
  const size_t size = size_t{10} << 20;
  ASSERT_GE(size, kBulkCopyMinBytes);
  std::string pattern(size, '\0');
  for (size_t i = 0; i < size; ++i) pattern[i] = static_cast<char>(i * 7 + i / 4093);
  Buffer in = Buffer::In(pattern);
  Buffer out = Buffer::Out(size);
  for (int round = 0; round < 3; ++round) {
    ASSERT_OK(memcpy_fn(out, in, size).status());
    ASSERT_EQ(out.data.size(), size);
    ASSERT_TRUE(out.data == pattern) << "round " << round;
    EXPECT_TRUE(session->same_host());
    out.data.assign(size, 'x');  // an OUT block starts zeroed whatever the client holds
    Buffer small = Buffer::Out(16);
    ASSERT_OK(memcpy_fn(small, Buffer::In(pattern.substr(0, 16)), 16).status());
    EXPECT_EQ(small.data, pattern.substr(0, 16));
  }
  Buffer inout = Buffer::InOut(pattern);
  ASSERT_OK(memset_fn(inout, 'q', size / 2).status());
  EXPECT_EQ(inout.data.substr(0, size / 2), std::string(size / 2, 'q'));
  EXPECT_TRUE(
      inout.data.compare(size / 2, std::string::npos, pattern, size / 2, std::string::npos) == 0);
  // Over gRPC the same call is larger than a message may be: refused, and the session goes
  // on (the client does not write it: at four times the cap gRPC would end the stream).
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> remote, started.client->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library remote_libc, remote->Load("libc.so.6"));
  ASSERT_OK_AND_ASSIGN(auto remote_memset,
                       (remote_libc.Function<void*(Buffer&, int, size_t)>("memset")));
  absl::StatusOr<RemotePtr> refused = remote_memset(inout, 'r', size);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused.status()), v1::RESOURCE_EXHAUSTED) << refused.status();
  Buffer small = Buffer::InOut(std::string(64, 'a'));
  ASSERT_OK(remote_memset(small, 'r', 64).status());
  EXPECT_EQ(small.data, std::string(64, 'r'));
}

// After the worker is lost, a call that fits no message opens the channel to the next worker
// and goes through its area, instead of failing on the stream.
TEST(SameHostSharedAreaTest, AfterACrashALargeCallGoesToTheNextWorkersArea) {
  SessionOptions options;
  options.on_output = [](v1::OutputStream, absl::string_view) {};  // the crash report
  ASSERT_OK_AND_ASSIGN(SameHostServer started,
                       StartSameHost({"--pool_size=1", "--max_message_bytes=1048576"}, options));
  const std::unique_ptr<Session>& session = started.session;
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(Library libc, session->Load("libc.so.6"));
  ASSERT_OK_AND_ASSIGN(auto crash, lib.Function<int()>("crash_null_deref"));
  ASSERT_OK_AND_ASSIGN(auto memset_fn, (libc.Function<void*(Buffer&, int, size_t)>("memset")));
  const size_t size = size_t{6} << 20;
  Buffer buffer = Buffer::InOut(std::string(size, 'a'));
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    ASSERT_OK(memset_fn(buffer, 'b' + round, size).status());
    EXPECT_EQ(buffer.data, std::string(size, static_cast<char>('b' + round)));
    absl::StatusOr<int> crashed = crash();
    ASSERT_FALSE(crashed.ok());
    EXPECT_EQ(ErrorCodeOf(crashed.status()), v1::WORKER_CRASHED) << crashed.status();
  }
}

// A pointer graph keeps its links on the same host whatever its blocks' sizes: only Buffers
// (plain bytes) go through the area, so a large graph block comes back with its pointers.
TEST(SameHostSharedAreaTest, ALargeGraphBlockKeepsItsLinks) {
  ASSERT_OK_AND_ASSIGN(SameHostServer started, StartSameHost({"--pool_size=1"}));
  const std::unique_ptr<Session>& session = started.session;
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto reverse, lib.Function<void(GraphPointer)>("reverse_list"));
  BlockGraph graph;
  const int head = graph.Add(std::string(size_t{256} << 10, '\0'));  // holds the list's head
  std::vector<int> nodes;
  for (int value : {1, 20, 300}) {
    std::string bytes(sizeof(Node), '\0');
    std::memcpy(bytes.data(), &value, sizeof(int));
    nodes.push_back(graph.Add(bytes));
  }
  graph.Link(head, 0, {nodes[0], 0});
  graph.Link(nodes[0], offsetof(Node, next), {nodes[1], 0});
  graph.Link(nodes[1], offsetof(Node, next), {nodes[2], 0});
  for (int round = 0; round < 2; ++round) {
    ASSERT_OK(reverse(graph.At(head)));
    ASSERT_OK_AND_ASSIGN(std::optional<BlockPosition> first, graph.Target(head, 0));
    ASSERT_TRUE(first.has_value());
    EXPECT_EQ(first->block, round == 0 ? nodes[2] : nodes[0]) << "round " << round;
    EXPECT_TRUE(session->same_host());
  }
}

// A worker with no room left to map the area when its channel opens still gets its calls
// (in frames, once it said so); one that fits no frame without the area is refused as the
// broker refuses it, and the channel stays.
TEST(SameHostSharedAreaTest, AWorkerThatCannotMapTheAreaGetsTheCallInFrames) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server,
                       TestServer::Start({"--pool_size=0", "--max_message_bytes=4194304"}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Connect(server->address()));
  SessionOptions options;
  // The area: 32 MiB, a quarter of the cap (a smaller cap leaves a fresh worker, whose
  // threads' malloc arenas reserve address space too, too little room to start with).
  options.memory_limit_bytes = uint64_t{128} << 20;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client->OpenSession(options));
  ASSERT_OK_AND_ASSIGN(Library libc, session->Load("libc.so.6"));
  ASSERT_OK_AND_ASSIGN(auto memset_fn, (libc.Function<void*(Buffer&, int, size_t)>("memset")));
  // The worker takes all of its address space in mappings of 1 MiB, then gives 3 MiB back
  // (munmap, not free: malloc may serve a block from its heap, whose free space stays
  // taken): room for the channel and a call's own block, not for the area.
  ASSERT_OK_AND_ASSIGN(auto mmap_fn,
                       (libc.Function<RemotePtr(RemotePtr, size_t, int, int, int, long)>("mmap")));
  ASSERT_OK_AND_ASSIGN(auto munmap_fn, (libc.Function<int(RemotePtr, size_t)>("munmap")));
  std::vector<RemotePtr> taken;
  constexpr size_t kMiB = size_t{1} << 20;
  for (int i = 0; i < 160; ++i) {
    ASSERT_OK_AND_ASSIGN(RemotePtr block, mmap_fn(RemotePtr{}, kMiB, PROT_READ | PROT_WRITE,
                                                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (block.address == reinterpret_cast<uint64_t>(MAP_FAILED)) break;
    taken.push_back(block);
  }
  ASSERT_LT(taken.size(), 160u) << "the memory cap did not bite";
  ASSERT_GE(taken.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(int unmapped, munmap_fn(taken.back(), kMiB));
    ASSERT_EQ(unmapped, 0);
    taken.pop_back();
  }
  ASSERT_OK(session->EnableSameHost());
  Buffer huge = Buffer::InOut(std::string(size_t{8} << 20, 'a'));
  absl::StatusOr<RemotePtr> refused = memset_fn(huge, 'c', 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorCodeOf(refused.status()), v1::RESOURCE_EXHAUSTED) << refused.status();
  EXPECT_NE(refused.status().message().find("exceeds the limit of 4194304"), std::string::npos)
      << refused.status();
  EXPECT_TRUE(session->same_host());
  const size_t size = size_t{256} << 10;
  Buffer buffer = Buffer::InOut(std::string(size, 'a'));
  for (int round = 0; round < 2; ++round) {
    ASSERT_OK(memset_fn(buffer, 'b' + round, size - 1).status());
    EXPECT_EQ(buffer.data.find_first_not_of(static_cast<char>('b' + round)), size - 1);
    EXPECT_TRUE(session->same_host());
  }
}

TEST_F(SameHostTest, ACrashIsWorkerCrashedAndTheSessionGoesOn) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto crash, lib.Function<int()>("crash_null_deref"));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  absl::StatusOr<int> crashed = crash();
  ASSERT_FALSE(crashed.ok());
  EXPECT_EQ(ErrorCodeOf(crashed.status()), v1::WORKER_CRASHED) << crashed.status();
  EXPECT_NE(crashed.status().message().find("SIGSEGV"), std::string::npos) << crashed.status();
  EXPECT_FALSE(session->same_host());
  // The next call goes through the broker, which starts the next worker; then a channel to
  // that worker carries the calls after it.
  ASSERT_OK_AND_ASSIGN(int sum, add(1, 2));
  EXPECT_EQ(sum, 3);
  EXPECT_TRUE(session->same_host());
  ASSERT_OK_AND_ASSIGN(sum, add(40, 2));
  EXPECT_EQ(sum, 42);
  // Asking again opens another channel to the same worker.
  ASSERT_OK(session->EnableSameHost());
  ASSERT_OK_AND_ASSIGN(sum, add(1, 1));
  EXPECT_EQ(sum, 2);
}

// Memory and layout requests go on the channel too (LocalChannelOpened.memory_requests):
// with ffiboxd stopped they are still answered, by the worker alone (through the broker they
// would wait for the session's answer deadline and end the session); the worker's refusals
// are typed errors and leave the channel up.
TEST_F(SameHostTest, MemoryRequestsAreAnsweredOnTheChannelWithTheBrokerStopped) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Seconds(2)));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(RemotePtr at, session->AllocMemory(64));
  v1::Type pair;
  pair.mutable_record()->set_kind(v1::RecordType::STRUCT);
  for (const char* name : {"a", "b"}) {
    v1::Field* field = pair.mutable_record()->add_fields();
    field->set_name(name);
    field->mutable_type()->set_scalar(v1::INT32);
  }
  ASSERT_EQ(kill(server_->pid(), SIGSTOP), 0);
  absl::Cleanup resume = [this] { kill(server_->pid(), SIGCONT); };
  ASSERT_OK(session->WriteMemory(at, absl::string_view("hello\0worker", 12)));
  ASSERT_OK_AND_ASSIGN(std::string read, session->ReadMemory(at, 12));
  EXPECT_EQ(read, std::string("hello\0worker", 12));
  ASSERT_OK_AND_ASSIGN(read, session->ReadCString(at));
  EXPECT_EQ(read, "hello");
  ASSERT_OK(session->Write<int32_t>(at.Offset(16), -7));
  ASSERT_OK_AND_ASSIGN(int32_t number, session->Read<int32_t>(at.Offset(16)));
  EXPECT_EQ(number, -7);
  ASSERT_OK_AND_ASSIGN(v1::LayoutResult layout, session->Layout(pair));
  EXPECT_EQ(layout.size(), 8);
  EXPECT_THAT(session->ReadMemory(RemotePtr(8, at.generation), 8), StatusIs(v1::MEMORY_FAULT));
  EXPECT_THAT(session->ReadMemory(RemotePtr(at.address, at.generation + 1), 8),
              StatusIs(v1::STALE_HANDLE));
  ASSERT_OK_AND_ASSIGN(int sum, add(2, 3));
  EXPECT_EQ(sum, 5);
  std::move(resume).Invoke();
  EXPECT_TRUE(session->same_host());
  ASSERT_OK(session->FreeMemory(at));  // through the broker, awake again
}

// Requests need the worker in the order they were sent (docs/protocol.md, "Pipelined
// requests"): a write sent through the broker without waiting, then a read, reads what the
// write wrote, though the read could take the channel and the write may not have reached the
// worker yet.
TEST_F(SameHostTest, AReadAfterAWriteSentAheadOnTheStreamReadsWhatItWrote) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(RemotePtr at, session->AllocMemory(64));
  for (int i = 0; i < 200; ++i) {
    const std::string value = absl::StrCat("value-", i);
    v1::Request write;
    write.mutable_write_memory()->mutable_address()->set_address(at.address);
    write.mutable_write_memory()->mutable_address()->set_generation(at.generation);
    write.mutable_write_memory()->set_data(value);
    std::future<absl::StatusOr<v1::Response>> written = session->SendAsync(std::move(write));
    ASSERT_OK_AND_ASSIGN(std::string read, session->ReadMemory(at, value.size()));
    ASSERT_EQ(read, value) << "read " << i << " overtook the write sent before it";
    ASSERT_OK_AND_ASSIGN(v1::Response answer, written.get());
    ASSERT_FALSE(answer.has_error()) << answer.error().message();
  }
  EXPECT_TRUE(session->same_host());
}

// The process's peak resident size since ResetPeakRss, in MiB.
double PeakRssMib() {
  FILE* status = fopen("/proc/self/status", "r");
  if (status == nullptr) return 0;
  char line[256];
  double kib = 0;
  while (fgets(line, sizeof line, status) != nullptr) {
    if (strncmp(line, "VmHWM:", 6) == 0) kib = strtod(line + 6, nullptr);
  }
  fclose(status);
  return kib / 1024;
}

void ResetPeakRss() {
  FILE* refs = fopen("/proc/self/clear_refs", "w");
  ASSERT_NE(refs, nullptr);
  fputs("5", refs);
  fclose(refs);
}

// The hostile library (tests/testlibs/hostile.c), loaded into `session` by its real path.
absl::StatusOr<Library> LoadHostile(Session& session) {
  char real[PATH_MAX];
  const std::string path = RunfilePath("tests/testlibs/libffibox_hostile.so");
  if (realpath(path.c_str(), real) == nullptr) return absl::NotFoundError(path);
  return session.Load(real);
}

// The start of a forged Response{id: 1, call: {blocks: {} x `blocks`}}: the tag and length
// of each field, to be followed by the blocks' two bytes `blocks` times (a pattern "\x12"
// whose second byte is its string's terminator).
std::string EmptyBlocksStart(long blocks) {
  std::string start = "\x08\x01\x6a";
  for (uint64_t length = blocks; length != 0; length >>= 7) {
    start.push_back(static_cast<char>((length & 0x7f) | (length >= 0x80 ? 0x80 : 0)));
  }
  return start;
}

// A hostile library forges its worker's answer on the channel (tests/testlibs/hostile.c):
// 48 MiB of empty returned blocks, two bytes each, which parsed whole would take this process
// GiBs. The client walks the encoding first and refuses it at once (core/encoding_limits.h);
// the call fails with INTERNAL naming what it held, and the session goes on.
TEST_F(SameHostTest, AnAnswerThatWouldParseIntoFarMoreMemoryIsRefusedUnparsed) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library hostile, LoadHostile(*session));
  ASSERT_OK_AND_ASSIGN(auto forge,
                       (hostile.Function<long(int, const char*, long, const char*, long, long)>(
                           "hostile_whole_frame")));
  const long blocks = 48 << 20;
  const std::string start = EmptyBlocksStart(blocks);
  ASSERT_TRUE(session->same_host());
  ResetPeakRss();
  const double before = PeakRssMib();
  const absl::Time started = absl::Now();
  absl::StatusOr<long> forged = forge(1, start.c_str(), static_cast<long>(start.size()), "\x12", 2,
                                      static_cast<long>(start.size()) + blocks);
  const absl::Duration took = absl::Now() - started;
  EXPECT_LT(took, absl::Seconds(10));
  // The frame itself is read whole (48 MiB): nothing like the GiBs of its parse.
  EXPECT_LT(PeakRssMib() - before, 250) << "MiB more at the peak";
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(ErrorCodeOf(forged.status()), v1::INTERNAL) << forged.status();
  EXPECT_NE(forged.status().message().find("holds more ffibox.v1.CallResult.blocks"),
            std::string::npos)
      << forged.status();
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(20, 22));
  EXPECT_EQ(sum, 42);
}

// A hostile library announces a 300 MiB answer on the channel to a call that returns a
// long and two small blocks: the answer may hold its result, its blocks and what the library
// changed (CallAnswerBytes: about 72 MiB), so the client refuses it from its length, holding
// none of it. The library goes on writing into a ring no one reads: its worker is killed at
// the call's deadline, and the session goes on.
TEST_F(SameHostTest, AnAnswerLongerThanItsCallAllowsIsRefusedBeforeItIsRead) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Seconds(3)));
  ASSERT_OK_AND_ASSIGN(Library hostile, LoadHostile(*session));
  ASSERT_OK_AND_ASSIGN(auto forge,
                       (hostile.Function<long(int, const char*, long, const char*, long, long)>(
                           "hostile_whole_frame")));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  const long blocks = 300 << 20;
  const std::string start = EmptyBlocksStart(blocks);
  ResetPeakRss();
  const double before = PeakRssMib();
  const absl::Time started = absl::Now();
  absl::StatusOr<long> forged = forge(1, start.c_str(), static_cast<long>(start.size()), "\x12", 2,
                                      static_cast<long>(start.size()) + blocks);
  EXPECT_LT(absl::Now() - started, absl::Seconds(2));
  EXPECT_LT(PeakRssMib() - before, 32) << "MiB more at the peak";
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(ErrorCodeOf(forged.status()), v1::INTERNAL) << forged.status();
  EXPECT_NE(forged.status().message().find("exceeds the limit of"), std::string::npos)
      << forged.status();
  // Queued behind the hung call at most once (its worker is killed at its deadline).
  absl::StatusOr<int> sum = add(20, 22);
  if (!sum.ok()) {
    EXPECT_EQ(ErrorCodeOf(sum.status()), v1::CALL_TIMEOUT) << sum.status();
    sum = add(20, 22);
  }
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, 42);
}

// The worker alone cannot tell a handle of an earlier worker from one that never was: a
// function resolved at an address of the crashed worker goes through the broker, which
// answers STALE_HANDLE as it does without a channel.
TEST_F(SameHostTest, AFunctionAtAnAddressOfADeadWorkerIsStale) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(RemotePtr at, lib.SymbolAddress("add_int"));
  ASSERT_OK_AND_ASSIGN(auto add_at, session->FunctionAt<int(int, int)>(at));
  ASSERT_OK_AND_ASSIGN(int sum, add_at(2, 3));
  EXPECT_EQ(sum, 5);
  ASSERT_OK_AND_ASSIGN(auto crash, lib.Function<int()>("crash_null_deref"));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  EXPECT_FALSE(crash().ok());
  ASSERT_OK_AND_ASSIGN(sum, add(1, 2));
  EXPECT_TRUE(session->same_host());
  absl::StatusOr<int> stale = add_at(2, 3);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(ErrorCodeOf(stale.status()), v1::STALE_HANDLE) << stale.status();
  ASSERT_OK_AND_ASSIGN(sum, add(2, 2));
  EXPECT_EQ(sum, 4);
}

TEST_F(SameHostTest, TheBrokerKillsACallThatOverrunsTheSessionTimeout) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Milliseconds(500)));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto spin, lib.Function<int(int)>("spin_cpu_seconds"));
  const absl::Time start = absl::Now();
  absl::StatusOr<int> spun = spin(60);
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(spun.ok());
  EXPECT_EQ(ErrorCodeOf(spun.status()), v1::CALL_TIMEOUT) << spun.status();
  EXPECT_NE(spun.status().message().find("spin_cpu_seconds"), std::string::npos) << spun.status();
  // The broker looks every eighth of the timeout: well before the client's own wait (the
  // timeout plus 5 s) would end, even on a loaded machine.
  EXPECT_LT(took, absl::Seconds(4));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(2, 2));
  EXPECT_EQ(sum, 4);
}

TEST_F(SameHostTest, ACallOnTheChannelEndsAtOnceWhenFfiboxdDies) {
  // The channel cannot see ffiboxd die (its worker dies with it): the call waited out its
  // deadline and 5 s more, then read as a timeout of the library's.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Seconds(60)));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto sleep_ms, lib.Function<void(int)>("sleep_ms"));
  ASSERT_OK(sleep_ms(1));
  ASSERT_TRUE(session->same_host());
  const pid_t server = server_->pid();
  std::thread killer([server] {
    absl::SleepFor(absl::Milliseconds(500));
    kill(server, SIGKILL);
  });
  const absl::Time start = absl::Now();
  const absl::Status slept = sleep_ms(30000);
  const absl::Duration took = absl::Now() - start;
  killer.join();
  EXPECT_TRUE(absl::IsUnavailable(slept)) << slept;
  EXPECT_NE(slept.message().find("stream broke"), std::string::npos) << slept;
  EXPECT_LT(took, absl::Seconds(5));
}

TEST_F(SameHostTest, AForkedChildIsRefusedTheSessionAndTheParentGoesOn) {
  // The child's copy of the session would write into the parent's ring at the parent's
  // positions with the parent's ids: a call ran in the parent's worker, and the parent's
  // next call found the ring's positions impossible.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(1, 2));
  ASSERT_EQ(sum, 3);
  ASSERT_TRUE(session->same_host());
  const uint64_t calls_before = session->same_host_worker_scalar_calls();
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<int> refused = add(2, 3);
    const char outcome =
        !refused.ok() && ErrorCodeOf(refused.status()) == v1::FAILED_PRECONDITION &&
                absl::StrContains(refused.status().message(), "sessions do not cross fork()")
            ? 'R'
            : 'X';
    (void)!write(pipe_fds[1], &outcome, 1);
    const char closed = ErrorCodeOf(session->Close()) == v1::FAILED_PRECONDITION ? 'C' : 'X';
    (void)!write(pipe_fds[1], &closed, 1);
    session.reset();  // as a child's exit() or the end of its scope would: the parent goes on
    _exit(0);
  }
  close(pipe_fds[1]);
  char outcome[2] = {0, 0};
  EXPECT_EQ(read(pipe_fds[0], outcome, 1), 1);
  EXPECT_EQ(read(pipe_fds[0], outcome + 1, 1), 1);
  close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the child's status " << status;
  EXPECT_EQ(outcome[0], 'R');
  EXPECT_EQ(outcome[1], 'C');
  ASSERT_OK_AND_ASSIGN(sum, add(4, 5));
  EXPECT_EQ(sum, 9);
  EXPECT_TRUE(session->same_host());  // the channel stayed: the child never touched it
  EXPECT_EQ(session->same_host_worker_scalar_calls(), calls_before + 1);
}

TEST_F(SameHostTest, ACallsOwnTimeoutIsTheOneEnforced) {
  // A session timeout of 30 s; the call asks for 400 ms: the broker ends it then, not at 30 s.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto spin, lib.Function<int(int)>("spin_cpu_seconds"));
  const absl::Time start = absl::Now();
  absl::StatusOr<int> spun = spin.CallWithTimeout(absl::Milliseconds(400), 60);
  EXPECT_EQ(ErrorCodeOf(spun.status()), v1::CALL_TIMEOUT) << spun.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));  // not the client's wait of 5.4 s
  // And a call given longer than the session's timeout gets it.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> short_session, Open(absl::Milliseconds(300)));
  ASSERT_OK_AND_ASSIGN(Library lib2, short_session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto spin2, lib2.Function<int(int)>("spin_cpu_seconds"));
  ASSERT_OK_AND_ASSIGN(int seconds, spin2.CallWithTimeout(absl::Seconds(10), 1));
  EXPECT_EQ(seconds, 1);
  EXPECT_TRUE(short_session->same_host());
}

TEST_F(SameHostTest, ARequestQueuedBehindALongCallOnTheChannelGetsItsOwnTime) {
  // A session timeout of 600 ms; a call on the channel that may take 3 s sleeps 1 s, and a
  // load sent meanwhile waits for it: the load's clock starts again when it would have run
  // out, instead of the worker being killed under both.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Milliseconds(600)));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto sleep_ms, lib.Function<int(int)>("sleep_ms"));
  absl::StatusOr<int> slept;
  std::thread sleeper([&] { slept = sleep_ms.CallWithTimeout(absl::Seconds(3), 1000); });
  absl::SleepFor(absl::Milliseconds(150));
  absl::StatusOr<Library> libm = session->Load("libm.so.6");
  sleeper.join();
  ASSERT_OK(slept.status());
  EXPECT_EQ(*slept, 1000);
  ASSERT_OK(libm.status());
  ASSERT_OK_AND_ASSIGN(auto cos, libm->Function<double(double)>("cos"));
  ASSERT_OK_AND_ASSIGN(double one, cos(0.0));
  EXPECT_EQ(one, 1.0);
}

TEST_F(SameHostTest, CallbacksRunDuringACallOnTheChannel) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  using Add = Callback<double(double, double)>;
  ASSERT_OK_AND_ASSIGN(Add add,
                       session->DefineCallback<double(double, double)>(
                           [](double acc, double x) -> absl::StatusOr<double> { return acc + x; }));
  ASSERT_OK_AND_ASSIGN(
      auto fold, (lib.Function<double(Add, const std::vector<double>&, int, double)>("fold")));
  std::vector<double> xs = {0.5, 1.25, -3.0, 10.0};
  ASSERT_OK_AND_ASSIGN(double sum, fold(add, xs, static_cast<int>(xs.size()), 1.0));
  EXPECT_DOUBLE_EQ(sum, 9.75);
  EXPECT_TRUE(session->same_host());
}

// What callbacks whose parameters and results are scalars saw and what native code got back
// from them on one session.
struct ScalarCallbackRun {
  std::vector<std::string> seen;  // each invocation's arguments, printed
  double passed = 0;
  int uchar_sum = 0;
  int nested = 0;
};

ScalarCallbackRun RunScalarCallbacks(Session& session, Library& lib) {
  ScalarCallbackRun run;
  using Scalars = double(bool, signed char, unsigned short, int, unsigned, long long,
                         unsigned long long, float, double);
  auto all = session.DefineCallback<Scalars>([&](bool b, signed char c, unsigned short s, int i,
                                                 unsigned u, long long ll, unsigned long long ull,
                                                 float f, double d) -> absl::StatusOr<double> {
    run.seen.push_back(
        absl::StrCat(b, " ", c, " ", s, " ", i, " ", u, " ", ll, " ", ull, " ", f, " ", d));
    return d * 2 + i;
  });
  EXPECT_OK(all.status());
  auto truncated = session.DefineCallback<unsigned char(int)>(
      [&](int x) -> absl::StatusOr<unsigned char> { return static_cast<unsigned char>(x * 3); });
  EXPECT_OK(truncated.status());
  auto record = session.DefineCallback<void(int)>([&](int x) -> absl::Status {
    run.seen.push_back(absl::StrCat("void ", x));
    return absl::OkStatus();
  });
  EXPECT_OK(record.status());
  // Fails for 1: native code gets 0 for that invocation.
  auto failing = session.DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
    if (x == 1) return absl::InvalidArgumentError("one");
    return x + 10;
  });
  EXPECT_OK(failing.status());
  if (!all.ok() || !truncated.ok() || !record.ok() || !failing.ok()) return run;
  auto pass =
      lib.Function<double(Callback<Scalars>, bool, signed char, unsigned short, int, unsigned,
                          long long, unsigned long long, float, double)>("pass_scalars");
  auto sum = lib.Function<int(Callback<unsigned char(int)>, int, int)>("sum_uchar_results");
  auto each = lib.Function<void(Callback<void(int)>, int, int)>("call_void_n");
  auto twice = lib.Function<int(Callback<int(int)>, int)>("call_twice_nested");
  EXPECT_OK(pass.status());
  EXPECT_OK(sum.status());
  EXPECT_OK(each.status());
  EXPECT_OK(twice.status());
  if (!pass.ok() || !sum.ok() || !each.ok() || !twice.ok()) return run;
  absl::StatusOr<double> passed =
      (*pass)(*all, true, static_cast<signed char>(-128), static_cast<unsigned short>(65535),
              INT_MIN, UINT_MAX, LLONG_MIN, ULLONG_MAX, -1.5f, 1e308);
  EXPECT_OK(passed.status());
  run.passed = passed.value_or(0);
  absl::StatusOr<int> uchar_sum = (*sum)(*truncated, 84, 4);
  EXPECT_OK(uchar_sum.status());
  run.uchar_sum = uchar_sum.value_or(0);
  EXPECT_OK((*each)(*record, -2, 3));
  absl::StatusOr<int> nested = (*twice)(*failing, 1);
  EXPECT_OK(nested.status());
  run.nested = nested.value_or(0);
  return run;
}

// Callbacks of scalars go on the channel as scalar invocations, both ways in the wire
// format, and do what they do over gRPC: the same arguments, the same results as native
// code sees them (truncated to the C result type), a failed handler's zero.
TEST_F(SameHostTest, ScalarCallbacksGiveWhatTheyGiveOverGrpc) {
  ASSERT_OK_AND_ASSIGN(BothWays both, OpenBothWays());
  const ScalarCallbackRun here = RunScalarCallbacks(*both.local, *both.a);
  const ScalarCallbackRun there = RunScalarCallbacks(*both.remote, *both.b);
  EXPECT_EQ(here.seen, there.seen);
  ASSERT_EQ(here.seen.size(), 4u);
  EXPECT_EQ(here.seen[0], absl::StrCat("1 -128 65535 ", INT_MIN, " ", UINT_MAX, " ", LLONG_MIN, " ",
                                       ULLONG_MAX, " -1.5 1e+308"));
  EXPECT_EQ(here.seen[1], "void -2");
  EXPECT_EQ(here.seen[3], "void 0");
  EXPECT_EQ(here.passed, there.passed);
  EXPECT_EQ(here.passed, std::numeric_limits<double>::infinity());  // 1e308 * 2 + INT_MIN
  // 252, 255, 258 -> 2, 261 -> 5 as unsigned char.
  EXPECT_EQ(here.uchar_sum, 252 + 255 + 2 + 5);
  EXPECT_EQ(here.uchar_sum, there.uchar_sum);
  EXPECT_EQ(here.nested, 10);  // h(h(1)): h(1) failed, native code got 0, h(0) = 10
  EXPECT_EQ(here.nested, there.nested);
  // Every invocation went as a scalar invocation: 1 + 4 + 3 + 2.
  EXPECT_EQ(both.local->same_host_scalar_invocations(), 10u);
  EXPECT_EQ(both.remote->same_host_scalar_invocations(), 0u);
  EXPECT_TRUE(both.local->same_host());
}

// A handler that keeps state is one handler, whichever way its invocations come: as scalar
// invocations on the channel, or through the broker (from a thread the library made).
TEST_F(SameHostTest, AHandlersStateIsOneOnTheChannelAndThroughTheBroker) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  using Counter = Callback<int(int)>;
  ASSERT_OK_AND_ASSIGN(Counter counter,
                       session->DefineCallback<int(int)>(
                           [n = 0](int) mutable -> absl::StatusOr<int> { return ++n; }));
  ASSERT_OK_AND_ASSIGN(auto twice, (lib.Function<int(Counter, int)>("call_twice_nested")));
  ASSERT_OK_AND_ASSIGN(auto from_thread, (lib.Function<int(Counter, int)>("call_from_thread")));
  const uint64_t scalar_before = session->same_host_scalar_invocations();
  std::vector<int> got;
  for (int round = 0; round < 2; ++round) {
    ASSERT_OK_AND_ASSIGN(int nested, twice(counter, 0));          // on the channel: two invocations
    ASSERT_OK_AND_ASSIGN(int threaded, from_thread(counter, 0));  // through the broker
    got.push_back(nested);
    got.push_back(threaded);
  }
  EXPECT_EQ(got, (std::vector<int>{2, 3, 5, 6}));
  EXPECT_EQ(session->same_host_scalar_invocations() - scalar_before, 4u);
}

TEST_F(SameHostTest, ACallbackDuringACallOnTheChannelRunsOnTheCallingThread) {
  // Over gRPC a handler runs on the session's callback thread; on the channel the thread
  // that waits for the call runs it, with no hop through the broker.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  std::vector<std::thread::id> threads;
  using IntCallback = Callback<int(int)>;
  ASSERT_OK_AND_ASSIGN(IntCallback triple,
                       session->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
                         threads.push_back(std::this_thread::get_id());
                         return 3 * x;
                       }));
  ASSERT_OK_AND_ASSIGN(auto twice, (lib.Function<int(IntCallback, int)>("call_twice_nested")));
  ASSERT_OK_AND_ASSIGN(int result, twice(triple, 2));
  EXPECT_EQ(result, 18);
  ASSERT_EQ(threads.size(), 2u);
  EXPECT_EQ(threads[0], std::this_thread::get_id());
  EXPECT_EQ(threads[1], std::this_thread::get_id());
  EXPECT_TRUE(session->same_host());
  // A callback from a thread the library made still reaches the client (on the stream).
  ASSERT_OK_AND_ASSIGN(auto from_thread, (lib.Function<int(IntCallback, int)>("call_from_thread")));
  ASSERT_OK_AND_ASSIGN(int threaded, from_thread(triple, 5));
  EXPECT_EQ(threaded, 15);
  ASSERT_EQ(threads.size(), 3u);
  EXPECT_NE(threads[2], std::this_thread::get_id());
}

TEST_F(SameHostTest, AHandlerOnTheChannelCallsThereDefinesThroughTheBrokerAndIsRefusedBatches) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add_int, (lib.Function<int(int, int)>("add_int")));
  using IntCallback = Callback<int(int)>;
  ASSERT_OK_AND_ASSIGN(auto twice, (lib.Function<int(IntCallback, int)>("call_twice_nested")));
  std::string first;
  std::string rewritten;
  int sum = 0;
  IntPair pair{0, 0};
  absl::Status define_inside;
  absl::Status fill_inside;
  int after_fill = -1;
  int defined_gives = 0;
  absl::Status batch_inside;
  // each_row(row, context) calls row(context, 3, {"first", "second", "third", NULL}).
  using Row = Callback<int(RemotePtr, int, RemotePtr)>;
  ASSERT_OK_AND_ASSIGN(
      Row row,
      session->DefineCallback<int(RemotePtr, int, RemotePtr)>(
          [&](RemotePtr, int columns, RemotePtr values) -> absl::StatusOr<int> {
            // read_memory, read_string, write_memory, get_layout and a call, all on the channel.
            absl::StatusOr<RemotePtr> name = session->Read<RemotePtr>(values);
            if (!name.ok()) return name.status();
            absl::StatusOr<std::string> text = session->ReadCString(*name);
            if (!text.ok()) return text.status();
            first = *text;
            // values[1] = values[0]; then values[1] reads "first".
            absl::Status written = session->Write<RemotePtr>(values.Offset(8), *name);
            if (!written.ok()) return written;
            absl::StatusOr<RemotePtr> second = session->Read<RemotePtr>(values.Offset(8));
            if (!second.ok()) return second.status();
            absl::StatusOr<std::string> again = session->ReadCString(*second);
            if (!again.ok()) return again.status();
            rewritten = *again;
            // A record type's first use checks its layout (get_layout).
            absl::Status pair_written = session->Write<IntPair>(values.Offset(16), IntPair{7, -7});
            if (!pair_written.ok()) return pair_written;
            absl::StatusOr<IntPair> pair_read = session->Read<IntPair>(values.Offset(16));
            if (!pair_read.ok()) return pair_read.status();
            pair = *pair_read;
            absl::StatusOr<int> added = add_int(columns, 39);
            if (!added.ok()) return added.status();
            sum = *added;
            // A definition and a fill go through the broker, naming the invocation; the
            // worker's thread that waits on the channel runs them.
            absl::StatusOr<Callback<int(int)>> defined = session->DefineCallback<int(int)>(
                [](int x) -> absl::StatusOr<int> { return 2 * x; });
            define_inside = defined.status();
            if (defined.ok()) {
              absl::StatusOr<int> through = twice(*defined, 20);  // doubled twice, nested: 80
              if (through.ok()) defined_gives = *through;
            }
            // values[2], written above with {7, -7}: its first int zeroed.
            fill_inside = session->FillMemory(values.Offset(16), 0, 4);
            absl::StatusOr<int> filled = session->Read<int>(values.Offset(16));
            if (filled.ok()) after_fill = *filled;
            // A batch would wait for the worker's thread that waits for us.
            Batch batch = session->NewBatch();
            batch.Add(add_int, 1, 2);
            batch_inside = batch.Run();
            return columns;
          }));
  ASSERT_OK_AND_ASSIGN(auto each_row, (lib.Function<int(Row, RemotePtr)>("each_row")));
  ASSERT_OK_AND_ASSIGN(int columns, each_row(row, RemotePtr()));
  EXPECT_EQ(columns, 3);
  EXPECT_EQ(first, "first");
  EXPECT_EQ(rewritten, "first");
  EXPECT_EQ(sum, 42);
  EXPECT_EQ(pair.a, 7);
  EXPECT_EQ(pair.b, -7);
  EXPECT_OK(define_inside);
  EXPECT_EQ(defined_gives, 80);
  EXPECT_OK(fill_inside);
  EXPECT_EQ(after_fill, 0);
  EXPECT_THAT(batch_inside, StatusIs(v1::FAILED_PRECONDITION)) << batch_inside;
  EXPECT_NE(batch_inside.message().find("same-host channel"), std::string::npos) << batch_inside;
  // The channel and the worker are as they were.
  EXPECT_TRUE(session->same_host());
  ASSERT_OK_AND_ASSIGN(int after, add_int(2, 3));
  EXPECT_EQ(after, 5);
  EXPECT_EQ(session->generation(), 1u);
}

// A handler still running when its call's deadline killed the worker: a request it sends
// through ffiboxd (a definition) gets the call's loss, not FAILED_PRECONDITION for a channel
// the session no longer has.
TEST_F(SameHostTest, AHandlerThatOutlivesItsCallsDeadlineGetsTheCallsLoss) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Seconds(1)));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  using IntCallback = Callback<int(int)>;
  ASSERT_OK_AND_ASSIGN(auto twice, (lib.Function<int(IntCallback, int)>("call_twice_nested")));
  absl::Status define_inside;
  bool first = true;
  ASSERT_OK_AND_ASSIGN(
      IntCallback slow, session->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
        if (first) {
          first = false;
          absl::SleepFor(absl::Milliseconds(2500));  // the worker is killed
          define_inside =
              session->DefineCallback<int(int)>([](int y) -> absl::StatusOr<int> { return y; })
                  .status();
        }
        return x;
      }));
  EXPECT_THAT(twice(slow, 1).status(), StatusIs(v1::CALL_TIMEOUT));
  EXPECT_THAT(define_inside, StatusIs(v1::CALL_TIMEOUT)) << define_inside;
  ASSERT_OK_AND_ASSIGN(auto add_int, (lib.Function<int(int, int)>("add_int")));
  ASSERT_OK_AND_ASSIGN(int sum, add_int(2, 3));
  EXPECT_EQ(sum, 5);
}

TEST_F(SameHostTest, AHandlerThatReturnsBeforeItsAsyncRequestsAreAnsweredKeepsItsWorker) {
  // Requests sent through the broker naming the invocation may still be on their way when the
  // handler returns: the worker answers each (run, or refused as no longer waiting), in order
  // with the requests after them, so the broker sees no answer out of turn and kills nothing.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add_int, (lib.Function<int(int, int)>("add_int")));
  using IntCallback = Callback<int(int)>;
  ASSERT_OK_AND_ASSIGN(auto twice, (lib.Function<int(IntCallback, int)>("call_twice_nested")));
  constexpr int kLeft = 16;
  std::vector<std::future<absl::StatusOr<v1::Response>>> left;
  // How long the handler goes on after its last send: the requests reach the worker before,
  // while and after it returns (the narrowest case: queued for it as it returns).
  absl::Duration linger;
  ASSERT_OK_AND_ASSIGN(IntCallback hasty,
                       session->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
                         for (int i = 0; i < kLeft; ++i) {
                           v1::Request alloc;
                           alloc.mutable_alloc_memory()->set_size(64);
                           left.push_back(session->SendAsync(std::move(alloc)));
                         }
                         const absl::Time until = absl::Now() + linger;
                         while (absl::Now() < until) {
                         }
                         return x + 1;  // without waiting for any of them
                       }));
  for (int round = 0; round < 40; ++round) {
    left.clear();
    linger = absl::Microseconds(10 * round);
    ASSERT_OK_AND_ASSIGN(int fired, twice(hasty, 1));
    EXPECT_EQ(fired, 3);  // (1 + 1) + 1
    // A call right after, on the channel.
    ASSERT_OK_AND_ASSIGN(int sum, add_int(round, 2));
    EXPECT_EQ(sum, round + 2);
    ASSERT_EQ(left.size(), 2u * kLeft);
    for (auto& answer : left) {
      ASSERT_EQ(answer.wait_for(std::chrono::seconds(30)), std::future_status::ready);
      absl::StatusOr<v1::Response> response = answer.get();
      ASSERT_OK(response.status());
      if (!response->has_error()) {
        EXPECT_TRUE(response->has_allocated()) << response->DebugString();
        continue;
      }
      EXPECT_EQ(response->error().code(), v1::FAILED_PRECONDITION) << response->DebugString();
      EXPECT_NE(response->error().message().find("is not waiting"), std::string::npos)
          << response->DebugString();
    }
  }
  // One worker throughout: none was killed for an answer out of turn.
  EXPECT_EQ(session->generation(), 1u);
  EXPECT_TRUE(session->same_host());
  for (const v1::SessionEvent& event : session->TakeEvents()) {
    EXPECT_NE(event.kind(), v1::SessionEvent::WORKER_LOST) << event.DebugString();
  }
}

TEST_F(SameHostTest, AHandlerWaitingForAnotherThreadsCallEndsAtTheDeadlineNotNever) {
  // The other thread's call cannot take the channel (the call on it waits for the handler):
  // it goes through the broker, which queues it behind the call and ends both at the call's
  // deadline, as over gRPC.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Seconds(1)));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add_int, (lib.Function<int(int, int)>("add_int")));
  absl::Status helper;
  bool helper_done = false;
  using IntCallback = Callback<int(int)>;
  ASSERT_OK_AND_ASSIGN(IntCallback waiting,
                       session->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
                         std::thread other([&] {
                           helper = add_int(x, 1).status();
                           helper_done = true;
                         });
                         other.join();
                         return x;
                       }));
  ASSERT_OK_AND_ASSIGN(auto twice, (lib.Function<int(IntCallback, int)>("call_twice_nested")));
  const absl::Time start = absl::Now();
  absl::StatusOr<int> result = twice(waiting, 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  EXPECT_EQ(ErrorCodeOf(result.status()), v1::CALL_TIMEOUT) << result.status();
  EXPECT_TRUE(helper_done);
  EXPECT_FALSE(helper.ok());
  // The session goes on, on a channel to the next worker.
  EXPECT_EQ(add_int(2, 3).value_or(-1), 5);
  EXPECT_EQ(add_int(4, 3).value_or(-1), 7);
  EXPECT_TRUE(session->same_host());
}

// A same-host channel of `session` opened by hand (a hostile client, through the C++ client's
// own LocalPath), whose every callback invocation is answered first with a request of
// another invocation (its status in `*nested`), then with an empty return; `*invoked`
// counts them.
absl::StatusOr<std::unique_ptr<client_internal::LocalPath>> ConnectBreakingInvocations(
    Session& session, int* invoked, absl::Status* nested) {
  v1::Request open;
  open.mutable_open_local_channel()->set_callbacks(true);
  FFIBOX_ASSIGN_OR_RETURN(v1::Response opened, session.Send(open));
  return client_internal::LocalPath::Connect(
      opened.local_channel(), absl::Seconds(5),
      [invoked, nested](const v1::Response& message, client_internal::LocalPath& channel,
                        absl::Time deadline) {
        ++*invoked;
        v1::Request wrong;
        wrong.set_id(1000);
        wrong.set_invocation(message.callback_invoke().invocation() + 1);
        wrong.mutable_read_string();
        *nested = channel.ExchangeNested(wrong, deadline).status();
        return absl::StatusOr<v1::CallbackReturn>(v1::CallbackReturn());
      });
}

TEST_F(SameHostTest, AClientThatBreaksTheProtocolInAnInvocationLosesItsChannelNotItsWorker) {
  // A hostile client (this test, through the C++ client's own LocalPath) answers the first
  // invocation of call_twice_nested(h, 5) with a request of another invocation. The worker
  // gives native code zero, refuses the call's second invocation too (the broker knows
  // nothing of the invocation it would nest in, and would take it for a protocol violation)
  // and closes the channel once the call is done; the worker lives on.
  ASSERT_OK_AND_ASSIGN(QuietSession quiet, OpenQuietWithIdentity());
  std::unique_ptr<Session>& session = quiet.session;
  Library& lib = *quiet.lib;
  using IntCallback = Callback<int(int)>;
  IntCallback& h = *quiet.identity;
  ASSERT_OK_AND_ASSIGN(
      RawFunction twice,
      lib.Resolve("call_twice_nested", TypedFunction<int(IntCallback, int)>::Signature()));
  int invoked = 0;
  absl::Status nested;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<client_internal::LocalPath> path,
                       ConnectBreakingInvocations(*session, &invoked, &nested));
  v1::Request call;
  call.set_id(1);
  call.mutable_call()->set_function(twice.handle());
  call.mutable_call()->add_args()->mutable_pointer()->set_callback(h.id());
  call.mutable_call()->add_args()->set_int_value(5);
  absl::StatusOr<v1::Response> answer = path->Exchange(&call, {}, absl::Now() + absl::Seconds(10));
  EXPECT_FALSE(answer.ok());
  EXPECT_EQ(invoked, 1);
  EXPECT_FALSE(nested.ok());
  EXPECT_TRUE(path->closed_by_worker());
  bool broken = false;
  bool refused_later = false;
  bool lost = false;
  test_support::WaitFor(
      [&] {
        for (const v1::SessionEvent& event : session->TakeEvents()) {
          const std::string& message = event.error().message();
          if (event.kind() == v1::SessionEvent::WORKER_LOST) lost = true;
          if (event.kind() != v1::SessionEvent::CALLBACK_ERROR) continue;
          if (message.find("the same-host channel failed:") != std::string::npos) broken = true;
          if (message.find("failed earlier in this call") != std::string::npos) {
            refused_later = true;
          }
        }
        return broken && refused_later;
      },
      absl::Seconds(5));
  EXPECT_TRUE(broken);
  EXPECT_TRUE(refused_later);
  EXPECT_FALSE(lost);
  // The same worker serves the session's next call.
  ASSERT_OK_AND_ASSIGN(auto add_int, (lib.Function<int(int, int)>("add_int")));
  EXPECT_EQ(add_int(2, 3).value_or(-1), 5);
  EXPECT_EQ(session->generation(), 1u);
}

// The same inside a scalar call (run from its arguments' bits, RunScalarLocal): the worker
// closes the channel once the call is done and touches it no more, and lives on.
TEST_F(SameHostTest, AClientThatBreaksTheProtocolInAScalarCallsInvocationLosesOnlyItsChannel) {
  ASSERT_OK_AND_ASSIGN(QuietSession quiet, OpenQuietWithIdentity());
  std::unique_ptr<Session>& session = quiet.session;
  Library& lib = *quiet.lib;
  using IntCallback = Callback<int(int)>;
  IntCallback& h = *quiet.identity;
  ASSERT_OK_AND_ASSIGN(auto register_handler, lib.Function<void(IntCallback)>("register_handler"));
  ASSERT_OK(register_handler(h));
  ASSERT_OK_AND_ASSIGN(RawFunction fire,
                       lib.Resolve("fire_handler", TypedFunction<int(int)>::Signature()));
  int invoked = 0;
  absl::Status nested;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<client_internal::LocalPath> path,
                       ConnectBreakingInvocations(*session, &invoked, &nested));
  const std::array<ScalarBits, 1> args = {
      ScalarBits{v1::Value::kIntValue, static_cast<uint64_t>(int64_t{7})}};
  const client_internal::ScalarCall call{fire.handle(), 0, args};
  EXPECT_FALSE(path->ExchangeScalar(1, call, absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(invoked, 1);
  EXPECT_TRUE(path->closed_by_worker());
  // The same worker serves the session's next call.
  ASSERT_OK_AND_ASSIGN(auto add_int, (lib.Function<int(int, int)>("add_int")));
  EXPECT_EQ(add_int(2, 3).value_or(-1), 5);
  bool lost = false;
  for (const v1::SessionEvent& event : session->TakeEvents()) {
    if (event.kind() == v1::SessionEvent::WORKER_LOST) lost = true;
  }
  EXPECT_FALSE(lost);
  EXPECT_EQ(session->generation(), 1u);
}

TEST_F(SameHostTest, ACallbackStormDoesNotPostponeTheTimeout) {
  // Every 20 ms the call invokes a callback (a frame for the broker's reader); the broker
  // still ends the call at the session's 500 ms.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open(absl::Milliseconds(500)));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  using Add = Callback<double(double, double)>;
  ASSERT_OK_AND_ASSIGN(Add slow_add, session->DefineCallback<double(double, double)>(
                                         [](double acc, double x) -> absl::StatusOr<double> {
                                           absl::SleepFor(absl::Milliseconds(20));
                                           return acc + x;
                                         }));
  ASSERT_OK_AND_ASSIGN(
      auto fold, (lib.Function<double(Add, const std::vector<double>&, int, double)>("fold")));
  std::vector<double> xs(500, 1.0);  // 10 s of callbacks
  const absl::Time start = absl::Now();
  absl::StatusOr<double> sum = fold(slow_add, xs, static_cast<int>(xs.size()), 0.0);
  EXPECT_EQ(ErrorCodeOf(sum.status()), v1::CALL_TIMEOUT) << sum.status();
  EXPECT_NE(sum.status().message().find("fold"), std::string::npos) << sum.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(4));
}

TEST_F(SameHostTest, ACallAfterAnIdleWorkersLossGoesToTheNextWorker) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, Open());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(auto crash_later, lib.Function<int(int)>("crash_later_thread"));
  // The worker dies while nobody calls: the channel is closed before the next call is sent,
  // so that call was never run and goes through the broker, which starts the next worker.
  ASSERT_OK(crash_later(50).status());
  absl::SleepFor(absl::Milliseconds(500));
  ASSERT_OK_AND_ASSIGN(int sum, add(20, 22));
  EXPECT_EQ(sum, 42);
  EXPECT_TRUE(session->same_host());  // a channel to the next worker
}

// Connects to the door at `path`, writes `token` and returns the descriptor it hands over.
absl::StatusOr<int> FetchFromDoor(const std::string& path, const std::string& token) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address)) != 0 ||
      write(fd, token.data(), token.size()) != static_cast<ssize_t>(token.size())) {
    close(fd);
    return absl::UnavailableError(strerror(errno));
  }
  absl::StatusOr<TaggedDescriptor> received = ReceiveDescriptor(fd);
  close(fd);
  if (!received.ok()) return received.status();
  return received->fd;
}

TEST_F(SameHostTest, TheDoorHandsAChannelOverOnceAndOnlyForItsToken) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  v1::Request request;
  request.mutable_open_local_channel();
  ASSERT_OK_AND_ASSIGN(v1::Response response, session->Send(request));
  ASSERT_TRUE(response.has_local_channel());
  const v1::LocalChannelOpened& opened = response.local_channel();
  EXPECT_EQ(opened.token().size(), 16u);
  EXPECT_EQ(opened.door_path(), server_->address().substr(5) + "-local");

  std::string wrong = opened.token();
  wrong[0] ^= 1;
  EXPECT_FALSE(FetchFromDoor(opened.door_path(), wrong).ok());
  EXPECT_FALSE(FetchFromDoor(opened.door_path(), "short").ok());
  ASSERT_OK_AND_ASSIGN(int memfd, FetchFromDoor(opened.door_path(), opened.token()));
  close(memfd);
  EXPECT_FALSE(FetchFromDoor(opened.door_path(), opened.token()).ok()) << "a token is good once";
}

TEST_F(SameHostTest, AnotherUserCannotReachTheDoor) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client_->OpenSession());
  v1::Request request;
  request.mutable_open_local_channel();
  ASSERT_OK_AND_ASSIGN(v1::Response response, session->Send(request));
  const std::string path = response.local_channel().door_path();
  struct stat door;
  ASSERT_EQ(stat(path.c_str(), &door), 0);
  EXPECT_TRUE(S_ISSOCK(door.st_mode));
  EXPECT_EQ(door.st_mode & 0777, 0600u);
  EXPECT_EQ(door.st_uid, geteuid());
  // nobody, from a child: refused by the socket's mode before the door's own check.
  pid_t child = fork();
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    _exit(FetchFromDoor(path, response.local_channel().token()).ok() ? 1 : 0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "another user fetched a channel";
}

}  // namespace
}  // namespace ffibox

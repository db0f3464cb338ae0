// Callbacks end to end: a real ffiboxd, real workers, libffi closures in the worker, and
// C++ handlers in this process. Native code (libc's qsort, tests/testlibs/callbacks.c) calls
// client functions; handlers call back into the session reentrantly; stored handlers fire in
// later calls and from library threads; failures (handler errors, a client that never
// answers, a crash inside a callback, freed callbacks, restarts, limits) give the documented
// results. Each test runs over gRPC and on the same-host channel.
#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "client/cpp/ffibox_client.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/session_fixture.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

// struct Point { int x; int y; } of tests/testlibs/callbacks.c.
struct CallbackPoint {
  int x;
  int y;
};
FFIBOX_STRUCT(CallbackPoint, x, y)

using IntCallback = Callback<int(int)>;
using test_support::TestLibPath;
using test_support::TestServer;
using test_support::WaitFor;

// Each test runs twice: on a session over gRPC, and on one whose calls take the same-host
// channel (where callbacks invoked during a call come on the channel too).
class CallbacksTest : public test_support::SessionFixture,
                      public ::testing::WithParamInterface<bool> {
 protected:
  std::vector<std::string> ServerFlags() const override { return {"--call_timeout_ms=10000"}; }
  SessionOptions Options() const override {
    SessionOptions options;
    options.same_host = GetParam();
    return options;
  }
  void SetUp() override {
    test_support::SessionFixture::SetUp();
    if (session_ != nullptr) {
      ASSERT_EQ(session_->same_host(), GetParam());
    }
  }

  template <typename Sig>
  TypedFunction<Sig> Fn(const std::string& symbol) {
    absl::StatusOr<TypedFunction<Sig>> function = lib_->Function<Sig>(symbol);
    EXPECT_TRUE(function.ok()) << symbol << ": " << function.status();
    return *function;
  }

  // Waits for a CALLBACK_ERROR event whose message contains `text` (events are taken).
  bool SawCallbackError(absl::string_view text) {
    bool seen = false;
    WaitFor(
        [&] {
          for (const v1::SessionEvent& event : session_->TakeEvents()) {
            if (event.kind() == v1::SessionEvent::CALLBACK_ERROR &&
                absl::StrContains(event.error().message(), text)) {
              seen = true;
            }
          }
          return seen;
        },
        absl::Seconds(5));
    return seen;
  }
};

TEST_P(CallbacksTest, QsortSortsWithAClientComparatorOnShippedPointees) {
  absl::StatusOr<Library> libc = session_->Load("libc.so.6");
  ASSERT_OK(libc);
  using Compare = Callback<int(const int*, const int*)>;
  int comparisons = 0;
  absl::StatusOr<Compare> compare = session_->DefineCallback<int(const int*, const int*)>(
      [&](Pointee<const int> a, Pointee<const int> b) -> absl::StatusOr<int> {
        ++comparisons;
        if (!a.has_value() || !b.has_value()) return absl::InternalError("pointee not shipped");
        return (*a > *b) - (*a < *b);
      });
  ASSERT_OK(compare);
  auto qsort = libc->Function<void(std::vector<int>&, size_t, size_t, Compare)>("qsort");
  ASSERT_OK(qsort);

  std::vector<int> values = {42, -7, 19, 0, 3, 3, 1000, -250};
  ASSERT_TRUE((*qsort)(values, values.size(), sizeof(int), *compare).ok());
  EXPECT_EQ(values, (std::vector<int>{-250, -7, 0, 3, 3, 19, 42, 1000}));
  EXPECT_GT(comparisons, 0);
}

TEST_P(CallbacksTest, QsortComparatorReadsVoidPointersThroughRemoteMemory) {
  absl::StatusOr<Library> libc = session_->Load("libc.so.6");
  ASSERT_OK(libc);
  using Compare = Callback<int(const void*, const void*)>;
  Session& session = *session_;
  absl::StatusOr<Compare> compare = session_->DefineCallback<int(const void*, const void*)>(
      [&session](RemotePtr a, RemotePtr b) -> absl::StatusOr<int> {
        // Reentrant reads inside the invocation, while qsort waits.
        absl::StatusOr<int> x = session.Read<int>(a);
        if (!x.ok()) return x.status();
        absl::StatusOr<int> y = session.Read<int>(b);
        if (!y.ok()) return y.status();
        return (*x > *y) - (*x < *y);
      });
  ASSERT_OK(compare);
  auto qsort = libc->Function<void(std::vector<int>&, size_t, size_t, Compare)>("qsort");
  ASSERT_OK(qsort);

  std::vector<int> values = {5, 1, 4, 2, 3};
  ASSERT_TRUE((*qsort)(values, values.size(), sizeof(int), *compare).ok());
  EXPECT_EQ(values, (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_TRUE(session_->TakeEvents().empty());
}

TEST_P(CallbacksTest, FoldOverDoublesCallsTheClientForEveryElement) {
  using Add = Callback<double(double, double)>;
  absl::StatusOr<Add> add = session_->DefineCallback<double(double, double)>(
      [](double acc, double x) -> absl::StatusOr<double> { return acc + x; });
  ASSERT_OK(add);
  auto fold = Fn<double(Add, const std::vector<double>&, int, double)>("fold");
  std::vector<double> xs = {0.5, 1.25, -3.0, 10.0};
  absl::StatusOr<double> sum = fold(*add, xs, static_cast<int>(xs.size()), 0.0);
  ASSERT_OK(sum);
  EXPECT_DOUBLE_EQ(*sum, 8.75);
}

TEST_P(CallbacksTest, CallbackMutatesAStructThroughAPointer) {
  using Mutate = Callback<void(CallbackPoint*)>;
  absl::StatusOr<Mutate> mutate =
      session_->DefineCallback<void(CallbackPoint*)>([](Pointee<CallbackPoint> p) -> absl::Status {
        if (!p.has_value()) return absl::InternalError("the point was not shipped");
        p.set(CallbackPoint{p->x + 10, p->y * 2});
        return absl::OkStatus();
      });
  ASSERT_OK(mutate);
  auto mutate_point = Fn<void(Mutate, CallbackPoint*)>("mutate_point");
  CallbackPoint point{1, 21};
  ASSERT_TRUE(mutate_point(*mutate, &point).ok());
  EXPECT_EQ(point.x, 11);
  EXPECT_EQ(point.y, 42);
}

TEST_P(CallbacksTest, NestedReentrantCallsRecurseThroughNativeCode) {
  auto add_int = Fn<int(int, int)>("add_int");
  auto twice = Fn<int(IntCallback, int)>("call_twice_nested");
  std::optional<IntCallback> self;
  int depth = 0;
  int max_depth = 0;
  int invocations = 0;
  // f(0) = add_int(0, 0); f(x) = add_int(call_twice_nested(f, x - 1), 1) = f(f(x - 1)) + 1,
  // so f(x) = x, and f(3) nests four invocations.
  absl::StatusOr<IntCallback> f =
      session_->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
        ++invocations;
        ++depth;
        max_depth = std::max(max_depth, depth);
        absl::StatusOr<int> result;
        if (x <= 0) {
          result = add_int(0, 0);
        } else {
          absl::StatusOr<int> inner = twice(*self, x - 1);
          result = inner.ok() ? add_int(*inner, 1) : inner;
        }
        --depth;
        return result;
      });
  ASSERT_OK(f);
  self = *f;
  absl::StatusOr<int> result = twice(*f, 3);
  ASSERT_OK(result);
  EXPECT_EQ(*result, 3);
  EXPECT_GE(max_depth, 4);
  EXPECT_GT(invocations, 8);
  EXPECT_TRUE(session_->TakeEvents().empty());
}

TEST_P(CallbacksTest, StoredHandlerFiresInLaterCalls) {
  absl::StatusOr<IntCallback> triple =
      session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return 3 * x; });
  ASSERT_OK(triple);
  auto register_handler = Fn<void(IntCallback)>("register_handler");
  auto fire_handler = Fn<int(int)>("fire_handler");
  ASSERT_TRUE(register_handler(*triple).ok());
  EXPECT_EQ(fire_handler(5).value_or(-99), 15);
  EXPECT_EQ(fire_handler(-4).value_or(-99), -12);
}

// C enums are integers: an enum in a callback's signature is its underlying type, any value
// of it (not only its enumerators), negative ones included.
enum Score { kLost = -1, kDrawn = 0, kWon = 1 };
enum class Points : int {};

TEST_P(CallbacksTest, EnumsAreTheirUnderlyingIntegersInCallbacks) {
  absl::StatusOr<Callback<Points(Score)>> tripled =
      session_->DefineCallback<Points(Score)>([](Score score) -> absl::StatusOr<Points> {
        return static_cast<Points>(3 * static_cast<int>(score));
      });
  ASSERT_OK(tripled);
  ASSERT_OK(Fn<void(Callback<Points(Score)>)>("register_handler")(*tripled));
  auto fire_handler = Fn<Points(Score)>("fire_handler");
  EXPECT_EQ(fire_handler(kWon).value_or(Points{-99}), Points{3});
  EXPECT_EQ(fire_handler(kLost).value_or(Points{-99}), Points{-3});
  EXPECT_EQ(fire_handler(static_cast<Score>(40)).value_or(Points{-99}), Points{120});
}

// The same for the thread named `name` of the ffibox-worker below ffiboxd `server`.
long WorkerThreadSwitches(pid_t server, const std::string& name) {
  const std::vector<pid_t> workers = test_support::WorkersOf(server);
  return workers.empty() ? -1 : test_support::ThreadSwitches(workers[0], name);
}

// Over gRPC, the worker's thread that waits for a callback's answer reads it from the broker
// itself while no other invocation waits (server/worker/dispatcher.h): a callback round trip
// does not wake the worker's reader thread (it did two to three times per round trip).
TEST(CallbackWakeups, ACallbackRoundTripDoesNotWakeTheWorkersReaderThread) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server, TestServer::Start({"--pool_size=0"}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Connect(server->address()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(IntCallback twice, session->DefineCallback<int(int)>(
                                              [](int x) -> absl::StatusOr<int> { return 2 * x; }));
  ASSERT_OK_AND_ASSIGN(auto register_handler, lib.Function<void(IntCallback)>("register_handler"));
  ASSERT_OK_AND_ASSIGN(auto fire_handler, lib.Function<int(int)>("fire_handler"));
  ASSERT_OK(register_handler(twice));
  ASSERT_OK_AND_ASSIGN(int warm, fire_handler(1));
  ASSERT_EQ(warm, 2);
  // Rounds of kRoundTrips: the quietest counts. A round while the machine is busy elsewhere
  // (other tests, builds) has spins miss and threads sleep more often, which says nothing
  // about the path on a free machine.
  constexpr int kRoundTrips = 200;
  constexpr int kRounds = 4;
  long reader_woke = LONG_MAX, stream_woke = LONG_MAX, callback_thread_woke = LONG_MAX;
  for (int round = 0; round < kRounds; ++round) {
    const long before = WorkerThreadSwitches(server->pid(), "worker-reader");
    ASSERT_GE(before, 0) << "no worker-reader thread in a worker of ffiboxd " << server->pid();
    const long stream_before = test_support::ThreadSwitches(getpid(), "ffibox-stream");
    ASSERT_GE(stream_before, 0) << "no ffibox-stream thread in this process";
    const long callback_thread_before = test_support::ThreadSwitches(getpid(), "ffibox-callback");
    ASSERT_GE(callback_thread_before, 0) << "no ffibox-callback thread in this process";
    for (int i = 0; i < kRoundTrips; ++i) {
      ASSERT_OK_AND_ASSIGN(int doubled, fire_handler(i));
      ASSERT_EQ(doubled, 2 * i);
    }
    reader_woke =
        std::min(reader_woke, WorkerThreadSwitches(server->pid(), "worker-reader") - before);
    stream_woke = std::min(stream_woke,
                           test_support::ThreadSwitches(getpid(), "ffibox-stream") - stream_before);
    callback_thread_woke =
        std::min(callback_thread_woke, test_support::ThreadSwitches(getpid(), "ffibox-callback") -
                                           callback_thread_before);
  }
  // Each of these threads woke once or more per round trip before (200 or more here); a
  // quiet machine sees a handful in all, a loaded one (builds and tests on both CPUs) up to
  // 15. The bound is what separates the two: a quarter of the round trips.
  constexpr long kBound = kRoundTrips / 4;
  // A few for its periodic look while a call runs (kReaderTakeover), none per round trip.
  EXPECT_LT(reader_woke, kBound) << "the reader thread woke " << reader_woke << " times in "
                                 << kRoundTrips << " round trips (the quietest of " << kRounds
                                 << " rounds)";
  // In this process, the caller reads the invoke, runs the handler and reads its call's
  // answer: neither the callback thread is woken for the invoke nor the session stream's
  // reader thread for the done that answers the callback_return (nothing waits for it).
  EXPECT_LT(stream_woke, kBound) << "the stream's reader thread woke " << stream_woke
                                 << " times in " << kRoundTrips << " round trips (the quietest of "
                                 << kRounds << " rounds)";
  EXPECT_LT(callback_thread_woke, kBound)
      << "the callback thread woke " << callback_thread_woke << " times in " << kRoundTrips
      << " round trips (the quietest of " << kRounds << " rounds)";

  // One call that invokes a callback for each of 200 elements, the first of which makes a
  // request inside its invocation: the reader thread reads while that one runs, and gives
  // the role back with its answer, so the other invocations of the same call do not wake it.
  ASSERT_OK_AND_ASSIGN(auto add_int, lib.Function<int(int, int)>("add_int"));
  bool nested_done = false;
  ASSERT_OK_AND_ASSIGN(auto add, (session->DefineCallback<double(double, double)>(
                                     [&](double acc, double x) -> absl::StatusOr<double> {
                                       if (!nested_done) {
                                         nested_done = true;
                                         absl::StatusOr<int> three = add_int(1, 2);
                                         if (!three.ok() || *three != 3)
                                           return absl::InternalError("nested");
                                       }
                                       return acc + x;
                                     })));
  ASSERT_OK_AND_ASSIGN(
      auto fold, (lib.Function<double(Callback<double(double, double)>, const std::vector<double>&,
                                      int, double)>("fold")));
  const std::vector<double> xs(kRoundTrips, 0.5);
  const long before_fold = WorkerThreadSwitches(server->pid(), "worker-reader");
  ASSERT_OK_AND_ASSIGN(double sum, fold(add, xs, static_cast<int>(xs.size()), 0.0));
  EXPECT_DOUBLE_EQ(sum, kRoundTrips * 0.5);
  EXPECT_TRUE(nested_done);
  const long after_fold = WorkerThreadSwitches(server->pid(), "worker-reader");
  EXPECT_LT(after_fold - before_fold, kRoundTrips / 10)
      << "the reader thread woke " << after_fold - before_fold << " times in one call of "
      << kRoundTrips << " invocations";

  // The same when the first invocation's handler takes longer than kReaderTakeover (the
  // reader thread then reads in the call's place): it gives the role back with that answer.
  bool slept = false;
  ASSERT_OK_AND_ASSIGN(auto slow_first, (session->DefineCallback<double(double, double)>(
                                            [&](double acc, double x) -> absl::StatusOr<double> {
                                              if (!slept) {
                                                slept = true;
                                                absl::SleepFor(absl::Milliseconds(700));
                                              }
                                              return acc + x;
                                            })));
  const long before_slow = WorkerThreadSwitches(server->pid(), "worker-reader");
  ASSERT_OK_AND_ASSIGN(sum, fold(slow_first, xs, static_cast<int>(xs.size()), 0.0));
  EXPECT_DOUBLE_EQ(sum, kRoundTrips * 0.5);
  const long after_slow = WorkerThreadSwitches(server->pid(), "worker-reader");
  EXPECT_LT(after_slow - before_slow, kRoundTrips / 10)
      << "the reader thread woke " << after_slow - before_slow << " times in one call of "
      << kRoundTrips << " invocations, the first of them long";
}

// As ctypes runs a callback: one that native code calls during the call, on the thread
// running it, runs on the thread that made the call, nested ones too (a request inside the
// handler whose own native code calls back); one from a thread of the library runs on the
// session's callback thread, so the caller stays free to see the call's deadline.
TEST_P(CallbacksTest, ACallbackCalledDuringTheCallRunsOnTheCallingThread) {
  const std::thread::id caller = std::this_thread::get_id();
  std::vector<std::thread::id> ran_on;
  auto fire_handler = Fn<int(int)>("fire_handler");
  absl::StatusOr<IntCallback> recorder =
      session_->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
        ran_on.push_back(std::this_thread::get_id());
        // A request inside the invocation whose native code calls the handler again.
        if (x > 0) return fire_handler(x - 1).value_or(-100) + 1;
        return 0;
      });
  ASSERT_OK(recorder);
  ASSERT_OK(Fn<void(IntCallback)>("register_handler")(*recorder));
  EXPECT_EQ(fire_handler(2).value_or(-99), 2);
  ASSERT_EQ(ran_on.size(), 3u);
  for (const std::thread::id& thread : ran_on) EXPECT_EQ(thread, caller);

  ran_on.clear();
  EXPECT_EQ(Fn<int(IntCallback, int)>("call_from_thread")(*recorder, 0).value_or(-99), 0);
  ASSERT_EQ(ran_on.size(), 1u);
  EXPECT_NE(ran_on[0], caller) << "a library thread's callback ran on the caller";

  // A batch's calls too. On the same-host path a batch goes through the broker, and its
  // handlers' calls must too: the worker's thread that serves the channel waits for them.
  ran_on.clear();
  Batch batch = session_->NewBatch();
  BatchCall<int> fired = batch.Add(fire_handler, 2);
  ASSERT_OK(batch.Run());
  EXPECT_EQ(batch.Result(fired).value_or(-99), 2);
  ASSERT_EQ(ran_on.size(), 3u);
  for (const std::thread::id& thread : ran_on) EXPECT_EQ(thread, caller);
}

// Handlers of two sessions nested on one thread: the other session's library thread calls
// back, its handler (on that session's callback thread) calls into this session, whose
// call's callback then runs on the same thread and calls the other session again. That
// request belongs inside the other session's invocation: the thread tells the handlers of
// the two sessions apart.
TEST_P(CallbacksTest, HandlersOfTwoSessionsNestOnOneThread) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other, client_->OpenSession(Options()));
  ASSERT_OK_AND_ASSIGN(Library other_lib, other->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto other_add, other_lib.Function<int(int, int)>("add_int"));
  auto fire_handler = Fn<int(int)>("fire_handler");
  absl::StatusOr<IntCallback> inner = session_->DefineCallback<int(int)>(
      [&](int x) -> absl::StatusOr<int> { return other_add(x, 100); });
  ASSERT_OK(inner);
  ASSERT_OK(Fn<void(IntCallback)>("register_handler")(*inner));
  // Once from this thread: this session's invocation ids then differ from the other's
  // (both count from the same start), so a request stamped with the wrong one fails.
  ASSERT_EQ(fire_handler(1).value_or(-99), 101);
  ASSERT_OK_AND_ASSIGN(IntCallback outer,
                       other->DefineCallback<int(int)>(
                           [&](int x) -> absl::StatusOr<int> { return fire_handler(x); }));
  ASSERT_OK_AND_ASSIGN(auto call_from_thread,
                       other_lib.Function<int(IntCallback, int)>("call_from_thread"));
  absl::StatusOr<int> nested = call_from_thread(outer, 2);
  ASSERT_OK(nested);
  EXPECT_EQ(*nested, 102);
}

// A library thread calls back while the call waits; then many times in a row (progress
// reports), each invocation read as soon as it comes. The reader of the stream stopped after
// each handler's answer was acknowledged, and the next invocation waited for it to take over
// again (20 ms): 400 invocations passed the call's 3 s deadline on the same-host path.
TEST_P(CallbacksTest, CallbacksFromALibraryThreadWhileTheCallWaits) {
  std::atomic<int> calls{0};
  absl::StatusOr<IntCallback> doubler =
      session_->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
        ++calls;
        return 2 * x;
      });
  ASSERT_OK(doubler);
  auto call_from_thread = Fn<int(IntCallback, int)>("call_from_thread");
  EXPECT_EQ(call_from_thread(*doubler, 21).value_or(-99), 42);
  EXPECT_EQ(calls.load(), 1);

  auto call_from_thread_n = Fn<long(IntCallback, int)>("call_from_thread_n");
  constexpr int kCalls = 400;
  absl::StatusOr<long> sum = call_from_thread_n.CallWithTimeout(absl::Seconds(3), *doubler, kCalls);
  ASSERT_OK(sum);
  EXPECT_EQ(*sum, long{kCalls} * (kCalls + 1));
  EXPECT_EQ(calls.load(), 1 + kCalls);
}

TEST_P(CallbacksTest, HandlerErrorGivesNativeCodeZeroAndACallbackErrorEvent) {
  using Add = Callback<double(double, double)>;
  absl::StatusOr<Add> failing = session_->DefineCallback<double(double, double)>(
      [](double, double) -> absl::StatusOr<double> {
        return absl::InvalidArgumentError("handler refuses to add");
      });
  ASSERT_OK(failing);
  auto fold = Fn<double(Add, const std::vector<double>&, int, double)>("fold");
  std::vector<double> xs = {1.0, 2.0};
  absl::StatusOr<double> result = fold(*failing, xs, 2, 5.0);
  ASSERT_OK(result);
  EXPECT_EQ(*result, 0.0);  // each invocation returned zero to native code
  EXPECT_TRUE(SawCallbackError("handler refuses to add"));
  // The session is unaffected.
  EXPECT_EQ(Fn<int(int, int)>("add_int")(2, 3).value_or(-1), 5);
}

TEST_P(CallbacksTest, ClientThatNeverAnswersMeetsTheCallDeadline) {
  absl::Notification release;
  absl::StatusOr<IntCallback> stuck =
      session_->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
        release.WaitForNotificationWithTimeout(absl::Seconds(20));
        return x;
      });
  ASSERT_OK(stuck);
  auto call_from_thread = Fn<int(IntCallback, int)>("call_from_thread");
  absl::Time start = absl::Now();
  absl::StatusOr<int> result = call_from_thread.CallWithTimeout(absl::Milliseconds(400), *stuck, 1);
  EXPECT_THAT(result.status(), StatusIs(v1::CALL_TIMEOUT)) << result.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  release.Notify();
  // A new worker serves the next call.
  EXPECT_EQ(Fn<int(int, int)>("add_int")(40, 2).value_or(-1), 42);
}

TEST_P(CallbacksTest, WorkerCrashInsideACallbackIsReportedAndTheNextCallWorks) {
  auto crash = Fn<int()>("crash_null_deref");
  absl::Status inner;
  absl::Notification handler_done;
  absl::StatusOr<IntCallback> crashing =
      session_->DefineCallback<int(int)>([&](int) -> absl::StatusOr<int> {
        absl::StatusOr<int> crashed = crash();  // reentrant: the worker dies under us
        inner = crashed.status();
        handler_done.Notify();
        return crashed;
      });
  ASSERT_OK(crashing);
  auto call_twice = Fn<int(IntCallback, int)>("call_twice_nested");
  absl::StatusOr<int> result = call_twice(*crashing, 1);
  EXPECT_THAT(result.status(), StatusIs(v1::WORKER_CRASHED)) << result.status();
  // Both requests fail at once; the handler sees its answer.
  ASSERT_TRUE(handler_done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_THAT(inner, StatusIs(v1::WORKER_CRASHED)) << inner;
  EXPECT_EQ(ToProtoError(result.status()).function(), "crash_null_deref");
  EXPECT_EQ(Fn<int(int, int)>("add_int")(1, 2).value_or(-1), 3);
  EXPECT_GE(session_->generation(), 2u);
}

TEST_P(CallbacksTest, FreedCallbackFiredGivesZeroAndACallbackError) {
  absl::StatusOr<IntCallback> handler =
      session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return x + 1; });
  ASSERT_OK(handler);
  ASSERT_TRUE(Fn<void(IntCallback)>("register_handler")(*handler).ok());
  auto fire_handler = Fn<int(int)>("fire_handler");
  EXPECT_EQ(fire_handler(1).value_or(-99), 2);
  ASSERT_TRUE(handler->Free().ok());
  EXPECT_EQ(fire_handler(1).value_or(-99), 0);
  EXPECT_TRUE(SawCallbackError(""));
  EXPECT_THAT(handler->Free(), StatusIs(v1::NOT_FOUND));
}

TEST_P(CallbacksTest, OnlyTheLastThousandEventsAreKept) {
  // Each call of a freed callback is an event (a library's thread may call one without end):
  // a caller that never takes them keeps the last 1000, not all.
  absl::StatusOr<IntCallback> handler =
      session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return x + 1; });
  ASSERT_OK(handler);
  ASSERT_TRUE(Fn<void(IntCallback)>("register_handler")(*handler).ok());
  ASSERT_TRUE(handler->Free().ok());
  auto fire_handler = Fn<int(int)>("fire_handler");
  for (int i = 0; i < 1500; ++i) ASSERT_EQ(fire_handler(i).value_or(-99), 0);
  // The worker answers a look-up through ffiboxd after the events it sent there.
  ASSERT_TRUE(lib_->Function<int(int, int)>("add_int").ok());
  const std::vector<v1::SessionEvent> events = session_->TakeEvents();
  EXPECT_EQ(events.size(), 1000u);
  for (const v1::SessionEvent& event : events) {
    EXPECT_EQ(event.kind(), v1::SessionEvent::CALLBACK_ERROR) << event.ShortDebugString();
  }
}

TEST_P(CallbacksTest, CallbackIdStaysUsableAfterAWorkerRestart) {
  absl::StatusOr<IntCallback> handler =
      session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return x * x; });
  ASSERT_OK(handler);
  ASSERT_TRUE(Fn<void(IntCallback)>("register_handler")(*handler).ok());
  auto fire_handler = Fn<int(int)>("fire_handler");
  EXPECT_EQ(fire_handler(7).value_or(-99), 49);

  EXPECT_THAT(Fn<int()>("crash_null_deref")().status(), StatusIs(v1::WORKER_CRASHED));
  // The library's stored pointer died with the old worker: the new one has no handler.
  EXPECT_EQ(fire_handler(7).value_or(-99), -1);
  EXPECT_GE(session_->generation(), 2u);
  // The callback id was defined again in the new worker.
  EXPECT_EQ(Fn<int(IntCallback, int)>("call_from_thread")(*handler, 9).value_or(-99), 81);
  ASSERT_TRUE(Fn<void(IntCallback)>("register_handler")(*handler).ok());
  EXPECT_EQ(fire_handler(3).value_or(-99), 9);
}

// A library forging invocations of the caller's callback, each with a 1 MiB string, while
// its handler is slow: ffiboxd ends the worker past its threads' worth (--worker_pids_max)
// of invocations outside any other, and the invocations of the lost worker still queued
// here are dropped, never run (they ran for a minute and more after the crash).
class ForgedInvocationsTest : public CallbacksTest {
 protected:
  std::vector<std::string> ServerFlags() const override { return {"--worker_pids_max=16"}; }
};

TEST_P(ForgedInvocationsTest, AFloodEndsItsWorkerAndWhatItQueuedIsDropped) {
  std::atomic<int> ran{0};
  absl::StatusOr<Callback<void(const char*)>> log = session_->DefineCallback<void(const char*)>(
      [&ran](std::optional<std::string>) -> absl::Status {
        ++ran;
        absl::SleepFor(absl::Milliseconds(500));  // slow: the invocations queue here
        return absl::OkStatus();
      });
  ASSERT_OK(log);
  char real[PATH_MAX];
  const std::string path = test_support::RunfilePath("tests/testlibs/libffibox_hostile.so");
  ASSERT_NE(realpath(path.c_str(), real), nullptr) << path;
  ASSERT_OK_AND_ASSIGN(Library hostile, session_->Load(real));
  ASSERT_OK_AND_ASSIGN(auto flood,
                       (hostile.Function<long(long, long, long)>("hostile_invoke_flood")));
  absl::StatusOr<long> flooded = flood(static_cast<long>(log->id()), 300, 1 << 20);
  EXPECT_THAT(flooded.status(), StatusIs(v1::WORKER_CRASHED)) << flooded.status();
  EXPECT_NE(flooded.status().message().find("invocations open at once outside any other"),
            std::string::npos)
      << flooded.status();
  absl::SleepFor(absl::Seconds(2));
  EXPECT_LE(ran.load(), 2);
  EXPECT_EQ(Fn<int(int, int)>("add_int")(1, 2).value_or(-1), 3);
}

class CallbackLimitsTest : public CallbacksTest {
 protected:
  std::vector<std::string> ServerFlags() const override {
    return {"--max_callbacks=3", "--max_callback_depth=2"};
  }
};

TEST_P(CallbackLimitsTest, DefiningMoreCallbacksThanTheLimitIsResourceExhausted) {
  std::vector<IntCallback> defined;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<IntCallback> callback =
        session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return x; });
    ASSERT_OK(callback);
    defined.push_back(*callback);
  }
  absl::StatusOr<IntCallback> extra =
      session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return x; });
  EXPECT_THAT(extra.status(), StatusIs(v1::RESOURCE_EXHAUSTED)) << extra.status();
  ASSERT_TRUE(defined[0].Free().ok());
  extra = session_->DefineCallback<int(int)>([](int x) -> absl::StatusOr<int> { return x; });
  EXPECT_TRUE(extra.ok()) << extra.status();
}

TEST_P(CallbackLimitsTest, NestingDeeperThanTheLimitIsRefused) {
  auto twice = Fn<int(IntCallback, int)>("call_twice_nested");
  std::optional<IntCallback> self;
  int depth = 0;
  int max_depth = 0;
  absl::Status refused;
  absl::StatusOr<IntCallback> recurse =
      session_->DefineCallback<int(int)>([&](int x) -> absl::StatusOr<int> {
        ++depth;
        max_depth = std::max(max_depth, depth);
        absl::StatusOr<int> inner = twice(*self, x);  // always one level deeper
        if (!inner.ok() && refused.ok()) refused = inner.status();
        --depth;
        return inner;
      });
  ASSERT_OK(recurse);
  self = *recurse;
  absl::StatusOr<int> result = twice(*recurse, 1);
  ASSERT_OK(result);
  EXPECT_EQ(*result, 0);  // the refused level returned zero all the way up
  EXPECT_THAT(refused, StatusIs(v1::RESOURCE_EXHAUSTED)) << refused;
  EXPECT_EQ(max_depth, 2);
}

std::string PathName(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "SameHost" : "Grpc";
}
// The bytes of the answer to a session's first invocation that writes back a pointee of
// `pointee_bytes`, without the request id the client adds when it writes it.
uint64_t PointeeAnswerBytes(size_t pointee_bytes) {
  v1::Request answer;
  answer.mutable_callback_return()->set_invocation((uint64_t{1} << 40) | 1);  // generation 1
  answer.mutable_callback_return()->add_pointees()->set_data(std::string(pointee_bytes, '\7'));
  return answer.ByteSizeLong();
}

// Over gRPC, with a server whose request cap is below what the handler answers: far below
// (32 KiB against 60 000 bytes), or by less than the request id takes.
class OversizedCallbackAnswerTest : public test_support::SessionFixture,
                                    public ::testing::WithParamInterface<size_t> {
 protected:
  std::vector<std::string> ServerFlags() const override {
    const uint64_t cap = GetParam() == 60000 ? 32768 : PointeeAnswerBytes(GetParam()) + 1;
    return {absl::StrCat("--max_message_bytes=", cap), "--call_timeout_ms=30000"};
  }

  template <size_t kBytes>  // shipped: at most 64 KiB
  void RunOversizedAnswer() {
    using Block = std::array<uint8_t, kBytes>;
    using Fill = Callback<void(Block*, int)>;
    absl::StatusOr<Fill> fill =
        session_->DefineCallback<void(Block*, int)>([](Pointee<Block> block, int) -> absl::Status {
          if (!block.has_value()) return absl::InternalError("the block was not shipped");
          auto filled = std::make_unique<Block>();
          filled->fill(7);
          block.set(*filled);
          return absl::OkStatus();
        });
    ASSERT_OK(fill);
    absl::StatusOr<RemotePtr> memory = session_->AllocMemory(kBytes);
    ASSERT_OK(memory);
    absl::StatusOr<std::string> before = session_->ReadMemory(*memory, kBytes);
    ASSERT_OK(before);
    absl::StatusOr<TypedFunction<void(Fill, RemotePtr, int)>> call_fill =
        lib_->Function<void(Fill, RemotePtr, int)>("call_fill");
    ASSERT_OK(call_fill);
    const absl::Time start = absl::Now();
    EXPECT_OK((*call_fill)(*fill, *memory, static_cast<int>(kBytes)));
    EXPECT_LT(absl::Now() - start, absl::Seconds(15));  // the call's deadline is 30 s
    absl::StatusOr<std::string> after = session_->ReadMemory(*memory, kBytes);
    ASSERT_OK(after);
    EXPECT_EQ(*after, *before);
    bool seen = false;
    std::string events;
    test_support::WaitFor(
        [&] {
          for (const v1::SessionEvent& event : session_->TakeEvents()) {
            events += event.ShortDebugString() + "\n";
            seen = seen || (event.kind() == v1::SessionEvent::CALLBACK_ERROR &&
                            absl::StrContains(event.error().message(), "too large to send"));
          }
          return seen;
        },
        absl::Seconds(5));
    EXPECT_TRUE(seen) << events;
  }
};

// A handler's answer too large for the server's request cap (new contents for a shipped
// pointee) is not dropped: native code gets the callback's failure at once (its memory
// untouched), the call returns long before its deadline, and the session says why.
TEST_P(OversizedCallbackAnswerTest, AnAnswerTooLargeToSendFailsTheCallbackInsteadOfHangingTheCall) {
  if (GetParam() == 60000) {
    RunOversizedAnswer<60000>();
  } else {
    RunOversizedAnswer<20000>();
  }
}

INSTANTIATE_TEST_SUITE_P(PointeeBytes, OversizedCallbackAnswerTest,
                         ::testing::Values(size_t{60000}, size_t{20000}));

INSTANTIATE_TEST_SUITE_P(Paths, CallbacksTest, ::testing::Bool(), PathName);
INSTANTIATE_TEST_SUITE_P(Paths, CallbackLimitsTest, ::testing::Bool(), PathName);
INSTANTIATE_TEST_SUITE_P(Paths, ForgedInvocationsTest, ::testing::Bool(), PathName);

}  // namespace
}  // namespace ffibox

// The answer to a request its client waits for, read by ffiboxd's stream thread in place of
// the worker's reader thread (server/broker/worker_supervisor.h, WorkerSupervisor::ReadSide),
// against a real ffiboxd and real workers: the reader thread is not woken for it, and what
// the worker sends is checked and reported just the same.
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/cpp/ffibox_client.h"
#include "core/errors.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace {

using test_support::RunfilePath;
using test_support::TestLibPath;
using test_support::TestServer;
using test_support::ThreadSwitches;

using IntCallback = Callback<int(int)>;

constexpr int kCalls = 200;
// Rounds of kCalls calls: the quietest counts. A round on a machine busy elsewhere has the
// worker answer later than the stream thread's spin more often (the reader thread then takes
// the answer, as before), which says nothing about the path when the machine is free.
constexpr int kRounds = 5;

// A session of a fresh ffiboxd (no pool: its one worker is the session's).
struct Fixture {
  std::unique_ptr<TestServer> server;
  std::unique_ptr<Client> client;
  std::unique_ptr<Session> session;
};

absl::StatusOr<Fixture> Start(const std::vector<std::string>& more_flags = {},
                              bool same_host = false) {
  Fixture fixture;
  std::vector<std::string> flags = {"--pool_size=0"};
  flags.insert(flags.end(), more_flags.begin(), more_flags.end());
  FFIBOX_ASSIGN_OR_RETURN(fixture.server, TestServer::Start(flags));
  FFIBOX_ASSIGN_OR_RETURN(fixture.client, Client::Connect(fixture.server->address()));
  SessionOptions options;
  options.same_host = same_host;
  FFIBOX_ASSIGN_OR_RETURN(fixture.session, fixture.client->OpenSession(options));
  if (fixture.session->same_host() != same_host) {
    return absl::InternalError("the session's calls do not take the path asked for");
  }
  return fixture;
}

// A Fixture whose session has the test library loaded and add_int resolved and called once
// (its worker started, the first call's costs paid).
struct CallingFixture {
  Fixture base;
  std::optional<Library> lib;
  std::optional<Function<int(int, int)>> add;
};

absl::StatusOr<CallingFixture> StartCalling(const std::vector<std::string>& more_flags = {},
                                            bool same_host = false) {
  CallingFixture fixture;
  FFIBOX_ASSIGN_OR_RETURN(fixture.base, Start(more_flags, same_host));
  FFIBOX_ASSIGN_OR_RETURN(fixture.lib, fixture.base.session->Load(TestLibPath()));
  FFIBOX_ASSIGN_OR_RETURN(fixture.add, fixture.lib->Function<int(int, int)>("add_int"));
  FFIBOX_ASSIGN_OR_RETURN(int warm, (*fixture.add)(1, 2));
  if (warm != 3) return absl::InternalError(absl::StrCat("add_int(1, 2) gave ", warm));
  return fixture;
}

// The fewest times over kRounds rounds that ffiboxd `broker`'s reader thread woke while
// `round` ran; -1 when it has no reader thread. `round` returns false to stop (a failure).
long FewestReaderWakeups(pid_t broker, const std::function<bool()>& round) {
  long fewest = -1;
  for (int i = 0; i < kRounds; ++i) {
    const long before = ThreadSwitches(broker, "ffibox-reader");
    if (before < 0 || !round()) return -1;
    const long woke = ThreadSwitches(broker, "ffibox-reader") - before;
    if (fewest < 0 || woke < fewest) fewest = woke;
  }
  return fewest;
}

// Calls one after the other, each answer awaited: the broker's reader thread, woken for every
// answer before (a switch per call at least: 205 in 200 calls with reading in place switched
// off), is not woken for them. Misses are allowed, up to three calls in four (a worker that
// took longer than the stream thread's spin to answer, and the requests the backoff then
// skips): 5 to 64 in 200 calls in these tests' runs on a quiet machine, 104 in the quietest of
// three rounds beside the rest of the suite.
TEST(AnswerInPlace, CallsTheClientWaitsForDoNotWakeTheBrokersReaderThread) {
  ASSERT_OK_AND_ASSIGN(CallingFixture calling, StartCalling());
  Fixture& fixture = calling.base;
  const Library& lib = *calling.lib;
  const Function<int(int, int)>& add = *calling.add;
  const pid_t broker = fixture.server->pid();
  // Up to three times kRounds rounds, until one shows it: on a machine busy with other work
  // every call of five rounds can miss the stream thread's spin (199 wakeups in 200 calls
  // in one run beside two builds).
  long calls = -1;
  for (int series = 0; series < 3 && (calls < 0 || calls >= kCalls * 3 / 4); ++series) {
    calls = FewestReaderWakeups(broker, [&] {
      for (int i = 0; i < kCalls; ++i) {
        absl::StatusOr<int> sum = add(i, 1);
        EXPECT_OK(sum);
        if (!sum.ok() || *sum != i + 1) return false;
      }
      return true;
    });
    ASSERT_GE(calls, 0) << "no ffibox-reader thread in ffiboxd " << broker << ", or a call failed";
  }
  EXPECT_LT(calls, kCalls * 3 / 4)
      << "the reader thread woke " << calls << " times in " << kCalls << " calls (the quietest of "
      << kRounds << " rounds, in the last of up to 3 series)";

  // A callback round trip: the invoke and, after the client's answer, the call's result.
  ASSERT_OK_AND_ASSIGN(IntCallback twice, fixture.session->DefineCallback<int(int)>(
                                              [](int x) -> absl::StatusOr<int> { return 2 * x; }));
  ASSERT_OK_AND_ASSIGN(auto register_handler, lib.Function<void(IntCallback)>("register_handler"));
  ASSERT_OK_AND_ASSIGN(auto fire_handler, lib.Function<int(int)>("fire_handler"));
  ASSERT_OK(register_handler(twice));
  const long callbacks = FewestReaderWakeups(broker, [&] {
    for (int i = 0; i < kCalls; ++i) {
      absl::StatusOr<int> doubled = fire_handler(i);
      EXPECT_OK(doubled);
      if (!doubled.ok() || *doubled != 2 * i) return false;
    }
    return true;
  });
  ASSERT_GE(callbacks, 0) << "a callback round trip failed";
  // A round trip is two requests, and with the worker spinning for the client's answers
  // (TheWorkerSpinsForTheNextCall... below) the client's next call often arrives before the
  // stream thread asks for it, which reads as a client that sends ahead (kQueuedReadTime):
  // 109 to 131 wakeups in 200 round trips here, against 425 with reading in place off.
  EXPECT_LT(callbacks, kCalls * 3 / 2)
      << "the reader thread woke " << callbacks << " times in " << kCalls
      << " callback round trips (the quietest of " << kRounds << " rounds)";
}

// Whether a waiting reader of a channel spins at all (never on a single CPU,
// core/shm_channel.cc).
bool ReadersSpin() { return sysconf(_SC_NPROCESSORS_ONLN) > 1; }

// How often the main thread of `worker` went to sleep over kCalls calls of `add`, one after
// the other, this thread busy for `gap` between them (as a client that works between its
// calls); -1 when a call failed or the worker has gone.
long WorkerSleepsOverCalls(pid_t worker, const Function<int(int, int)>& add,
                           absl::Duration gap = absl::ZeroDuration()) {
  const long before = ThreadSwitches(worker, "ffibox-worker");
  for (int i = 0; i < kCalls; ++i) {
    absl::StatusOr<int> sum = add(i, 1);
    if (!sum.ok() || *sum != i + 1) return -1;
    for (const absl::Time until = absl::Now() + gap; absl::Now() < until;) {
    }
  }
  const long after = ThreadSwitches(worker, "ffibox-worker");
  return before < 0 || after < 0 ? -1 : after - before;
}

// The fewest of kRounds rounds of WorkerSleepsOverCalls (`most` false), or the most; -1 as
// it. A round on a machine busy elsewhere moves the count either way: the worker's spin
// misses more often (more sleeps), or the worker is preempted where it would have slept and
// finds the next request when it runs again (fewer). So "at most" is asserted on the fewest,
// "at least" on the most.
long WorkerSleepsOverRounds(pid_t worker, const Function<int(int, int)>& add, bool most,
                            absl::Duration gap = absl::ZeroDuration()) {
  long kept = -1;
  for (int i = 0; i < kRounds; ++i) {
    const long slept = WorkerSleepsOverCalls(worker, add, gap);
    if (slept < 0) return -1;
    if (kept < 0 || (most ? slept > kept : slept < kept)) kept = slept;
  }
  return kept;
}

// The one worker of ffiboxd `server`, or -1.
pid_t OnlyWorker(pid_t server) {
  const std::vector<pid_t> workers = test_support::WorkersOf(server);
  return workers.size() == 1 ? workers[0] : -1;
}

// While no other worker of ffiboxd runs a request, the broker marks each request next_follows
// and the worker spins for the next one (kFollowingSpin, server/worker/broker_connection.h)
// instead of sleeping: calls one after the other do not put the worker's main thread to sleep
// between them (at least once per call with the mark never set; and on a single CPU, where
// nothing spins). While another session's worker is in a call, requests go unmarked (a spin
// must not take a CPU that call could use): the worker sleeps between calls again.
TEST(AnswerInPlace, TheWorkerSpinsForTheNextCallOnlyWhileNoOtherWorkerIsBusy) {
  ASSERT_OK_AND_ASSIGN(CallingFixture calling, StartCalling());
  Fixture& fixture = calling.base;
  const Function<int(int, int)>& add = *calling.add;
  const pid_t worker = OnlyWorker(fixture.server->pid());
  ASSERT_GT(worker, 0) << "ffiboxd " << fixture.server->pid() << " has not exactly one worker";
  // On a single CPU nothing spins: the worker sleeps before each call.
  const bool spins = ReadersSpin();
  const long slept_alone = WorkerSleepsOverRounds(worker, add, /*most=*/!spins);
  ASSERT_GE(slept_alone, 0) << "a call failed, or worker " << worker << " has gone";
  if (spins) {
    EXPECT_LT(slept_alone, kCalls / 2)
        << "the worker slept " << slept_alone << " times in " << kCalls << " calls (the fewest of "
        << kRounds << " rounds)";
  } else {
    EXPECT_GE(slept_alone, kCalls / 2) << "the worker spun on a single CPU";
  }

  // Another session's worker sleeps in a call of 2 s meanwhile.
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> other, fixture.client->OpenSession());
  ASSERT_OK_AND_ASSIGN(Library other_lib, other->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto sleep_ms, other_lib.Function<int(int)>("sleep_ms"));
  std::thread busy([&sleep_ms] { EXPECT_EQ(sleep_ms(2000).value_or(-1), 2000); });
  absl::SleepFor(absl::Milliseconds(100));  // the other call under way
  const long slept = WorkerSleepsOverRounds(worker, add, /*most=*/true);
  busy.join();
  ASSERT_GE(slept, 0) << "a call failed, or worker " << worker << " has gone";
  EXPECT_GE(slept, kCalls / 2) << "the worker slept only " << slept << " times in " << kCalls
                               << " calls while another worker was busy (the most of " << kRounds
                               << " rounds)";
}

// A client that works 300 µs between its calls (a Python client over gRPC sends its next call
// 250 to 400 µs after an answer) is paced past the first spin (kFollowingSpin, 200 µs); the
// worker's spin grows to the pauses it sees (up to kLongestFollowingSpin, 1 ms), so it no
// longer sleeps before each call (it did before every one, each sleep costing that call the
// wakeups of the worker, the broker and the client: 400 µs a Python call against 150 µs).
TEST(AnswerInPlace, TheWorkerSpinsForAClientThatWorksBetweenItsCalls) {
  ASSERT_OK_AND_ASSIGN(CallingFixture calling, StartCalling());
  const pid_t worker = OnlyWorker(calling.base.server->pid());
  ASSERT_GT(worker, 0) << "ffiboxd " << calling.base.server->pid() << " has not exactly one worker";
  const bool spins = ReadersSpin();
  const long slept =
      WorkerSleepsOverRounds(worker, *calling.add, /*most=*/!spins, absl::Microseconds(300));
  ASSERT_GE(slept, 0) << "a call failed, or worker " << worker << " has gone";
  if (spins) {
    EXPECT_LT(slept, kCalls / 2) << "the worker slept " << slept << " times in " << kCalls
                                 << " calls 300 µs apart (the fewest of " << kRounds << " rounds)";
  } else {
    EXPECT_GE(slept, kCalls / 2) << "the worker spun on a single CPU";
  }
}

// The spin is CPU time charged to the worker's budget (session_cpu_seconds, RLIMIT_CPU): once
// the worker has used a quarter of it (kFollowingSpinBudgetShare), it sleeps between calls
// again, so the spin never takes more than that share from the calls themselves.
TEST(AnswerInPlace, TheWorkerStopsSpinningOnceItUsedAQuarterOfItsCpuBudget) {
  ASSERT_OK_AND_ASSIGN(CallingFixture calling, StartCalling({"--session_cpu_seconds=8"}));
  Fixture& fixture = calling.base;
  const Function<int(int, int)>& add = *calling.add;
  ASSERT_OK_AND_ASSIGN(auto spin_cpu_seconds, calling.lib->Function<int(int)>("spin_cpu_seconds"));
  const pid_t worker = OnlyWorker(fixture.server->pid());
  ASSERT_GT(worker, 0) << "ffiboxd " << fixture.server->pid() << " has not exactly one worker";
  if (ReadersSpin()) {
    const long fewest = WorkerSleepsOverRounds(worker, add, /*most=*/false);
    ASSERT_GE(fewest, 0) << "a call failed, or worker " << worker << " has gone";
    EXPECT_LT(fewest, kCalls / 2) << "the worker slept " << fewest << " times in " << kCalls
                                  << " calls with its budget unspent";
  }
  // A quarter of 8 s.
  ASSERT_OK_AND_ASSIGN(int spun, spin_cpu_seconds(2));
  ASSERT_EQ(spun, 2);
  const long slept = WorkerSleepsOverRounds(worker, add, /*most=*/true);
  ASSERT_GE(slept, 0) << "a call failed, or worker " << worker << " has gone";
  EXPECT_GE(slept, kCalls / 2) << "the worker slept only " << slept << " times in " << kCalls
                               << " calls after using a quarter of its CPU budget (the most of "
                               << kRounds << " rounds)";
}

// A same-host channel's worker spins longer for its client's next call (kLocalLongestSpin,
// core/local_channel.h) than a spin grows by default, so a client that works a while between
// its calls (100 µs here) does not find it asleep each time; once the worker has used a
// quarter of its CPU budget, it spins no longer than by default, and sleeps between them.
TEST(AnswerInPlace, TheSameHostWorkerStopsSpinningLongOnceItUsedAQuarterOfItsCpuBudget) {
  ASSERT_OK_AND_ASSIGN(CallingFixture calling,
                       StartCalling({"--session_cpu_seconds=8"}, /*same_host=*/true));
  Fixture& fixture = calling.base;
  const Function<int(int, int)>& add = *calling.add;
  ASSERT_OK_AND_ASSIGN(auto spin_cpu_seconds, calling.lib->Function<int(int)>("spin_cpu_seconds"));
  const pid_t worker = OnlyWorker(fixture.server->pid());
  ASSERT_GT(worker, 0) << "ffiboxd " << fixture.server->pid() << " has not exactly one worker";
  constexpr absl::Duration kGap = absl::Microseconds(100);
  if (ReadersSpin()) {
    // Up to three times kRounds rounds, until one shows it: this thread's gaps stretched by
    // other work on the machine (tests run two at a time) outlast any spin.
    long fewest = -1;
    for (int i = 0; i < 3 && (fewest < 0 || fewest >= kCalls / 2); ++i) {
      fewest = WorkerSleepsOverRounds(worker, add, /*most=*/false, kGap);
      ASSERT_GE(fewest, 0) << "a call failed, or worker " << worker << " has gone";
    }
    EXPECT_LT(fewest, kCalls / 2) << "the worker slept " << fewest << " times in " << kCalls
                                  << " calls 100 µs apart with its budget unspent";
  }
  // A quarter of 8 s.
  ASSERT_OK_AND_ASSIGN(int spun, spin_cpu_seconds(2));
  ASSERT_EQ(spun, 2);
  const long slept = WorkerSleepsOverRounds(worker, add, /*most=*/true, kGap);
  ASSERT_GE(slept, 0) << "a call failed, or worker " << worker << " has gone";
  EXPECT_GE(slept, kCalls / 2) << "the worker slept only " << slept << " times in " << kCalls
                               << " calls 100 µs apart after using a quarter of its CPU budget "
                                  "(the most of "
                               << kRounds << " rounds)";
}

// A call that outlasts the spin is answered by the reader thread, as before: nothing is lost.
// Quick calls after such calls are read in place again once the session's backoff is over.
TEST(AnswerInPlace, ACallLongerThanTheSpinIsAnsweredByTheReaderThread) {
  ASSERT_OK_AND_ASSIGN(Fixture fixture, Start());
  ASSERT_OK_AND_ASSIGN(Library lib, fixture.session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto sleep_ms, lib.Function<int(int)>("sleep_ms"));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  const pid_t broker = fixture.server->pid();
  const long before = ThreadSwitches(broker, "ffibox-reader");
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(int slept, sleep_ms(20));
    EXPECT_EQ(slept, 20);
  }
  // A sleep is counted when it starts: the reader thread goes back to sleep after it wrote
  // the last answer, maybe after this thread read it.
  absl::SleepFor(absl::Milliseconds(50));
  const long after = ThreadSwitches(broker, "ffibox-reader");
  EXPECT_GE(after - before, 5) << "the reader thread did not take the long calls' answers";
  // The backoff after five misses skips fewer than 64 requests.
  for (int i = 0; i < 64; ++i) {
    ASSERT_OK_AND_ASSIGN(int sum, add(i, 1));
    ASSERT_EQ(sum, i + 1);
  }
  // Up to three times kRounds rounds, until one shows it: beside the rest of the suite, a
  // round's calls can all miss the stream thread's spin, and each miss lengthens the backoff.
  long calls = -1;
  for (int i = 0; i < 3 && (calls < 0 || calls >= kCalls * 3 / 4); ++i) {
    calls = FewestReaderWakeups(broker, [&] {
      for (int call = 0; call < kCalls; ++call) {
        absl::StatusOr<int> sum = add(20, 22);
        if (!sum.ok() || *sum != 42) return false;
      }
      return true;
    });
    ASSERT_GE(calls, 0) << "a call failed";
  }
  EXPECT_LT(calls, kCalls * 3 / 4)
      << "after the long calls, the reader thread woke " << calls << " times in " << kCalls
      << " quick calls (the quietest of " << kRounds << " rounds, in the last of up to 3 series)";
}

// A library forges a reply behind its worker's back (tests/testlibs/hostile.c) while its call
// runs, and the stream thread reads it in place: the reply answers no request the worker
// runs, so the worker is ended for breaking the protocol, as the reader thread would have
// ended it, and the session's next call runs on a new worker.
TEST(AnswerInPlace, AForgedReplyReadInPlaceEndsItsWorker) {
  ASSERT_OK_AND_ASSIGN(Fixture fixture, Start());
  char real[PATH_MAX];
  const std::string path = RunfilePath("tests/testlibs/libffibox_hostile.so");
  ASSERT_NE(realpath(path.c_str(), real), nullptr) << path;
  ASSERT_OK_AND_ASSIGN(Library hostile, fixture.session->Load(real));
  ASSERT_OK_AND_ASSIGN(auto forge,
                       (hostile.Function<long(const char*, long, const char*, long, long)>(
                           "hostile_whole_frame_taken")));
  // The first call finds the channel, so the forging call writes its reply within
  // microseconds, while the stream thread spins for the answer. The calls that only look are
  // quick: the session's backoff after the slow ones (the load, the first look) is over by
  // the last of them.
  for (int i = 0; i < 16; ++i) {
    ASSERT_OK_AND_ASSIGN(long looked, forge("", 0, "", 1, 0));
    ASSERT_EQ(looked, 0) << "the hostile library found no channel to the broker";
  }
  // WorkerReply{response: Response{id: 999999, done: {}}}: no request of that number runs.
  const std::string response("\x08\xbf\x84\x3d\xb2\x01\x00", 7);
  const std::string reply = std::string("\x0a") + static_cast<char>(response.size()) + response;
  absl::StatusOr<long> forged = forge(reply.data(), static_cast<long>(reply.size()), "\x00", 1,
                                      static_cast<long>(reply.size()));
  ASSERT_FALSE(forged.ok()) << "the forged reply was taken: " << *forged;
  const v1::Error error = ErrorOf(forged.status());
  EXPECT_EQ(error.code(), v1::WORKER_CRASHED) << forged.status();
  EXPECT_NE(error.message().find("broke the channel protocol"), std::string::npos)
      << error.message();
  // For the forged reply itself, not for what followed it (the worker's own answer, written
  // over it, which no longer lines up with the frames).
  EXPECT_NE(error.message().find("reply for request 999999, which is not running"),
            std::string::npos)
      << error.message();
  ASSERT_OK_AND_ASSIGN(Library lib, fixture.session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int sum, add(2, 3));
  EXPECT_EQ(sum, 5);
  EXPECT_EQ(fixture.session->generation(), 2u);
}

// A worker stops itself (SIGSTOP) after its call, so it reads nothing more, and the next
// request is larger than the ring to the worker (256 KiB): its send waits for room that never
// comes. The read side is not held across such a send (it is taken after it), so the reader
// thread ends the worker at the call's deadline, and the session goes on with a new worker.
TEST(AnswerInPlace, ARequestThatWaitsForRoomInTheRingStillMeetsItsDeadline) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TestServer> server, TestServer::Start({"--pool_size=0"}));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Connect(server->address()));
  SessionOptions options;
  options.call_timeout = absl::Seconds(1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Session> session, client->OpenSession(options));
  char real[PATH_MAX];
  const std::string path = RunfilePath("tests/testlibs/libffibox_hostile.so");
  ASSERT_NE(realpath(path.c_str(), real), nullptr) << path;
  ASSERT_OK_AND_ASSIGN(Library hostile, session->Load(real));
  ASSERT_OK_AND_ASSIGN(Library lib, session->Load(TestLibPath()));
  ASSERT_OK_AND_ASSIGN(auto stop, hostile.Function<int(int)>("hostile_stop_self_after"));
  ASSERT_OK_AND_ASSIGN(auto sum_bytes, (lib.Function<size_t(const Buffer&, size_t)>("sum_bytes")));
  ASSERT_OK_AND_ASSIGN(int started, stop(50));
  ASSERT_EQ(started, 0);
  absl::SleepFor(absl::Milliseconds(300));  // the worker is stopped by now

  const Buffer large = Buffer::In(std::string(1 << 20, '\1'));
  const absl::Time sent = absl::Now();
  absl::StatusOr<size_t> sum = sum_bytes(large, large.data.size());
  ASSERT_FALSE(sum.ok()) << "a stopped worker answered";
  EXPECT_EQ(ErrorCodeOf(sum.status()), v1::CALL_TIMEOUT) << sum.status();
  EXPECT_LT(absl::Now() - sent, absl::Seconds(10)) << "the deadline was not enforced in time";
  ASSERT_OK_AND_ASSIGN(auto add, lib.Function<int(int, int)>("add_int"));
  ASSERT_OK_AND_ASSIGN(int three, add(1, 2));
  EXPECT_EQ(three, 3);
}

}  // namespace
}  // namespace ffibox

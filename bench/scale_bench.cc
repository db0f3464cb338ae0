// Many sessions at once on one ffiboxd: BM_FfiboxConcurrentSessions/N opens N sessions (one
// client connection, as one process with N threads would), each loads the test library and
// resolves add_int, and gives each session a thread of its own. One iteration is a round:
// every thread makes kCallsPerRound calls of add_int on its session at the same time, and
// the round ends when all have answered. items/s is calls per second over all sessions. A
// call that fails or returns a wrong value is counted; any such error fails the benchmark
// (SkipWithError with the count and the first error), never only a counter.
//
// Memory per idle session, as counters: the resident memory of ffiboxd (VmRSS) and the
// proportional set size of its descendants (workers and their jails' init processes; Pss
// splits shared pages such as libc's among the processes mapping them, so the sum is what
// they take together) before the sessions are opened and after all N are open, set up and
// idle, divided by N.
//
// Each N gets its own ffiboxd, with --max_sessions_per_identity=256 (the default quota, 64
// sessions per identity, would refuse the 200-session run); the defaults are kept otherwise
// (max_sessions 256, pool of 2).
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_fixtures.h"
#include "benchmark/benchmark.h"
#include "client/cpp/ffibox_client.h"
#include "core/status_macros.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace bench {
namespace {

constexpr int kCallsPerRound = 10;
constexpr char kSessionQuotaFlag[] = "--max_sessions_per_identity=256";
// How long the server gets to settle (pool refilled, freed memory returned) before memory
// is read.
constexpr absl::Duration kSettle = absl::Milliseconds(300);

// The broker's resident bytes and its descendants' proportional share.
struct ServerMemory {
  int64_t broker_rss = 0;
  int64_t descendants_pss = 0;
};

absl::StatusOr<ServerMemory> ReadServerMemory(pid_t broker) {
  ServerMemory memory;
  FFIBOX_ASSIGN_OR_RETURN(memory.broker_rss, ProcessMemoryBytes(broker, "status", "VmRSS"));
  for (pid_t descendant : test_support::DescendantsOf(broker)) {
    absl::StatusOr<int64_t> bytes = ProcessMemoryBytes(descendant, "smaps_rollup", "Pss");
    if (bytes.ok()) memory.descendants_pss += *bytes;  // a process may exit meanwhile
  }
  return memory;
}

// N sessions on their own ffiboxd, each driven by its own thread in rounds of calls.
class SessionCrowd {
 public:
  // Starts the server, opens `sessions` sessions from as many threads and waits until each
  // is ready (or reports why the first one that failed did).
  static absl::StatusOr<std::unique_ptr<SessionCrowd>> Open(int64_t sessions);

  SessionCrowd(const SessionCrowd&) = delete;
  SessionCrowd& operator=(const SessionCrowd&) = delete;
  // Stops the threads (each closes its session), then the server.
  ~SessionCrowd();

  // Every session makes `calls` calls at once; returns when all are answered. The number
  // of calls that failed or returned a wrong value, and the first such failure.
  struct RoundResult {
    int64_t errors = 0;
    absl::Status first_error;
  };
  RoundResult RunRound(int calls);

  // Memory before the sessions were opened and once all were idle.
  const ServerMemory& before() const { return before_; }
  const ServerMemory& idle() const { return idle_; }
  int64_t size() const { return static_cast<int64_t>(threads_.size()); }

 private:
  SessionCrowd() = default;

  // Body of session `index`'s thread: sets the session up, then runs the rounds it is
  // given until the crowd stops.
  void RunSession(int index);
  absl::StatusOr<std::unique_ptr<Session>> SetUpSession(
      std::optional<Function<int(int, int)>>& add);

  std::unique_ptr<FfiboxServer> ffiboxd_;
  std::vector<std::thread> threads_;
  ServerMemory before_;
  ServerMemory idle_;

  absl::Mutex mu_;
  absl::CondVar changed_;                          // signalled whenever a field below changes
  int64_t ready_ ABSL_GUARDED_BY(mu_) = 0;         // sessions set up (or failed to)
  absl::Status setup_error_ ABSL_GUARDED_BY(mu_);  // the first failure to set one up
  int64_t round_ ABSL_GUARDED_BY(mu_) = 0;         // the latest round started
  int calls_per_round_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t running_ ABSL_GUARDED_BY(mu_) = 0;  // sessions still in the current round
  RoundResult round_result_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

absl::StatusOr<std::unique_ptr<SessionCrowd>> SessionCrowd::Open(int64_t sessions) {
  std::unique_ptr<SessionCrowd> crowd(new SessionCrowd());
  FFIBOX_ASSIGN_OR_RETURN(crowd->ffiboxd_,
                          StartFfiboxServer({"--pool_size=2", kSessionQuotaFlag}, kSettle));
  const pid_t broker = crowd->ffiboxd_->server->pid();
  FFIBOX_ASSIGN_OR_RETURN(crowd->before_, ReadServerMemory(broker));
  for (int i = 0; i < sessions; ++i) {
    crowd->threads_.emplace_back([crowd = crowd.get(), i] { crowd->RunSession(i); });
  }
  {
    absl::MutexLock lock(&crowd->mu_);
    while (crowd->ready_ < sessions) crowd->changed_.Wait(&crowd->mu_);
    if (!crowd->setup_error_.ok()) return crowd->setup_error_;
  }
  absl::SleepFor(kSettle);
  FFIBOX_ASSIGN_OR_RETURN(crowd->idle_, ReadServerMemory(broker));
  return crowd;
}

SessionCrowd::~SessionCrowd() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    changed_.SignalAll();
  }
  for (std::thread& thread : threads_) thread.join();
}

absl::StatusOr<std::unique_ptr<Session>> SessionCrowd::SetUpSession(
    std::optional<Function<int(int, int)>>& add) {
  FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<Session> session, ffiboxd_->client->OpenSession());
  FFIBOX_ASSIGN_OR_RETURN(Library testlib, LoadTestLibrary(*session));
  FFIBOX_ASSIGN_OR_RETURN(Function<int(int, int)> resolved,
                          testlib.Function<int(int, int)>("add_int"));
  FFIBOX_ASSIGN_OR_RETURN(int sum, resolved(1, 2));
  if (sum != 3) return absl::InternalError(absl::StrCat("add_int(1, 2) returned ", sum));
  add.emplace(std::move(resolved));
  return session;
}

void SessionCrowd::RunSession(int index) {
  std::optional<Function<int(int, int)>> add;
  absl::StatusOr<std::unique_ptr<Session>> session = SetUpSession(add);
  {
    absl::MutexLock lock(&mu_);
    if (!session.ok() && setup_error_.ok()) {
      setup_error_ =
          absl::Status(session.status().code(),
                       absl::StrCat("session ", index, ": ", session.status().message()));
    }
    ++ready_;
    changed_.SignalAll();
  }
  int64_t rounds_done = 0;
  while (true) {
    int calls = 0;
    {
      absl::MutexLock lock(&mu_);
      while (!stopping_ && round_ == rounds_done) changed_.Wait(&mu_);
      if (stopping_) break;
      rounds_done = round_;
      calls = calls_per_round_;
    }
    RoundResult mine;
    for (int i = 0; i < calls; ++i) {
      absl::StatusOr<int> sum =
          session.ok() ? (*add)(index, i) : absl::StatusOr<int>(session.status());
      if (sum.ok() && *sum == index + i) continue;
      if (mine.errors++ == 0) {
        mine.first_error =
            sum.ok()
                ? absl::InternalError(absl::StrCat("add_int(", index, ", ", i, ") returned ", *sum))
                : sum.status();
      }
    }
    absl::MutexLock lock(&mu_);
    round_result_.errors += mine.errors;
    if (round_result_.first_error.ok()) round_result_.first_error = mine.first_error;
    --running_;
    changed_.SignalAll();
  }
}

SessionCrowd::RoundResult SessionCrowd::RunRound(int calls) {
  absl::MutexLock lock(&mu_);
  ++round_;
  calls_per_round_ = calls;
  running_ = size();
  round_result_ = RoundResult();
  changed_.SignalAll();
  while (running_ > 0) changed_.Wait(&mu_);
  return round_result_;
}

// The crowd of the current N (a new N drops the previous crowd and its server).
FixtureSlot<SessionCrowd> session_crowd(SessionCrowd::Open);

void BM_FfiboxConcurrentSessions(benchmark::State& state) {
  SessionCrowd* opened = session_crowd.GetOrSkip(
      state, absl::StrCat("opening ", state.range(0), " sessions"), state.range(0));
  if (opened == nullptr) return;
  SessionCrowd& crowd = *opened;
  int64_t errors = 0;
  absl::Status first_error;
  for (auto _ : state) {
    SessionCrowd::RoundResult round = crowd.RunRound(kCallsPerRound);
    if (round.errors > 0 && first_error.ok()) first_error = round.first_error;
    errors += round.errors;
  }
  const int64_t calls = static_cast<int64_t>(state.iterations()) * kCallsPerRound * crowd.size();
  state.SetItemsProcessed(calls);
  state.counters["sessions"] = static_cast<double>(crowd.size());
  state.counters["errors"] = static_cast<double>(errors);
  const double sessions = static_cast<double>(crowd.size());
  state.counters["broker_rss_per_idle_session"] = benchmark::Counter(
      static_cast<double>(crowd.idle().broker_rss - crowd.before().broker_rss) / sessions,
      benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  state.counters["workers_pss_per_idle_session"] = benchmark::Counter(
      static_cast<double>(crowd.idle().descendants_pss - crowd.before().descendants_pss) / sessions,
      benchmark::Counter::kDefaults, benchmark::Counter::kIs1024);
  if (errors > 0) {
    state.SkipWithError(
        absl::StrCat(errors, " of ", calls, " calls failed; the first: ", first_error.ToString())
            .c_str());
  }
}
BENCHMARK(BM_FfiboxConcurrentSessions)
    ->Arg(1)
    ->Arg(10)
    ->Arg(50)
    ->Arg(200)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bench
}  // namespace ffibox

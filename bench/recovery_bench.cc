// Recovery from a crash: BM_CrashToNextCall is, on one session, a call of
// `crash_null_deref()` (tests/testlibs: a NULL store, SIGSEGV in the worker) that must fail
// with WORKER_CRASHED, then `add_int(1, 2)`, which must return 3: the time from sending the
// crashing call to the next call's result. In between the broker reaps the dead worker,
// reports the crash, and on the next request (restart policy RESTART, the default) takes a
// worker from the pool (or starts one when the pool is empty), replays the session's load
// and resolves on it, and runs the call. The counters split the iteration: `crash_ms` until
// the crash's error arrives, `next_call_ms` from there to the next result (restart
// included). Own ffiboxd with the default pool (2). Crashes come 50 ms apart at most (not
// timed), so the pool refills between them as it would between a library's crashes in use;
// back to back, every restart after the second would start a worker of its own.
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/bench_fixtures.h"
#include "benchmark/benchmark.h"
#include "client/cpp/ffibox_client.h"
#include "core/status_macros.h"

namespace ffibox {
namespace bench {
namespace {

// A session with the test library's crashing function and add_int resolved.
struct CrashFixture {
  std::unique_ptr<FfiboxServer> ffiboxd;
  std::unique_ptr<Session> session;
  std::optional<Function<int()>> crash;
  std::optional<Function<int(int, int)>> add;
};

absl::StatusOr<std::unique_ptr<CrashFixture>> StartCrashFixture(int64_t /*key*/) {
  auto fixture = std::make_unique<CrashFixture>();
  FFIBOX_ASSIGN_OR_RETURN(fixture->ffiboxd, StartFfiboxServer({"--pool_size=2"}));
  FFIBOX_ASSIGN_OR_RETURN(fixture->session,
                          fixture->ffiboxd->client->OpenSession(QuietSessionOptions()));
  FFIBOX_ASSIGN_OR_RETURN(Library testlib, LoadTestLibrary(*fixture->session));
  FFIBOX_ASSIGN_OR_RETURN(Function<int()> crash, testlib.Function<int()>("crash_null_deref"));
  FFIBOX_ASSIGN_OR_RETURN(Function<int(int, int)> add, testlib.Function<int(int, int)>("add_int"));
  fixture->crash.emplace(std::move(crash));
  fixture->add.emplace(std::move(add));
  return fixture;
}

FixtureSlot<CrashFixture> crash_fixture(StartCrashFixture);

void BM_CrashToNextCall(benchmark::State& state) {
  CrashFixture* fixture = crash_fixture.GetOrSkip(state, "ffiboxd");
  if (fixture == nullptr) return;
  CrashFixture& crashing = *fixture;
  absl::Duration until_crash_error;
  absl::Duration until_next_result;
  for (auto _ : state) {
    const absl::Time start = absl::Now();
    absl::StatusOr<int> crashed = (*crashing.crash)();
    const absl::Time crash_reported = absl::Now();
    if (crashed.ok() || ErrorOf(crashed.status()).code() != v1::WORKER_CRASHED) {
      state.SkipWithError(absl::StrCat("crash_null_deref() returned ",
                                       crashed.ok() ? "a value" : crashed.status().ToString(),
                                       " instead of WORKER_CRASHED")
                              .c_str());
      break;
    }
    absl::StatusOr<int> sum = (*crashing.add)(1, 2);
    until_next_result += absl::Now() - crash_reported;
    until_crash_error += crash_reported - start;
    if (!sum.ok() || *sum != 3) {
      state.SkipWithError(
          absl::StrCat("the call after the crash: ",
                       sum.ok() ? absl::StrCat("returned ", *sum) : sum.status().ToString())
              .c_str());
      break;
    }
    state.PauseTiming();
    absl::SleepFor(absl::Milliseconds(50));
    state.ResumeTiming();
  }
  const double iterations = static_cast<double>(state.iterations());
  if (iterations > 0) {
    state.counters["crash_ms"] = absl::ToDoubleMilliseconds(until_crash_error) / iterations;
    state.counters["next_call_ms"] = absl::ToDoubleMilliseconds(until_next_result) / iterations;
  }
}
BENCHMARK(BM_CrashToNextCall)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bench
}  // namespace ffibox

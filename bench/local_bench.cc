// The same-host path: BM_FfiboxLocalCallAdd is BM_FfiboxCallAdd (add_int(i, 1) through the
// typed C++ client, one call per round trip, every sum checked) on a session opened with
// SessionOptions::same_host, so each call goes client -> worker -> client over the session's
// shared-memory channel (core/shm_channel.h) and neither gRPC nor the broker is on its path.
// Its floor is BM_BareShmRoundTrip (bench/shm_bench.cc): the same channel between two plain
// processes, in the same run. BM_FfiboxLocalCallbackRoundTrip is BM_FfiboxCallbackRoundTrip
// on that session: fire_handler(x) invokes the client's callback on the channel, so each
// iteration is two round trips through it (compared with BM_FfiboxLocalCallAdd).
#include <memory>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bench/bench_fixtures.h"
#include "benchmark/benchmark.h"
#include "client/cpp/ffibox_client.h"
#include "core/status_macros.h"

namespace ffibox {
namespace bench {
namespace {

struct LocalFixture {
  std::unique_ptr<FfiboxServer> ffiboxd;
  std::unique_ptr<Session> session;
  std::optional<Function<int(int, int)>> add;
  FiringHandler firing;
};

absl::StatusOr<std::unique_ptr<LocalFixture>> StartLocalFixture(int64_t /*key*/) {
  auto fixture = std::make_unique<LocalFixture>();
  FFIBOX_ASSIGN_OR_RETURN(fixture->ffiboxd, StartFfiboxServer({"--pool_size=2"}));
  SessionOptions options = QuietSessionOptions();
  options.same_host = true;
  FFIBOX_ASSIGN_OR_RETURN(fixture->session, fixture->ffiboxd->client->OpenSession(options));
  FFIBOX_ASSIGN_OR_RETURN(Library testlib, LoadTestLibrary(*fixture->session));
  FFIBOX_ASSIGN_OR_RETURN(auto add, testlib.Function<int(int, int)>("add_int"));
  fixture->add.emplace(std::move(add));
  FFIBOX_ASSIGN_OR_RETURN(fixture->firing, PrepareFiringHandler(*fixture->session, testlib));
  return fixture;
}

FixtureSlot<LocalFixture> local_fixture(StartLocalFixture);

void BM_FfiboxLocalCallAdd(benchmark::State& state) {
  LocalFixture* fixture = local_fixture.GetOrSkip(state, "ffiboxd");
  if (fixture == nullptr) return;
  CallAddInALoop(state, *fixture->add);
}
BENCHMARK(BM_FfiboxLocalCallAdd)->UseRealTime();

void BM_FfiboxLocalCallbackRoundTrip(benchmark::State& state) {
  LocalFixture* fixture = local_fixture.GetOrSkip(state, "ffiboxd");
  if (fixture == nullptr) return;
  FireHandlerInALoop(state, *fixture->firing.fire);
}
BENCHMARK(BM_FfiboxLocalCallbackRoundTrip)->UseRealTime();

}  // namespace
}  // namespace bench
}  // namespace ffibox

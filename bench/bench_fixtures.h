// What the benchmark families of //bench:call_bench share: an ffiboxd of their own with a
// connected client, the test library, and fixtures kept across runs of one family.
//
// Google Benchmark calls a benchmark function several times (to size the iteration count,
// then once per repetition), so a family keeps its servers and sessions in a fixture made on
// first use. Only one family's fixture is alive at a time: with gRPC's synchronous API an
// open session is not idle, because its reader thread, blocked in a read, is one of the
// pollers of every connection in the process, so it wakes for the traffic of whatever runs
// next and slows it (an idle session's reader took a third of a CPU and BM_BareGrpcRoundTrip
// went from about 85 to about 300 µs). In-process gRPC servers poll the same way. So each
// family calls `HoldFixture` before it makes its fixture, which drops every other family's;
// call_bench's main calls `DropFixtures` after the last benchmark (sessions close before their
// servers stop, while gRPC is still up) instead of leaving it to static destructors.
#ifndef FFIBOX_BENCH_BENCH_FIXTURES_H_
#define FFIBOX_BENCH_BENCH_FIXTURES_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "client/cpp/ffibox_client.h"
#include "tests/support/test_server.h"

namespace ffibox {
namespace bench {

// Drops every fixture held by another `owner` (calls their `drop`), then holds this one's:
// call it right before making a family's fixture. `drop` must leave the owner able to make
// its fixture again on its next use.
void HoldFixture(const void* owner, std::function<void()> drop);
// Drops every held fixture; call_bench's main calls it after the run.
void DropFixtures();

// Holds one fixture of type T at a time: made by `make(key)` on first use, kept while the
// benchmarks ask for the same key (e.g. a benchmark argument), dropped and made again for
// another key or after another family held its fixture (HoldFixture), and dropped at the end
// of the run. A failure to make it is kept too (for that key) and returned again instead of
// retrying. Not thread-safe: used from the thread that runs the benchmarks.
template <typename T>
class FixtureSlot {
 public:
  using Factory = absl::StatusOr<std::unique_ptr<T>> (*)(int64_t key);

  explicit FixtureSlot(Factory make) : make_(make) {}

  // The fixture for `key`, or why it could not be made. The pointer is valid until the next
  // Get with another key or another family's HoldFixture.
  absl::StatusOr<T*> Get(int64_t key = 0) {
    if (!made_ || key != key_) {
      Drop();
      HoldFixture(this, [this] { Drop(); });
      made_ = true;
      key_ = key;
      absl::StatusOr<std::unique_ptr<T>> made = make_(key);
      if (made.ok()) {
        fixture_ = *std::move(made);
      } else {
        failure_ = made.status();
      }
    }
    if (!failure_.ok()) return failure_;
    return fixture_.get();
  }

  // The fixture for `key`, or nullptr after `state.SkipWithError("<what>: <why>")`.
  T* GetOrSkip(benchmark::State& state, absl::string_view what, int64_t key = 0) {
    absl::StatusOr<T*> fixture = Get(key);
    if (fixture.ok()) return *fixture;
    state.SkipWithError(absl::StrCat(what, ": ", fixture.status().ToString()).c_str());
    return nullptr;
  }

  // Drops the fixture (and a remembered failure).
  void Drop() {
    fixture_.reset();
    failure_ = absl::OkStatus();
    made_ = false;
  }

 private:
  Factory make_;
  bool made_ = false;
  int64_t key_ = 0;
  std::unique_ptr<T> fixture_;
  absl::Status failure_;
};

// A real ffiboxd (the one in call_bench's runfiles) and a client connected to it.
struct FfiboxServer {
  std::unique_ptr<test_support::TestServer> server;
  std::unique_ptr<Client> client;  // destroyed before the server
};

// Starts ffiboxd with `flags` (TestServer::Start's extra flags) and connects a client;
// `settle` is a pause afterwards so that its worker pool fills. The errors of
// TestServer::Start and Client::Connect.
absl::StatusOr<std::unique_ptr<FfiboxServer>> StartFfiboxServer(
    const std::vector<std::string>& flags, absl::Duration settle = absl::Milliseconds(200));

// Session options for benchmarks: what the library prints (crash reports) is dropped
// instead of going to the console.
SessionOptions QuietSessionOptions();

// Loads tests/testlibs/libffibox_test.so from the runfiles into `session` (by its real path,
// which TestServer allows); NOT_FOUND if it is missing, else Session::Load's errors.
absl::StatusOr<Library> LoadTestLibrary(Session& session);

// The body of the add_int benchmarks: add(i, 1) once per iteration, every sum checked (a
// wrong one or an error ends the benchmark with SkipWithError); items/s is calls/s.
void CallAddInALoop(benchmark::State& state, const Function<int(int, int)>& add);

// A client callback returning x + 1, registered as the test library's stored handler
// (register_handler of tests/testlibs/callbacks.c), and fire_handler, which calls it.
struct FiringHandler {
  std::optional<Callback<int(int)>> handler;
  std::optional<Function<int(int)>> fire;
};
absl::StatusOr<FiringHandler> PrepareFiringHandler(Session& session, Library& testlib);

// The body of the callback benchmarks: fire(x) once per iteration (a call that invokes the
// client's callback once), every result checked as PrepareFiringHandler's x + 1.
void FireHandlerInALoop(benchmark::State& state, const Function<int(int)>& fire);

// libc's memset(buffer, byte, size) with an INOUT buffer, resolved in `session`.
absl::StatusOr<Function<void*(Buffer&, int, size_t)>> ResolveMemset(Session& session);

// A memory figure of process `pid` in bytes: `field` (e.g. "VmRSS") of /proc/<pid>/`file`
// (e.g. "status", or "smaps_rollup" for "Pss"), a line `<field>: <n> kB`; NOT_FOUND if the
// process or the field is missing.
absl::StatusOr<int64_t> ProcessMemoryBytes(pid_t pid, absl::string_view file,
                                           absl::string_view field);

}  // namespace bench
}  // namespace ffibox

#endif  // FFIBOX_BENCH_BENCH_FIXTURES_H_

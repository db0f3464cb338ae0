// Bulk bytes through ffibox over gRPC: BM_FfiboxBulkInout/N is libc memset on an INOUT
// buffer of N bytes (4 MiB and 64 MiB), so N bytes travel client -> broker -> worker and
// back, each hop as protobuf. Bytes/s counts N once per call (as BM_FfiboxCallBuffer, whose
// sizes stop at 1 MiB, and BM_BareGrpcBulk, gRPC's own floor, do). Every byte that comes back
// is checked (not timed).
//
// 64 MiB is past ffiboxd's default request cap (limits.max_message_bytes, 16 MiB), so the
// family has its own ffiboxd with --max_message_bytes=134217728 (128 MiB; gRPC then accepts
// up to four times that); the blocks stay under the default max_block_bytes (256 MiB) and
// the worker's memory under the default session_memory_bytes (4 GiB).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_fixtures.h"
#include "benchmark/benchmark.h"
#include "client/cpp/ffibox_client.h"
#include "core/status_macros.h"

namespace ffibox {
namespace bench {
namespace {

constexpr char kBulkMessageCapFlag[] = "--max_message_bytes=134217728";

// A session with memset resolved, on an ffiboxd that accepts 64 MiB requests.
struct BulkFixture {
  std::unique_ptr<FfiboxServer> ffiboxd;
  std::unique_ptr<Session> session;
  std::optional<Function<void*(Buffer&, int, size_t)>> memset;
};

absl::StatusOr<std::unique_ptr<BulkFixture>> StartBulkFixture(int64_t /*key*/) {
  auto fixture = std::make_unique<BulkFixture>();
  FFIBOX_ASSIGN_OR_RETURN(fixture->ffiboxd,
                          StartFfiboxServer({"--pool_size=2", kBulkMessageCapFlag}));
  FFIBOX_ASSIGN_OR_RETURN(fixture->session, fixture->ffiboxd->client->OpenSession());
  FFIBOX_ASSIGN_OR_RETURN(auto memset, ResolveMemset(*fixture->session));
  fixture->memset.emplace(std::move(memset));
  return fixture;
}

FixtureSlot<BulkFixture> bulk_fixture(StartBulkFixture);

void BM_FfiboxBulkInout(benchmark::State& state) {
  BulkFixture* fixture = bulk_fixture.GetOrSkip(state, "ffiboxd");
  if (fixture == nullptr) return;
  const size_t size = static_cast<size_t>(state.range(0));
  Buffer buffer = Buffer::InOut(std::string(size, '\0'));
  int fill = 0;
  for (auto _ : state) {
    fill = fill % 255 + 1;
    absl::StatusOr<RemotePtr> result = (*fixture->memset)(buffer, fill, size);
    if (!result.ok()) {
      state.SkipWithError(result.status().ToString().c_str());
      break;
    }
    state.PauseTiming();
    const bool filled = buffer.data.size() == size &&
                        buffer.data.find_first_not_of(static_cast<char>(fill)) == std::string::npos;
    state.ResumeTiming();
    if (!filled) {
      state.SkipWithError("memset's bytes did not all come back");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_FfiboxBulkInout)
    ->Arg(4 << 20)
    ->Arg(64 << 20)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bench
}  // namespace ffibox

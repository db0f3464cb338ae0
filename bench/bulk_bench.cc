// Bulk bytes through ffibox: BM_FfiboxBulkInout/N is libc memset on an INOUT buffer of N
// bytes (4 MiB and 64 MiB) over gRPC, so N bytes travel client -> broker -> worker and back,
// each hop as protobuf; BM_FfiboxLocalBulkInout/N is the same on a same-host session, where
// the buffer travels in the channel's shared area (the client copies it in, memset works on
// it there, the client copies it out). Bytes/s counts N once per call (as
// BM_FfiboxCallBuffer, whose sizes stop at 1 MiB, and BM_BareGrpcBulk, gRPC's own floor, do).
// Every byte that comes back is checked (not timed).
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

using Memset = Function<void*(Buffer&, int, size_t)>;

// Sessions with memset resolved, on an ffiboxd that accepts 64 MiB requests: one over gRPC,
// one on the same-host channel.
struct BulkFixture {
  std::unique_ptr<FfiboxServer> ffiboxd;
  std::unique_ptr<Session> session;
  std::unique_ptr<Session> local_session;
  std::optional<Memset> memset;
  std::optional<Memset> local_memset;
};

absl::StatusOr<std::unique_ptr<BulkFixture>> StartBulkFixture(int64_t /*key*/) {
  auto fixture = std::make_unique<BulkFixture>();
  FFIBOX_ASSIGN_OR_RETURN(fixture->ffiboxd,
                          StartFfiboxServer({"--pool_size=2", kBulkMessageCapFlag}));
  FFIBOX_ASSIGN_OR_RETURN(fixture->session, fixture->ffiboxd->client->OpenSession());
  FFIBOX_ASSIGN_OR_RETURN(auto memset, ResolveMemset(*fixture->session));
  fixture->memset.emplace(std::move(memset));
  SessionOptions options = QuietSessionOptions();
  options.same_host = true;
  FFIBOX_ASSIGN_OR_RETURN(fixture->local_session, fixture->ffiboxd->client->OpenSession(options));
  FFIBOX_ASSIGN_OR_RETURN(auto local_memset, ResolveMemset(*fixture->local_session));
  fixture->local_memset.emplace(std::move(local_memset));
  return fixture;
}

FixtureSlot<BulkFixture> bulk_fixture(StartBulkFixture);

// memset on an INOUT buffer of state.range(0) bytes, each call with another fill byte.
void MemsetInALoop(benchmark::State& state, Memset& memset) {
  const size_t size = static_cast<size_t>(state.range(0));
  Buffer buffer = Buffer::InOut(std::string(size, '\0'));
  int fill = 0;
  for (auto _ : state) {
    fill = fill % 255 + 1;
    absl::StatusOr<RemotePtr> result = memset(buffer, fill, size);
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

void BM_FfiboxBulkInout(benchmark::State& state) {
  BulkFixture* fixture = bulk_fixture.GetOrSkip(state, "ffiboxd");
  if (fixture == nullptr) return;
  MemsetInALoop(state, *fixture->memset);
}
BENCHMARK(BM_FfiboxBulkInout)
    ->Arg(4 << 20)
    ->Arg(64 << 20)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_FfiboxLocalBulkInout(benchmark::State& state) {
  BulkFixture* fixture = bulk_fixture.GetOrSkip(state, "ffiboxd");
  if (fixture == nullptr) return;
  if (!fixture->local_session->same_host()) {
    state.SkipWithError("the session has no same-host channel");
    return;
  }
  MemsetInALoop(state, *fixture->local_memset);
  if (!fixture->local_session->same_host()) state.SkipWithError("the same-host channel was lost");
}
BENCHMARK(BM_FfiboxLocalBulkInout)
    ->Arg(4 << 20)
    ->Arg(64 << 20)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace bench
}  // namespace ffibox

// BM_BareShmRoundTrip: the floor of a broker <-> worker hop over a shared-memory channel
// (core/shm_channel.h), measured beside call_bench's BM_CrossProcessRoundTrip (the same echo
// over a socketpair). Registered into call_bench, whose main runs both in one run.
#include <errno.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "bench/bench_fixtures.h"
#include "benchmark/benchmark.h"
#include "core/shm_channel.h"

namespace ffibox {
namespace bench {
namespace {

constexpr size_t kShmEchoMessageBytes = 16;  // as BM_CrossProcessRoundTrip's
constexpr size_t kShmEchoRingBytes = size_t{64} << 10;

// 16 bytes to a forked echo process over the channel and back: the echo attaches the memfd it
// inherited, as a worker does, and both ends wait as the broker's and the worker's do (an
// adaptive spin, then futex).
void BM_BareShmRoundTrip(benchmark::State& state) {
  DropFixtures();  // no other family's servers and sessions running beside the two ends
  absl::StatusOr<std::unique_ptr<ShmChannel>> channel = ShmChannel::Create(kShmEchoRingBytes);
  if (!channel.ok()) {
    state.SkipWithError(std::string(channel.status().message()).c_str());
    return;
  }
  pid_t child = fork();
  if (child < 0) {
    state.SkipWithError("fork failed");
    return;
  }
  if (child == 0) {
    // Only the channel's own calls (syscalls and a small allocation) in the child.
    absl::StatusOr<std::unique_ptr<ShmChannel>> echo = ShmChannel::Attach((*channel)->memfd());
    if (!echo.ok()) _exit(1);
    char message[kShmEchoMessageBytes];
    while (
        (*echo)->Read(message, sizeof(message), absl::InfiniteFuture()).ok() &&
        (*echo)->Write(absl::string_view(message, sizeof(message)), absl::InfiniteFuture()).ok()) {
    }
    _exit(0);
  }
  ShmChannel& ends = **channel;
  char message[kShmEchoMessageBytes] = "ffibox echo";
  const absl::Time deadline = absl::Now() + absl::Minutes(10);
  for (auto _ : state) {
    if (!ends.Write(absl::string_view(message, sizeof(message)), deadline).ok() ||
        !ends.Read(message, sizeof(message), deadline).ok()) {
      state.SkipWithError("echo process went away");
      break;
    }
  }
  ends.Close();  // the echo reads end of stream and exits
  while (waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
  }
}
BENCHMARK(BM_BareShmRoundTrip)->UseRealTime();

}  // namespace
}  // namespace bench
}  // namespace ffibox

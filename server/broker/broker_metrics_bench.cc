// What counting one answered call costs the broker (docs/benchmarks.md, "Metrics"): the
// session's CallsAnswered and CallLatency for a successful Call, with one and two threads
// counting into the same counters (sessions on different cores).
#include <memory>

#include "benchmark/benchmark.h"
#include "server/broker/broker_metrics.h"
#include "server/metrics/metrics.h"

namespace ffibox {
namespace {

metrics::Registry* SharedRegistry() {
  static auto* registry = new metrics::Registry();
  return registry;
}

BrokerMetrics* SharedMetrics() {
  static BrokerMetrics* metrics = BrokerMetrics::Create(SharedRegistry(), nullptr)->release();
  return metrics;
}

void BM_CountOneCall(benchmark::State& state) {
  const SessionMetrics session = SharedMetrics()->SessionStarted("local");
  for (auto _ : state) {
    session.CallsAnswered(v1::Request::kCall, 1, v1::ERROR_CODE_UNSPECIFIED);
    session.CallLatency(v1::Request::kCall, absl::Microseconds(37));
  }
}
BENCHMARK(BM_CountOneCall)->Threads(1)->Threads(2)->UseRealTime();

void BM_RenderRegistry(benchmark::State& state) {
  SharedMetrics();
  for (auto _ : state) benchmark::DoNotOptimize(SharedRegistry()->Render());
}
BENCHMARK(BM_RenderRegistry);

}  // namespace
}  // namespace ffibox

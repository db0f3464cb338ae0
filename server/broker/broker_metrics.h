// ffiboxd's metrics (all named ffibox_*; docs/configuration.md, "Metrics", lists them),
// registered on a metrics::Registry, and the events that change them, each named for where it
// happens: the service admits and ends sessions (BrokerMetrics), a session reports its calls,
// its workers' deaths and restarts (SessionMetrics). The pool's idle workers and the bytes
// relayed through workers' channels are read when the registry is rendered.
//
// The call path costs a few relaxed atomic additions: a session looks up its identity's
// counters once, and the counters of every result code are looked up at creation.
#ifndef FFIBOX_SERVER_BROKER_BROKER_METRICS_H_
#define FFIBOX_SERVER_BROKER_BROKER_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/worker_death.h"
#include "server/metrics/metrics.h"

namespace ffibox {

class BrokerMetrics;
class WorkerPool;

// What one session reports. Copyable; a default-constructed one reports nothing (sessions
// of servers without metrics, and of unit tests). Thread-safe.
class SessionMetrics {
 public:
  SessionMetrics() = default;

  // A Call or Batch request was answered: `ok_calls` of its calls returned a result, and
  // `error` (ERROR_CODE_UNSPECIFIED: none) is the code of the call, or of the batch, that
  // failed or was refused. Other ops are ignored.
  void CallsAnswered(v1::Request::OpCase op, uint32_t ok_calls, v1::ErrorCode error) const;
  // A forwarded Call or Batch request took `latency` from its hand-off to the worker to its
  // answer (or to its worker's death). Other ops are ignored.
  void CallLatency(v1::Request::OpCase op, absl::Duration latency) const;
  // The session's worker died (not killed by the session's end): `error` is what its
  // callers were told (worker_death.h), `cause` why the broker saw it end.
  void WorkerDied(const v1::Error& error, DeathCause cause) const;
  // The session started a new worker after the death of the previous one.
  void WorkerRestarted() const;

 private:
  friend class BrokerMetrics;
  SessionMetrics(const BrokerMetrics* broker, metrics::Counter* identity_calls)
      : broker_(broker), identity_calls_(identity_calls) {}

  const BrokerMetrics* broker_ = nullptr;
  metrics::Counter* identity_calls_ = nullptr;
};

class BrokerMetrics {
 public:
  // Registers ffiboxd's metrics on `registry` (which must outlive this). `pool` (may be
  // null: no pool; must outlive the registry's rendering) is sampled for its idle workers.
  // Fails as Registry's Add* do (a name registered twice).
  static absl::StatusOr<std::unique_ptr<BrokerMetrics>> Create(metrics::Registry* registry,
                                                               const WorkerPool* pool);

  BrokerMetrics(const BrokerMetrics&) = delete;
  BrokerMetrics& operator=(const BrokerMetrics&) = delete;

  // A session of `identity` was admitted (authenticated, within its quota); what the
  // session reports with. Pair with SessionEnded.
  SessionMetrics SessionStarted(absl::string_view identity);
  void SessionEnded(absl::string_view identity);

 private:
  friend class SessionMetrics;
  BrokerMetrics() = default;

  // The calls counter of `code` (ERROR_CODE_UNSPECIFIED: "OK").
  metrics::Counter* CallsWithCode(v1::ErrorCode code) const;

  metrics::Gauge* sessions_open_ = nullptr;
  metrics::Counter* sessions_total_ = nullptr;
  metrics::Family<metrics::Counter>* identity_sessions_ = nullptr;
  metrics::Family<metrics::Gauge>* identity_sessions_open_ = nullptr;
  metrics::Family<metrics::Counter>* identity_calls_ = nullptr;
  metrics::Family<metrics::Counter>* calls_ = nullptr;
  std::vector<metrics::Counter*> calls_by_code_;  // index: v1::ErrorCode
  metrics::Histogram* call_latency_ = nullptr;
  metrics::Histogram* batch_latency_ = nullptr;
  metrics::Family<metrics::Counter>* crashes_ = nullptr;
  metrics::Family<metrics::Counter>* violations_ = nullptr;
  metrics::Counter* timeouts_ = nullptr;
  metrics::Counter* restarts_ = nullptr;
};

// The upper bounds, in seconds, of the call latency histogram's buckets: from 25 µs (a
// round trip on an idle machine is about that) to 30 s (the default call deadline).
const std::vector<double>& CallLatencyBuckets();

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_BROKER_METRICS_H_

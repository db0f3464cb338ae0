#include "server/broker/broker_metrics.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/broker/worker_connection.h"
#include "server/broker/worker_pool.h"

namespace ffibox {
namespace {

using metrics::Counter;
using metrics::Family;
using metrics::Gauge;
using metrics::Histogram;
using metrics::MetricType;
using metrics::Sample;

// The label of a call's result code: "OK" for a result, else the ErrorCode's name.
std::string CodeLabel(v1::ErrorCode code) {
  return code == v1::ERROR_CODE_UNSPECIFIED ? "OK" : v1::ErrorCode_Name(code);
}

bool IsCall(v1::Request::OpCase op) {
  return op == v1::Request::kCall || op == v1::Request::kBatch;
}

}  // namespace

const std::vector<double>& CallLatencyBuckets() {
  static const std::vector<double>* const buckets = new std::vector<double>{
      25e-6, 50e-6,  100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
      50e-3, 100e-3, 250e-3, 500e-3, 1,      2.5,  5,      10,   30};
  return *buckets;
}

absl::StatusOr<std::unique_ptr<BrokerMetrics>> BrokerMetrics::Create(metrics::Registry* registry,
                                                                     const WorkerPool* pool) {
  std::unique_ptr<BrokerMetrics> m(new BrokerMetrics());
  FFIBOX_ASSIGN_OR_RETURN(Family<Gauge> * open,
                          registry->AddGauge("ffibox_sessions_open", "Sessions open now."));
  m->sessions_open_ = open->WithLabels({});
  FFIBOX_ASSIGN_OR_RETURN(
      Family<Counter> * total,
      registry->AddCounter("ffibox_sessions_total",
                           "Sessions admitted (authenticated and within their quota)."));
  m->sessions_total_ = total->WithLabels({});
  FFIBOX_ASSIGN_OR_RETURN(
      m->calls_,
      registry->AddCounter(
          "ffibox_calls_total",
          "Native calls answered, by result code: each call of a Call request or of a Batch "
          "that returned a result counts OK; a call or batch that failed or was refused counts "
          "once with its error code.",
          {"code"}));
  for (int code = 0; code <= v1::ErrorCode_MAX; ++code) {
    m->calls_by_code_.push_back(
        v1::ErrorCode_IsValid(code)
            ? m->calls_->WithLabels({CodeLabel(static_cast<v1::ErrorCode>(code))})
            : nullptr);
  }
  FFIBOX_ASSIGN_OR_RETURN(
      Family<Histogram> * latency,
      registry->AddHistogram("ffibox_call_duration_seconds",
                             "Time from handing a Call or Batch request to its worker to its "
                             "answer (or its worker's death), in seconds.",
                             CallLatencyBuckets(), {"op"}));
  m->call_latency_ = latency->WithLabels({"call"});
  m->batch_latency_ = latency->WithLabels({"batch"});
  FFIBOX_ASSIGN_OR_RETURN(
      m->crashes_,
      registry->AddCounter("ffibox_worker_crashes_total",
                           "Workers that died on their own (or were killed for breaking the "
                           "channel protocol or by a resource limit), by signal; \"exit\" for a "
                           "worker that exited.",
                           {"signal"}, /*max_children=*/128));
  FFIBOX_ASSIGN_OR_RETURN(
      m->violations_,
      registry->AddCounter("ffibox_sandbox_violations_total",
                           "Workers killed for a syscall their seccomp policy forbids, by "
                           "syscall.",
                           {"syscall"}, /*max_children=*/512));
  FFIBOX_ASSIGN_OR_RETURN(
      Family<Counter> * timeouts,
      registry->AddCounter("ffibox_call_timeouts_total",
                           "Workers killed because a request overran its deadline."));
  m->timeouts_ = timeouts->WithLabels({});
  FFIBOX_ASSIGN_OR_RETURN(
      Family<Counter> * restarts,
      registry->AddCounter("ffibox_worker_restarts_total",
                           "New workers started for sessions whose worker had died."));
  m->restarts_ = restarts->WithLabels({});
  FFIBOX_ASSIGN_OR_RETURN(
      m->identity_sessions_,
      registry->AddCounter("ffibox_identity_sessions_total",
                           "Sessions admitted, by client identity.", {"identity"}));
  FFIBOX_ASSIGN_OR_RETURN(
      m->identity_sessions_open_,
      registry->AddGauge("ffibox_identity_sessions_open", "Sessions open now, by client identity.",
                         {"identity"}));
  FFIBOX_ASSIGN_OR_RETURN(
      m->identity_calls_,
      registry->AddCounter("ffibox_identity_calls_total",
                           "Native calls answered (as ffibox_calls_total), by client identity.",
                           {"identity"}));
  FFIBOX_RETURN_IF_ERROR(registry->AddSampled(
      "ffibox_worker_pool_idle", "Pre-started, pre-jailed workers waiting for a session.",
      MetricType::kGauge, {}, [pool] {
        return std::vector<Sample>{{{}, pool != nullptr ? static_cast<double>(pool->idle()) : 0}};
      }));
  FFIBOX_RETURN_IF_ERROR(registry->AddSampled(
      "ffibox_relayed_bytes_total",
      "Bytes of the frames relayed through workers' channels: client_to_worker carries the "
      "clients' requests, worker_to_client the replies, callback invocations and events.",
      MetricType::kCounter, {"direction"}, [] {
        const RelayedFrameBytes bytes = RelayedBytes();
        return std::vector<Sample>{{{"client_to_worker"}, static_cast<double>(bytes.to_workers)},
                                   {{"worker_to_client"}, static_cast<double>(bytes.from_workers)}};
      }));
  FFIBOX_RETURN_IF_ERROR(registry->AddSampled(
      "ffibox_buffered_reply_bytes",
      "Bytes of unfinished worker replies the broker holds now (limits.max_buffered_reply_bytes "
      "caps them).",
      MetricType::kGauge, {}, [] {
        return std::vector<Sample>{{{}, static_cast<double>(BufferedFrameBytes())}};
      }));
  return m;
}

SessionMetrics BrokerMetrics::SessionStarted(absl::string_view identity) {
  const std::string name(identity);
  sessions_open_->Add(1);
  sessions_total_->Increment();
  identity_sessions_->WithLabels({name})->Increment();
  identity_sessions_open_->WithLabels({name})->Add(1);
  return SessionMetrics(this, identity_calls_->WithLabels({name}));
}

void BrokerMetrics::SessionEnded(absl::string_view identity) {
  sessions_open_->Add(-1);
  identity_sessions_open_->WithLabels({std::string(identity)})->Add(-1);
}

Counter* BrokerMetrics::CallsWithCode(v1::ErrorCode code) const {
  const int index = static_cast<int>(code);
  if (index >= 0 && static_cast<size_t>(index) < calls_by_code_.size() &&
      calls_by_code_[index] != nullptr) {
    return calls_by_code_[index];
  }
  return calls_->WithLabels({absl::StrCat("code ", index)});
}

void SessionMetrics::CallsAnswered(v1::Request::OpCase op, uint32_t ok_calls,
                                   v1::ErrorCode error) const {
  if (broker_ == nullptr || !IsCall(op)) return;
  const uint32_t failed = error != v1::ERROR_CODE_UNSPECIFIED ? 1 : 0;
  if (ok_calls > 0) broker_->CallsWithCode(v1::ERROR_CODE_UNSPECIFIED)->Increment(ok_calls);
  if (failed > 0) broker_->CallsWithCode(error)->Increment();
  identity_calls_->Increment(uint64_t{ok_calls} + failed);
}

void SessionMetrics::CallLatency(v1::Request::OpCase op, absl::Duration latency) const {
  if (broker_ == nullptr || !IsCall(op)) return;
  Histogram* histogram =
      op == v1::Request::kCall ? broker_->call_latency_ : broker_->batch_latency_;
  histogram->Observe(absl::ToDoubleSeconds(latency));
}

void SessionMetrics::WorkerDied(const v1::Error& error, DeathCause cause) const {
  if (broker_ == nullptr) return;
  if (cause == DeathCause::kDeadline) {
    broker_->timeouts_->Increment();
  } else if (error.code() == v1::SANDBOX_VIOLATION) {
    broker_->violations_->WithLabels({error.syscall()})->Increment();
  } else {
    broker_->crashes_->WithLabels({error.signal() != 0 ? SignalName(error.signal()) : "exit"})
        ->Increment();
  }
}

void SessionMetrics::WorkerRestarted() const {
  if (broker_ != nullptr) broker_->restarts_->Increment();
}

}  // namespace ffibox

// One worker generation of a session, supervised: the worker with what holds it in
// (SessionWorker: the process, its caps, its cgroup) and the reader thread that receives
// everything the worker sends, wakes at deadlines, relays its output within the session's
// budget, reads its seccomp notifications, and turns its end into one report.
//
// The supervisor decides nothing about requests: it reports to a Listener (the session),
// which owns what is in flight. The Listener is called on the reader thread (or on a thread
// that reads in its place while it sleeps: ReadSide), one call at a time; OnDeath is its
// last call. The session starts a new supervisor for the next worker
// generation after this one's reader has ended (destruction waits for it), so readers of
// one session never overlap.
//
// Threads: Start, StartReader, Stop, TakeReadSide and destruction from the session's stream
// thread; Send, SendDescriptor, WakeReader and Kill from any thread (what SendFitsNow says
// holds until the next send only while one thread sends: the stream thread); Busy and Idle
// under the caller's serialization (the session's lock). The Listener is called one call at a time,
// by the reader thread or by the thread reading in its place.
#ifndef FFIBOX_SERVER_BROKER_WORKER_SUPERVISOR_H_
#define FFIBOX_SERVER_BROKER_WORKER_SUPERVISOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/encoding_limits.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/in_flight_requests.h"
#include "server/broker/session_config.h"
#include "server/broker/session_worker.h"
#include "server/broker/worker_death.h"
#include "server/broker/worker_output.h"
#include "server/broker/worker_process.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

class WorkerSupervisor {
 public:
  using Culprit = InFlightRequests::Culprit;

  // What the supervisor reports to, on its reader thread (or one reading in its place).
  // `generation` names the worker.
  class Listener {
   public:
    virtual ~Listener() = default;
    // When the reader must next look for an overdue request (InfiniteFuture: never).
    virtual absl::Time NextDeadline() = 0;
    // What a large message from the worker may hold (WorkerConnection::SetReplyLimits).
    virtual AnswerLimits ReplyLimits() = 0;
    // One message from the worker, its envelope checked; its content is still untrusted.
    // An error is a protocol violation: the worker is killed and reported dead.
    virtual absl::Status OnReply(uint64_t generation, internal::WorkerReply reply) = 0;
    // A deadline passed at `now`: what overran it (the worker is then killed), or nothing
    // when no request did (the deadline moved).
    virtual std::optional<Culprit> Overdue(absl::Time now) = 0;
    // What the worker wrote to `stream`, within the output budget.
    virtual void OnOutput(uint64_t generation, v1::OutputStream stream, std::string output) = 0;
    // The worker ended and was reaped: why (`cause`, `detail`, and `culprit` for
    // kDeadline, else null). The last call for this generation.
    virtual void OnDeath(uint64_t generation, const WorkerExit& exit, DeathCause cause,
                         absl::string_view detail, const Culprit* culprit) = 0;
  };

  // Starts the session's worker (SessionWorker::Start; its errors) with `listener` and
  // `output_budget` (not owned; both outlive the supervisor). Nothing is read from the
  // worker until StartReader.
  static absl::StatusOr<std::unique_ptr<WorkerSupervisor>> Start(
      const SessionConfig& config, const SessionWorker::Settings& settings,
      absl::string_view session_id, OutputBudget* output_budget, Listener* listener);

  WorkerSupervisor(const WorkerSupervisor&) = delete;
  WorkerSupervisor& operator=(const WorkerSupervisor&) = delete;
  // Stop(), then the worker is reaped and its cgroup removed.
  ~WorkerSupervisor();

  // Starts the reader thread. Call once, after the listener is ready for its calls;
  // RESOURCE_EXHAUSTED when no thread can be started (then Stop the worker).
  absl::Status StartReader();

  // Kills the worker and waits for the reader thread to report its death and end. Call
  // without holding anything the listener takes. Idempotent.
  void Stop();

  uint64_t generation() const { return worker_->process().generation(); }
  // Whether the worker loads libraries from descriptors (SendDescriptor).
  bool loads_by_descriptor() const { return worker_->process().loads_by_descriptor(); }

  // Sends one request to the worker. UNAVAILABLE when it has gone (the reader reports why).
  absl::Status Send(const internal::WorkerRequest& request);
  // Sends `envelope` with the client's `request` inside, uncopied (WorkerConnection::Send).
  absl::Status Send(const internal::WorkerRequest& envelope, const v1::Request& request);
  // Whether those sends would not wait now (WorkerConnection::SendFitsNow).
  bool SendFitsNow(const internal::WorkerRequest& request) {
    return worker_->process().connection().SendFitsNow(request);
  }
  bool SendFitsNow(const internal::WorkerRequest& envelope, const v1::Request& request) {
    return worker_->process().connection().SendFitsNow(envelope, request);
  }
  // Passes `fd` (the caller keeps it) for the load with WorkerRequest id `tag`.
  absl::Status SendDescriptor(int fd, uint64_t tag);
  // The read side of the worker's connection, held by a thread that reads in place of the
  // reader thread while that sleeps (the session's stream thread, for the answer to a request
  // its client waits for: one wakeup and one thread handoff fewer). While it is held, what
  // the worker sends does not wake the reader thread. Releasing it (destruction, or
  // assigning another) hands reading back to the reader thread, which is woken at once if
  // the worker sent more meanwhile, or if a message read in place broke the protocol (the
  // reader thread reports that, as it reports an Interrupt, a deadline and the worker's end).
  // Hold it briefly, on the stream thread only, and never across a call that may wait for
  // the reader thread (Stop, destruction).
  class ReadSide {
   public:
    ReadSide() = default;
    ReadSide(ReadSide&& other) noexcept : owner_(std::exchange(other.owner_, nullptr)) {}
    ReadSide& operator=(ReadSide&& other) noexcept;
    ~ReadSide() { Release(); }

    explicit operator bool() const { return owner_ != nullptr; }

    // Reads what the worker sends and reports it to the listener as the reader thread would,
    // until `done()` (asked before each message) or until `until`, spinning: the calling
    // thread never sleeps here. Stops at the first message that breaks the protocol. Whether
    // `done()` came true.
    bool Read(absl::Time until, absl::FunctionRef<bool()> done);

   private:
    friend class WorkerSupervisor;
    explicit ReadSide(WorkerSupervisor* owner) : owner_(owner) {}
    void Release();

    WorkerSupervisor* owner_ = nullptr;
  };

  // The read side, taken from the sleeping reader thread; empty when the reader thread is
  // reading (or not started), or when another worker of the process is busy
  // (SessionWorker::BusyWorkers): a thread reading in place spins, which must not take a CPU
  // from other sessions.
  ReadSide TakeReadSide();

  // Makes the reader ask the listener for the next deadline again.
  void WakeReader();
  // Kills the worker; the reader then reports its death. Idempotent.
  void Kill();

  // The worker got a request while none was in flight / has none in flight any more
  // (SessionWorker::Busy and Idle: the idle CPU throttle, and the limits that bit).
  void Busy() { worker_->Busy(); }
  std::vector<std::string> Idle() { return worker_->Idle(); }
  void Throttle() { worker_->Throttle(); }
  std::vector<std::string> NewLimitHits() { return worker_->NewLimitHits(); }
  void NotBusy() { worker_->NotBusy(); }

 private:
  WorkerSupervisor(std::unique_ptr<SessionWorker> worker, OutputBudget* output_budget,
                   Listener* listener)
      : worker_(std::move(worker)), output_budget_(output_budget), listener_(listener) {}

  // Watches the worker's output pipes and seccomp listener from the reader thread.
  void WatchDescriptors();
  // The reader thread: until the worker ends.
  void ReadReplies();
  // Kills the worker when `kill`, reaps it and reports its death.
  void ReportDeath(bool kill, DeathCause cause, absl::string_view detail,
                   const Culprit* culprit = nullptr);

  const std::unique_ptr<SessionWorker> worker_;
  // The read side: held by the reader thread except while it sleeps, or by a thread that
  // reads in its place (ReadSide). The listener's calls and the output budget are made
  // and used under it.
  absl::Mutex role_mu_;
  OutputBudget* const output_budget_;  // used under role_mu_
  Listener* const listener_;
  // Why a message read in place broke the protocol, for the reader thread to report.
  std::optional<std::string> violation_ ABSL_GUARDED_BY(role_mu_);
  std::atomic<bool> stopping_{false};
  std::thread reader_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_SUPERVISOR_H_

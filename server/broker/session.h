// One client session in the broker: the lifetime of one `Session` stream.
//
// The session validates each client request, forwards what needs native code to its worker,
// and relays the worker's answers. Its state is in named parts, all under `mu_`:
// - HandleTable (server/broker/handle_table.h): the client's libraries, functions and callbacks,
//   and what a new worker must be sent to honour them again;
// - InFlightRequests (server/broker/in_flight_requests.h): what the worker is running, per
//   callback scope, with deadlines;
// - WorkerSupervisor (server/broker/worker_supervisor.h): the worker of the current
//   generation with its caps and cgroup (SessionWorker), and the reader thread that reports
//   what the worker sends, when a deadline passes and how the worker ended. The session is
//   its Listener: it checks each reply against the request it answers, relays it, and turns
//   a death into typed errors for every request in flight. On the next request after a
//   death a new worker is started and the handles are replayed.
// Each request handler validates, then answers at once or forwards to the worker; an error
// is answered in one place (HandleRequest). session.cc takes requests down, and
// session_replies.cc applies what comes up.
//
// Threads: HandleRequest and Shutdown are called from the stream's thread only; the reader
// thread (through the Listener methods) and that thread share state under `mu_`. Responses
// go out through a thread-safe ResponseSink.
#ifndef FFIBOX_SERVER_BROKER_SESSION_H_
#define FFIBOX_SERVER_BROKER_SESSION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/shm_channel.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/call_validation.h"
#include "server/broker/handle_table.h"
#include "server/broker/in_flight_requests.h"
#include "server/broker/library_descriptor.h"
#include "server/broker/limited_log.h"
#include "server/broker/pending_request.h"
#include "server/broker/scratch_directory.h"
#include "server/broker/session_config.h"
#include "server/broker/session_worker.h"
#include "server/broker/worker_death.h"
#include "server/broker/worker_output.h"
#include "server/broker/worker_process.h"
#include "server/broker/worker_supervisor.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

// How much of a worker's output one session relays: 64 KiB/s on average, bursts of 1 MiB
// (enough for a library's banner or a debug dump; a flood is dropped with a note).
inline constexpr size_t kOutputBytesPerSecond = 64 << 10;
inline constexpr size_t kOutputBurstBytes = 1 << 20;

// How long a worker with no request in flight keeps its CPU unthrottled before the idle
// quota (limits.idle_cpu_percent) applies again. Each change of the quota is a write to the
// worker's cgroup on the request's path (two per request when every answer restored it); a
// client calling back to back pays none, and one that pauses longer than this pays them as
// before. What a worker may run meanwhile is bounded by the session's CPU time all the same.
// The alarms of all sessions come due on the same ticks (IdleThrottleTick), so that the timer
// wakes once for every session that went idle within one tick, not once per request of each:
// the throttle comes back 5 to 10 ms after the last request ends.
inline constexpr absl::Duration kIdleThrottleDelay = absl::Milliseconds(5);

// The first multiple of kIdleThrottleDelay (since the Unix epoch) at or after `t`.
absl::Time IdleThrottleTick(absl::Time t);

// Where a session's responses go. Implementations must be thread-safe.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Sends one response, which it owns from here (a large one is sent from where it is, not
  // copied); returns false when the client is gone.
  virtual bool Send(v1::Response response) = 0;
  // Sends `response` ahead of whatever is sent next, or at Flush if that comes first: the
  // stream's order is kept, and the two may leave in one write. Sends at once by default.
  virtual void SendWithNext(v1::Response response) { Send(std::move(response)); }
  // Sends what SendWithNext holds, if anything.
  virtual void Flush() {}
};

class Session : private WorkerSupervisor::Listener {
 public:
  Session(const SessionConfig& config, ResponseSink* sink, std::string session_id);
  // Shuts the session down if Shutdown was not called.
  ~Session() override;

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Handles one client request. Every request gets exactly one response (now, or when the
  // worker answers). Returns false when the client asked to close the session.
  // `client_waits`: the client sent nothing behind this request (it waits for the answer),
  // so the stream thread may spend a few microseconds reading the worker's answer itself
  // (ReadAnswerInPlace) before it goes back to the stream.
  bool HandleRequest(const v1::Request& request, bool client_waits = false);
  // As above, for a request the session may strip: the bytes of its memory blocks (and of a
  // write_memory) are freed once they are in the worker's ring, so that a large call's
  // request and its answer are not both resident even if this thread is held up after the
  // send.
  bool HandleRequest(v1::Request* request, bool client_waits = false);

  // Answers request `id`, an `op` refused before it was parsed (server/broker/message_codec.h),
  // with `status`, and counts it as a request refused by validation. The session goes on.
  void RefuseUnparsed(uint64_t id, v1::Request::OpCase op, const absl::Status& status);

  // The client closed its side of the stream: no request follows, and none of the callback
  // invocations open or still to come can be answered. Each of those fails at once (native
  // code gets zero and the client a CALLBACK_ERROR event, as for a callback that raised)
  // while every request in flight is answered. Returns once nothing is in flight, when the
  // worker is gone (its death answers what was), or when `client_gone` (polled) says
  // nobody reads the answers any more. Deadlines bound the wait as they bound any request.
  void FinishInFlight(absl::FunctionRef<bool()> client_gone);

  // Kills and reaps the worker and stops its reader thread. Idempotent.
  void Shutdown();

 private:
  using Culprit = InFlightRequests::Culprit;
  // What a handler answers at once: a response, or nothing when the worker will answer.
  using Answer = std::optional<v1::Response>;

  // Request handlers: each validates, then answers or forwards. An error is the answer.
  absl::StatusOr<Answer> Dispatch(const v1::Request& request, bool first);
  absl::StatusOr<Answer> Open(const v1::Request& request);
  absl::StatusOr<Answer> LoadLibrary(const v1::Request& request);
  absl::StatusOr<Answer> ResolveFunction(const v1::Request& request);
  absl::StatusOr<Answer> Call(const v1::Request& request);
  // Several calls forwarded as one worker request.
  absl::StatusOr<Answer> Batch(const v1::Request& request);
  absl::StatusOr<Answer> GetLayout(const v1::Request& request);
  absl::StatusOr<Answer> LookupSymbol(const v1::Request& request);
  // read / write / alloc / free / fill / copy memory and read_string.
  absl::StatusOr<Answer> MemoryOperation(const v1::Request& request);
  absl::StatusOr<Answer> DefineCallback(const v1::Request& request);
  absl::StatusOr<Answer> FreeCallback(const v1::Request& request);
  // Closes an open invocation and hands the client's answer to the worker.
  absl::StatusOr<Answer> CallbackReturn(const v1::Request& request);
  // Sends `answer` (a request carrying a callback_return, its id the client's or 0) on to
  // the worker once it is checked against the open invocation it names; a client's is
  // acknowledged with `done`.
  absl::Status AnswerInvocation(const v1::Request& answer);
  // Makes a same-host channel between the client and the worker (docs/protocol.md).
  absl::StatusOr<Answer> OpenLocalChannel(const v1::Request& request);

  // What ValidateCallRequest and ValidateBatchRequest need of the session.
  CallContext CallContextLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether an address of worker generation `generation` is valid now.
  bool AddressIsCurrent(uint64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // STALE_HANDLE for an address of worker generation `generation`.
  absl::Status StaleAddress(uint64_t generation) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Sends `request` to the worker (starting one if needed) as `pending` describes it;
  // nothing to answer now, or the error (recorded as the handle's outcome).
  absl::StatusOr<Answer> Forward(const v1::Request& request, PendingRequest pending);
  // The session's call timeout, with the session's lock.
  absl::Duration CallTimeout() ABSL_LOCKS_EXCLUDED(mu_);
  // With the read side taken (read_side_), reads the worker's answer on this thread, for at
  // most kAnswerInPlaceSpin: until the worker answers a request or invokes a callback.
  // Then gives the read side back; after a miss, the next requests back off.
  void ReadAnswerInPlace() ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the answer to the request about to be sent may be read in place: the client
  // waits for it (answer_in_place_), no backoff skips it (counted here), and the session has
  // no same-host channel.
  bool MayReadInPlace() ABSL_LOCKS_EXCLUDED(mu_);
  // Frees the bytes of `request`'s blocks once nothing needs them (they are in the worker's
  // ring, or a copy of the request goes there), if it is the request being handled and the
  // session may strip it. The request's cached sizes are stale then: it is never encoded again.
  void StripBlocks(const v1::Request& request);
  // Whether the request about to be sent is marked internal::WorkerRequest.next_follows (its
  // worker then spins longer for the frames after it); may take the process's SpinTurn.
  bool NextFollows() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // throttle_alarm_'s: the idle CPU throttle on, if no request came for kIdleThrottleDelay.
  void ThrottleIfIdle() ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `send`, with read_side_ taken from `worker` when `in_place`: before it when `fits()`
  // (the send cannot wait), else after it.
  void SendReadingInPlace(WorkerSupervisor* worker, bool in_place, absl::FunctionRef<bool()> fits,
                          absl::FunctionRef<void()> send);
  // Starts a worker and replays the session's libraries and functions, unless one is alive.
  // `ahead`: taken ahead of any request (TakePooledWorker, SessionWorker::Settings::ahead).
  absl::Status EnsureWorker(bool ahead = false) ABSL_LOCKS_EXCLUDED(mu_);
  // Right after the open is answered: takes a worker from the pool, if one is idle, while
  // the answer travels. The client's next request most likely needs it, and then finds the
  // worker's limits applied, its `begin` sent and its reader thread started. Not for a
  // session that does not restart workers: a worker that died idle would end it unused.
  void TakePooledWorker() ABSL_LOCKS_EXCLUDED(mu_);
  // Queues and sends the replay of every ready library and function to a new worker.
  void ReplayHandles() ABSL_LOCKS_EXCLUDED(mu_);
  // Queues `pending` for the live worker and sends `request` to it. Fails when no worker is
  // alive (it died since EnsureWorker).
  // `may_read_in_place`: the request is the one being handled, whose answer this thread may
  // read (TakeReadSide), not a replay.
  absl::Status Enqueue(const v1::Request& request, PendingRequest pending,
                       bool may_read_in_place = false) ABSL_LOCKS_EXCLUDED(mu_);
  // Opens the admitted library `path` for the live worker when it loads by descriptor
  // (leaves `library` empty otherwise). LIBRARY_LOAD_FAILED or RESOURCE_EXHAUSTED.
  absl::Status OpenLibraryFor(const std::string& path, LibraryFd* library) ABSL_LOCKS_EXCLUDED(mu_);

  // WorkerSupervisor::Listener, on the reader thread.
  absl::Time NextDeadline() override ABSL_LOCKS_EXCLUDED(mu_);
  AnswerLimits ReplyLimits() override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status OnReply(uint64_t generation, internal::WorkerReply reply) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<Culprit> Overdue(absl::Time now) override ABSL_LOCKS_EXCLUDED(mu_);
  void OnOutput(uint64_t generation, v1::OutputStream stream, std::string output) override;
  // Fails everything in flight and reports the loss; `culprit` names what overran its
  // deadline (kDeadline), else the innermost running request is blamed.
  void OnDeath(uint64_t generation, const WorkerExit& exit, DeathCause cause,
               absl::string_view detail, const Culprit* culprit) override ABSL_LOCKS_EXCLUDED(mu_);

  // Applies one message from the worker of `generation`: a response (checked against the
  // request it answers), an invoke or an event. Sets `to_client` to what the client must be
  // sent, if anything. INVALID_ARGUMENT for a protocol violation.
  absl::Status AcceptReply(uint64_t generation, internal::WorkerReply reply,
                           std::optional<v1::Response>* to_client)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks and records a CallbackInvoke from the worker, and puts the client's id of the
  // request that made it in its request_id (0 for a request of the broker's).
  absl::Status AcceptInvoke(v1::CallbackInvoke* invoke) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The call the worker says it runs from the same-host channel: its function and timeout,
  // and when that timeout passes; or nothing.
  struct LocalCallSnapshot {
    Culprit culprit;
    absl::Time deadline;
  };
  std::optional<LocalCallSnapshot> LocalCall() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // When the reader must next look at the same-host channel's call: soon (an eighth of the
  // session's timeout, within bounds), or at the running call's deadline if that comes
  // first. Requires a channel.
  absl::Time LocalCallDeadline() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends a LIMIT_REACHED event for each of `hits` (limits worker `generation` reached).
  void ReportLimitHits(uint64_t generation, const std::vector<std::string>& hits)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Closes the worker's end of the same-host channel for it (the client reads end of
  // stream) and forgets the channel.
  void CloseLocalChannel() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies a successful or failed reply to the session's handle table.
  void RecordOutcome(const PendingRequest& pending, const v1::Response& response)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns `named`, the outcome of naming a library or function by the id of the request
  // that made it; when it failed, first waits until the failed answers already recorded are
  // sent (failures_unsent_), so that the failure of the request named reaches the client
  // before this refusal of a request that names it (docs/protocol.md, "Pipelined requests").
  absl::Status AfterRecordedFailures(absl::Status named) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The budget of every session's limit lines: 60 a minute.
  static LimitedLog& EverySessionsLimitLog();

  void Reply(const v1::Request& request, v1::Response response);
  // Answers request `id`, an `op` refused before any worker saw it
  // (Error.never_reached_worker), with `status`, and counts it.
  void Refuse(uint64_t id, v1::Request::OpCase op, const absl::Status& status);

  const SessionConfig config_;
  ResponseSink* const sink_;
  // The budget for relaying the worker's output (used by the reader thread only; readers
  // of successive workers never overlap).
  OutputBudget output_budget_{kOutputBytesPerSecond, kOutputBurstBytes};
  const std::string session_id_;
  // The operator's lines about limits its workers hit (a library can hit one on every
  // call): a few a minute, within the budget of every session's (a client can open session
  // after session), so a noisy session takes at most a few of those.
  LimitedLog limit_log_{6, &EverySessionsLimitLog()};

  // The copies of libraries its workers were handed (OpenLibraryForWorker).
  LibraryCopies library_copies_;
  absl::Mutex mu_;
  bool any_request_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  // The client closed its side of the stream (FinishInFlight): invocations are not relayed.
  bool client_closed_side_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration call_timeout_ ABSL_GUARDED_BY(mu_);
  // The session's memory cap (worker address space; 0 = none), from the server's cap or
  // OpenSession.memory_limit_bytes.
  uint64_t memory_limit_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // The worker's CPU share while idle (OpenSession.idle_cpu_percent, else the server's).
  uint32_t idle_cpu_percent_ ABSL_GUARDED_BY(mu_) = 0;
  // OpenSession.environment (validated), set in the worker before each library load.
  std::vector<std::pair<std::string, std::string>> environment_ ABSL_GUARDED_BY(mu_);
  // The session's scratch directory; removed after the workers are gone (~Session).
  std::unique_ptr<ScratchDirectory> scratch_ ABSL_GUARDED_BY(mu_);
  bool restart_ ABSL_GUARDED_BY(mu_) = true;
  HandleTable handles_ ABSL_GUARDED_BY(mu_);
  InFlightRequests requests_ ABSL_GUARDED_BY(mu_);
  // Answers and callback invocations accepted from the worker so far.
  uint64_t answers_accepted_ ABSL_GUARDED_BY(mu_) = 0;
  // The budget for relaying the worker's CALLBACK_ERROR events, which a library can make
  // without end (a thread calling a freed callback in a loop; a forger): past it they are
  // dropped, and the next one relayed says how many were.
  TokenBucket event_budget_ ABSL_GUARDED_BY(mu_){kOutputBytesPerSecond, kOutputBurstBytes};
  uint64_t events_dropped_ ABSL_GUARDED_BY(mu_) = 0;
  // Failed answers whose outcome is recorded in handles_ but which the thread that read
  // them from the worker (its reader, or the stream thread reading in place) has not sent
  // to the client yet (OnReply, OnDeath).
  int failures_unsent_ ABSL_GUARDED_BY(mu_) = 0;

  // The worker of the current generation, supervised; kept after its death until the next
  // one starts (its reader thread may still be reporting the death).
  std::unique_ptr<WorkerSupervisor> worker_ ABSL_GUARDED_BY(mu_);
  bool worker_alive_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  v1::Error last_death_ ABSL_GUARDED_BY(mu_);

  // The broker's attachment of the worker's end of the client's same-host channel (null:
  // none): it reads the worker's busy words and closes the end when the worker dies.
  std::unique_ptr<ShmChannel> local_worker_end_ ABSL_GUARDED_BY(mu_);

  // The stream thread's: whether the request being handled may have its answer read in
  // place, and the read side taken for it (WorkerSupervisor::ReadSide) until it has.
  bool answer_in_place_ = false;
  v1::Request* strippable_ = nullptr;  // the request being handled, if the session may strip it
  WorkerSupervisor::ReadSide read_side_;
  uint64_t answers_before_send_ = 0;  // answers_accepted_ before the request went down
  // After spins that missed: how many requests to skip (kMaxAnswerInPlaceBackoff), and how
  // many are left to skip.
  int in_place_backoff_ = 0;
  int in_place_skips_ = 0;

  // Wakes the current worker's reader at a deadline it slept past (SessionConfig::deadlines;
  // null without a timer: the stream thread wakes the reader itself). Cancelled in Shutdown.
  std::shared_ptr<DeadlineTimer::Alarm> reader_alarm_;
  // Applies the idle CPU throttle once the worker has had no request in flight for
  // kIdleThrottleDelay (null without a timer: applied as each request ends). Cancelled in
  // Shutdown.
  std::shared_ptr<DeadlineTimer::Alarm> throttle_alarm_;
  absl::Time idle_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_SESSION_H_

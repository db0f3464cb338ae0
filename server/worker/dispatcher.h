// WorkerDispatcher: the threads of ffibox-worker and the routing of the broker's requests
// between them, which is what makes callbacks reentrant and callable from any thread.
//
//   - The first request binds the worker to its generation (WorkerRequest.begin); until
//     then the worker is generic, so the broker's pool can hand it to any session or
//     restart. A first request without a generation, or a second begin, ends the process
//     with status 2.
//   - The main thread receives the begin; a reader thread, started before it arrives,
//     sleeps until then. Every later request from the broker (BrokerConnection) is received
//     by one thread at a time, the reader of the moment, and routed:
//       * request.callback_return for invocation N: wakes the thread waiting in N (an
//         unknown or already answered N is ignored). Never answered.
//       * WorkerRequest.invocation == 0: queued for the main thread, which runs top-level
//         requests one at a time, in order.
//       * WorkerRequest.invocation == N: queued for the thread waiting in invocation N,
//         which runs it and answers; if N is not waiting, answered at once with
//         FAILED_PRECONDITION "invocation N is not waiting".
//     End of stream (or an unreadable frame) ends the process with status 0 at once (while
//     the main thread runs a request, within kReaderTakeover and the channel's hangup check):
//     the broker is gone or killed us. A frame that is not a request ends it with status 2.
//   - Who reads: the main thread, while it has nothing to run and no same-host channel is
//     attached, so a request that finds the worker idle is run by the thread that received
//     it (no wakeup of a second thread on the way). When it receives a top-level request it
//     stops reading and runs it. Likewise a thread waiting for the frames of the one
//     invocation it made (native code called a callback, and no other invocation waits, no
//     same-host channel is attached) reads and routes the broker's frames itself until its
//     own comes, so a callback's answer wakes no other thread. The reader thread reads
//     whenever neither does and something may come that cannot wait for the main thread:
//     invocations are waiting for their frames (callbacks called during that request, or
//     from threads of the library, nested ones, or one whose thread runs a request made
//     inside it), a same-host channel is attached (the main thread waits on that), or the
//     main thread has been running one request for kReaderTakeover (the requests behind it
//     are then queued, so the broker never waits on a full ring for long, and its end is
//     seen). It stops reading after a frame, once none of that holds and the main thread
//     is idle.
//   - When native code calls a live callback (on the main thread inside ffi_call, on a
//     thread nested in another invocation, or on a thread the library created), that
//     thread sends a CallbackInvoke, runs the requests queued for the invocation, and on
//     the callback_return writes back the pointees, stores the result and returns to
//     native code. Failures give native code zero and send a CALLBACK_ERROR event.
//   - Replies to the broker are written whole, one at a time (BrokerConnection::Send).
//   - A client's same-host channel (WorkerRequest.local_channel, worker_protocol.proto): the
//     main thread attaches it and, whenever it has no top-level request from the broker,
//     waits on it instead (the reader thread interrupts that wait when it queues one), reads
//     the client's call, or read, string read, write or layout request (those the worker
//     answers alone, validated as the broker validates them), runs it and writes the
//     response back. A frame that is none of these at the top level closes the channel; the
//     client's requests then go through the broker again.
//     When the client asked for callbacks on the channel (LocalChannel.callbacks), a
//     callback that native code calls on the main thread during such a call is invoked on
//     the channel instead (ChannelInvoke): the CallbackInvoke goes to the client as a
//     Response there, and the main thread serves the client's requests inside the
//     invocation from the channel (AllowedInChannelInvocation of core/local_channel.h;
//     validated as the broker validates them) until its callback_return. Requests the
//     channel does not carry (loads, look-ups, callback definitions, allocations) the
//     client's handler sends through the broker, naming the invocation
//     (WorkerRequest.channel_invocation): the reader thread queues them for it and
//     interrupts the channel's wait, and the main thread runs them there, answering them
//     to the broker. Anything else
//     there, or a channel that fails, closes the channel once the outer call is done; native
//     code then gets zero, as for a failed callback, and so does every later callback of
//     that call on the main thread (it may be inside an invocation only the channel knew).
//
// Everything received from the broker is untrusted; the executor validates each request.
#ifndef FFIBOX_SERVER_WORKER_DISPATCHER_H_
#define FFIBOX_SERVER_WORKER_DISPATCHER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/callback_values.h"
#include "core/framing.h"
#include "core/scalar_wire.h"
#include "core/shm_channel.h"
#include "server/protocol/worker_protocol.pb.h"
#include "server/worker/broker_connection.h"
#include "server/worker/callback_table.h"
#include "server/worker/executor.h"

namespace ffibox {

// Callback invocations nested on one thread when the settings name no limit.
inline constexpr int kDefaultMaxCallbackDepth = 64;

// How long the main thread runs one request before the reader thread reads in its place
// (looked at this often while the reader thread has nothing to do).
inline constexpr absl::Duration kReaderTakeover = absl::Milliseconds(500);

class WorkerDispatcher : public CallbackRunner {
 public:
  // Serves the broker on `channel` and its hangup socket `hangup_fd` (not owned; see
  // BrokerConnection) as `settings` say; library descriptors arrive on `descriptor_fd` (-1:
  // none).
  WorkerDispatcher(std::unique_ptr<ShmChannel> channel, int hangup_fd,
                   const internal::WorkerSettings& settings, int descriptor_fd);

  WorkerDispatcher(const WorkerDispatcher&) = delete;
  WorkerDispatcher& operator=(const WorkerDispatcher&) = delete;

  // Starts the reader thread, receives the begin request and runs top-level requests on the
  // calling thread as they come. Never returns: the process ends when the channel
  // does.
  [[noreturn]] void Run();

  // CallbackRunner: one native call of a live callback, on the calling thread.
  void RunCallback(uint64_t callback, const Closure& closure, uint32_t buffer_bytes,
                   void* const* args, void* result) override;
  void ReportCallbackError(const v1::Error& error) override;

  // The invocation id the n-th invocation (from 1) of a worker of `generation` gets:
  // unique across worker generations of a session.
  static uint64_t InvocationId(uint64_t generation, uint64_t n) { return (generation << 40) + n; }

 private:
  // Requests routed to one waiting invocation, in arrival order: a list, which allocates
  // nothing while empty (most invocations on the same-host channel receive none).
  using Inbox = std::list<ReceivedRequest>;
  // The frames routed to one waiting invocation, in arrival order; the last one is its
  // callback_return.
  struct Invocation {
    Inbox inbox;
    bool returned = false;  // its callback_return arrived: later requests are refused
  };

  // Receives the first request, which must be a begin, and makes the executor (on the main
  // thread, before anything is routed).
  void Begin();
  // The reader thread after the begin: reads while it must (see the file comment).
  [[noreturn]] void ReadLoop();
  // Whether the reader thread must read now (under mu_): nobody does, and an invocation
  // waits for its answer or a same-host channel is attached.
  bool ReaderNeeded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How long until the main thread's request has run for kReaderTakeover, and nobody has
  // read for as long (kReaderTakeover while it runs none; zero or less once that passed).
  absl::Duration UntilTakeover(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The main thread, holding the role of reader: receives frames and routes them until a
  // top-level request comes, which it returns after giving the role up.
  ReceivedRequest ReceiveForMain();
  // Receives the next frame from the broker; ends the process when there is none.
  ReceivedRequest ReceiveOrExit();
  // Hands `received` to whoever waits for it (or answers it); true when it was the
  // callback_return of a waiting invocation.
  bool Route(ReceivedRequest received);
  // Executes one request and sends its response (built in an arena).
  void Answer(const internal::WorkerRequest& request);
  // Sends one reply; ends the process if the broker has gone.
  void Send(const internal::WorkerReply& reply);
  // Attaches the same-host channel of `request` (its memfd came tagged with its id) in place
  // of any earlier one, and answers it.
  void AttachLocalChannel(const internal::WorkerRequest& request);
  // Waits on the same-host channel `channel` until a whole frame arrived (then runs it) or a
  // request from the broker interrupts the wait before any byte of one did; closes the
  // channel when the frame cannot be read.
  void ServeLocal(ShmChannel& channel);
  // Runs one request frame from the same-host channel (a call, or a request the worker
  // answers alone) and writes its response there. The frame's pieces are freed once parsed;
  // a scalar call's stays.
  void RunLocal(ShmChannel& channel, FramePayload& frame);
  // The same for a frame that holds a scalar call (ReadScalarCall) the executor takes
  // (WorkerExecutor::CallScalar): the call run from its arguments' bits and its answer
  // written; false, nothing run, for any other frame.
  bool RunScalarLocal(ShmChannel& channel, absl::string_view frame);
  // Runs `run` as a call on the channel: the busy words name `function` and its
  // `timeout_ms` while it runs, and its invocations go on `channel` when the client takes
  // them there. False when an invocation on the channel failed (then the channel is closed).
  bool RunAsLocalCall(ShmChannel& channel, uint64_t function, uint32_t timeout_ms,
                      absl::FunctionRef<void()> run);
  // Closes the same-host channel (the client sees end of stream) and forgets it.
  void CloseLocal();
  // The client's answer to an invocation on the same-host channel: its callback_return, or,
  // for a scalar invocation answered in the one shape ReadScalarReturn reads, its result
  // read from the bytes.
  struct ChannelReturn {
    v1::CallbackReturn message;  // unless read from its bytes
    bool read_from_bytes = false;
    std::optional<ScalarBits> result;  // when read from its bytes: the result, or none
  };
  // Invocation `id` on the same-host channel `channel`: sends its invoke with `write_invoke`
  // (a Response carrying the CallbackInvoke), serves the client's requests inside it from
  // the channel and returns its answer (read from its bytes only when `scalar`); the reason
  // when the channel fails or carries anything else.
  absl::StatusOr<ChannelReturn> ChannelInvoke(ShmChannel& channel, uint64_t id,
                                              absl::FunctionRef<absl::Status()> write_invoke,
                                              bool scalar);
  // Runs invocation `id` of `callback` on the same-host channel (ChannelInvoke) nested on this
  // thread, and applies its answer to `result` (Complete; StoreResult for one read from its
  // bytes), or zero when the channel failed.
  void InvokeOnChannel(ShmChannel& channel, uint64_t callback, uint64_t id, const Closure& closure,
                       absl::FunctionRef<absl::Status()> write_invoke, bool scalar,
                       const std::vector<ShippedPointee>& shipped, void* result);
  // Runs the requests in `inbox` (of invocation `id` on the same-host channel, routed there
  // by the reader thread) one by one, and sends their answers to the broker.
  void RunChannelInbox(uint64_t id, Inbox& inbox);
  // Answers request `request_id` from the broker with `status` (an error), unrun.
  void Refuse(uint64_t request_id, const absl::Status& status);
  // Answers request `request_id` from the broker that names invocation `id`, which is not
  // waiting, with FAILED_PRECONDITION.
  void RefuseNotWaiting(uint64_t request_id, uint64_t id, absl::string_view where);
  // Writes one message to the client on the same-host channel.
  static absl::Status WriteLocal(ShmChannel& channel, const v1::Response& message);
  // Sends a CALLBACK_ERROR event: `status` about `callback` (and `invocation` when not 0),
  // followed by `consequence`.
  void ReportFailure(uint64_t callback, uint64_t invocation, const absl::Status& status,
                     absl::string_view consequence);
  // Whether the thread of the one waiting invocation may read the broker's frames itself:
  // no other invocation waits, no same-host channel is attached, and nobody else reads.
  bool InvokerMayRead(uint64_t id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Invocation `id`'s thread stops reading, if it was (under mu_).
  void GiveUpReading(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits for the next frame routed to `invocation` (invocation `id`, made on this thread),
  // reading and routing the broker's frames itself while it holds the role of reader. When
  // that frame is the invocation's callback_return, the invocation stops waiting
  // (waiting_ forgets it) before the role is given up, so the reader thread is not woken
  // for it.
  ReceivedRequest NextFor(uint64_t id, Invocation* invocation);
  // Applies the client's answer: pointees, then the result (or zero).
  void Complete(uint64_t callback, uint64_t invocation_id, const Closure& closure,
                const v1::CallbackReturn& answer, const std::vector<ShippedPointee>& shipped,
                void* result);
  // Stores the client's `value` (nullptr: none) as the result (StoreCallbackResult), or zero
  // with a CALLBACK_ERROR when it does not fit the signature.
  void StoreResult(uint64_t callback, uint64_t invocation_id, const Closure& closure,
                   const v1::Value* value, void* result);

  BrokerConnection broker_;
  const int descriptor_fd_;
  const TypeLimits limits_;
  const int max_callback_depth_;
  // Set by Begin on the main thread before the first request is routed (the reader thread
  // sees them through mu_, begun_); never changed after.
  uint64_t generation_ = 0;
  std::optional<WorkerExecutor> executor_;
  std::atomic<uint64_t> invocations_{0};
  absl::Mutex mu_;
  std::deque<ReceivedRequest> top_level_ ABSL_GUARDED_BY(mu_);
  // Which thread receives from the broker now; the main thread until the begin is in.
  // kInvoker: a thread waiting in an invocation it made (NextFor), while nothing but that
  // invocation's frames is awaited.
  enum class Reader { kNone, kMain, kReaderThread, kInvoker };
  Reader reader_ ABSL_GUARDED_BY(mu_) = Reader::kMain;
  bool begun_ ABSL_GUARDED_BY(mu_) = false;  // the begin is in: the reader thread may read
  uint64_t reading_invocation_ ABSL_GUARDED_BY(mu_) = 0;  // the kInvoker's invocation
  // Invocations waiting whose callback_return has not been routed yet: they need a reader.
  int unanswered_ ABSL_GUARDED_BY(mu_) = 0;
  // When the role of reader was last given up by a thread that may not take it again soon
  // (an invocation's thread, or the reader thread): the takeover counts from then too.
  absl::Time unread_since_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  // Whether the main thread runs a request from the broker, and since when.
  bool main_busy_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time busy_since_ ABSL_GUARDED_BY(mu_);
  // The same-host channel: replaced and read by the main thread only, interrupted by the
  // reader thread (under mu_) when it queues a top-level request.
  std::unique_ptr<ShmChannel> local_ ABSL_GUARDED_BY(mu_);
  uint64_t local_max_request_bytes_ = 0;  // the main thread's
  std::string local_frame_buffer_;        // the main thread's: the last unparsed frame's bytes
  std::string local_answer_buffer_;       // the same for the last scalar invocation's answer
  bool local_callbacks_ = false;          // the main thread's: LocalChannel.callbacks
  // The main thread's: whether channels' reads may still spin long (kLocalLongestSpin: no
  // look by ServeLocal has found the budget's share spent, which stays spent), and when the
  // budget is looked at next.
  bool local_long_spin_ = true;
  absl::Time local_budget_look_ = absl::InfinitePast();
  // The main thread's: an invocation on the channel failed during the call running from it,
  // which closes the channel once that call is done.
  bool local_failed_ = false;
  absl::flat_hash_map<uint64_t, Invocation*> waiting_ ABSL_GUARDED_BY(mu_);
  // Invocations on the same-host channel (made by the main thread, nested in one another),
  // by id, each with the requests its client's handler sent through the broker
  // (WorkerRequest.channel_invocation), which ChannelInvoke runs while it waits.
  absl::flat_hash_map<uint64_t, Inbox*> channel_waiting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_DISPATCHER_H_

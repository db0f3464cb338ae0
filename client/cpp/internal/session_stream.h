// The one gRPC bidi stream behind a client session: request ids, pending replies, events.
//
// Internal to the C++ client; `Session`, `Library`, `RawFunction` and `Callback` share one
// `SessionStream` so that handles stay safe to use (they fail cleanly) after the session is
// closed. Any number of threads may send concurrently. One thread at a time reads the
// stream: it hands each response to the caller waiting for its id, stores unsolicited events
// (id 0), hands callback invocations to the stream's CallbackDispatcher
// (callback_dispatcher.h), and, if the stream breaks, fails every waiter with UNAVAILABLE.
// That thread is a caller waiting in Exchange while nobody else reads (its answer then
// needs no wakeup of another thread to reach it), or the stream's reader thread: while an
// answer is awaited by no such caller (SendAsync's futures, the callback thread's requests,
// Close), while a loss report is awaited, and once the stream has been left unread for 20 ms
// (kIdleReadTakeover: events still arrive between calls). Responses come from the server
// and are checked only for what the client relies on (matching ids, the result a request
// expects);
// worker addresses in them that come without a generation get the response's
// (generation_stamp.h), here, once. Each request has a client-side deadline too
// (answer_deadlines.h): when the server sends nothing for longer than the requests waiting
// may take, the process's AnswerWatchdog cancels the stream and they fail with
// DEADLINE_EXCEEDED.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_SESSION_STREAM_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_SESSION_STREAM_H_

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/cpp/internal/answer_deadlines.h"
#include "client/cpp/internal/answer_watchdog.h"
#include "client/cpp/internal/borrowed_block.h"
#include "client/cpp/internal/callback_dispatcher.h"
#include "client/cpp/internal/local_path.h"
#include "ffibox/v1/ffibox.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {
namespace client_internal {

class SessionStream : private AnswerWatchdog::Watched {
 public:
  // Receives what the session's library prints (ffibox::OutputHandler, session.h).
  using OutputHandler = std::function<void(v1::OutputStream stream, absl::string_view bytes)>;

  // Opens a Session stream on `channel`; its reader thread starts with the first write.
  // `answer_margin`: how much longer than its deadline in the worker a request's answer may
  // take (AnswerDeadlines). Returns UNAVAILABLE if the stream cannot be started.
  static absl::StatusOr<std::shared_ptr<SessionStream>> Start(
      std::shared_ptr<grpc::Channel> channel, absl::Duration answer_margin = kDefaultAnswerMargin);

  SessionStream(const SessionStream&) = delete;
  SessionStream& operator=(const SessionStream&) = delete;
  // Closes the stream (see Close) and joins the reader thread.
  ~SessionStream() override;

  // Sends `request` with a fresh id (its `id` is overwritten) and returns a future for the
  // matching response. The future holds the response even when it carries an error; it
  // holds UNAVAILABLE if the stream broke and FAILED_PRECONDITION after Close.
  std::future<absl::StatusOr<v1::Response>> SendAsync(v1::Request request);
  // SendAsync for a request the caller keeps (one on an arena is sent without a copy): its
  // id and invocation are set in `*request`, which is written before this returns.
  std::future<absl::StatusOr<v1::Response>> SendAsync(v1::Request* request);

  // Sends `request` and waits for its response, returned as it came, also when it carries
  // `error` (a failed batch's response holds results too); non-OK only when no response
  // came, as for SendAsync. On the callback thread it keeps serving invocations meanwhile.
  // `borrowed` names blocks of a call whose bytes are still in the caller's memory
  // (BorrowedBlock): they are copied to where the call goes.
  absl::StatusOr<v1::Response> Exchange(v1::Request request, BorrowedBlocks borrowed = {});
  // Exchange for a request the caller keeps, as SendAsync(v1::Request*) takes it.
  absl::StatusOr<v1::Response> Exchange(v1::Request* request, BorrowedBlocks borrowed = {});
  // A top-level call whose arguments are all scalars, through the same-host channel with
  // its request and answer in protobuf's wire format (LocalPath::ExchangeScalar): the answer
  // as Exchange would have returned it, or read from its bytes. nullopt, and nothing sent,
  // where Exchange would not send such a call on the channel (there is none; inside a
  // handler; a request through the broker not answered yet): the caller sends it with
  // Exchange.
  std::optional<absl::StatusOr<LocalPath::ScalarAnswer>> CallScalarLocally(const ScalarCall& call);
  // How many of those answers were read from their bytes.
  uint64_t scalar_answers_read() const { return scalar_answers_read_.load(); }
  // How many invocations on the same-host channel ran as scalar invocations.
  uint64_t scalar_invocations_run() const { return scalar_invocations_run_.load(); }
  // How many calls the worker of the last channel used said it ran from their arguments' bits
  // (LocalPath::worker_scalar_calls), as of the last exchange there; 0 before any. Takes no
  // lock (a handler may ask during the call that runs it).
  uint64_t worker_scalar_calls() const;

  // Exchange, and a response carrying `error` becomes the matching non-OK status
  // (ErrorStatus), so an OK result always has a `result` set.
  absl::StatusOr<v1::Response> Send(v1::Request request, BorrowedBlocks borrowed = {});

  // Send, then checks that the response carries the result `expected`: INTERNAL "the server
  // answered load_library without library" (the request's and the result's field names)
  // when it carries another or none.
  absl::StatusOr<v1::Response> SendExpecting(v1::Request request, v1::Response::ResultCase expected,
                                             BorrowedBlocks borrowed = {});

  // What SendExpecting makes of `response`, the answer (or failure) of a request of kind
  // `op`: its error as a status, or INTERNAL when it carries a result other than `expected`.
  static absl::StatusOr<v1::Response> Expect(v1::Request::OpCase op,
                                             absl::StatusOr<v1::Response> response,
                                             v1::Response::ResultCase expected);

  // The largest request the server reads (SessionOpened.max_message_bytes; 0: no limit): a
  // larger one is answered RESOURCE_EXHAUSTED by SendAsync, as the broker would answer it,
  // instead of being written (gRPC would end the whole stream over one at four times that
  // size).
  void SetMaxRequestBytes(uint64_t bytes) { max_request_bytes_.store(bytes); }

  // The session's call timeout as the server reported it (SessionOpened.call_timeout_ms):
  // the deadline in the worker of requests that name none, for their answers' deadlines.
  void SetCallTimeout(absl::Duration call_timeout) {
    answer_deadlines_.SetCallTimeout(call_timeout);
  }

  // Opens a same-host channel to the session's worker (LocalPath) and sends the top-level
  // calls of every thread but the callback thread (and of no handler) through it from now
  // on, one at a time,
  // with callbacks on the channel (OpenLocalChannel.callbacks): a callback that native code
  // calls during such a call runs on the calling thread, and its handler's calls, memory
  // reads and writes and layout queries go on the channel too (other requests from it are
  // refused with
  // FAILED_PRECONDITION: the worker's thread that would answer them waits for the handler);
  // each waiting at most `call_timeout` plus a margin, plus the bounds (added up) of requests
  // through the broker still unanswered when it starts, which the worker runs first (the broker
  // kills a call that overruns the session's timeout, and its loss then ends the wait). A call that
  // finds the channel ended (its worker lost) fails with the loss the broker reports
  // (WORKER_CRASHED, CALL_TIMEOUT, ...); the next call goes through the broker (which starts the
  // next worker), and once it is answered a channel to that worker is opened. The server's refusal
  // (FAILED_PRECONDITION off a unix socket) or the door's failure is returned.
  // `unless_enabled`: keep a channel that is already open.
  absl::Status EnableLocalPath(absl::Duration call_timeout, bool unless_enabled = false);
  // Whether calls go through a same-host channel now.
  bool local_path_enabled() const;
  // `function` was resolved at an address of worker `generation`: a call of it on a channel
  // to a later worker goes through the broker, which answers STALE_HANDLE (the worker alone
  // could only say it does not know the handle).
  void BindFunctionToGeneration(uint64_t function, uint64_t generation);

  // The callback invocations this stream receives: register handlers here.
  CallbackDispatcher& callbacks() { return callbacks_; }

  // The worker generation of the latest response or restart event (0 before any).
  uint64_t generation() const { return generation_.load(std::memory_order_relaxed); }

  // Returns and forgets the session events received so far, oldest first (WORKER_OUTPUT
  // events go to the output handler instead).
  std::vector<v1::SessionEvent> TakeEvents();

  // Hands WORKER_OUTPUT events to `handler` (on the reader thread; it must not block nor use
  // the session) from now on; null writes them to this process's stderr.
  void SetOutputHandler(OutputHandler handler);

  // Sends CloseSession, half-closes the stream, waits (bounded) for the server to end it,
  // and joins the reader. Idempotent. Returns the first failure seen while closing, OK if
  // the stream ended cleanly.
  absl::Status Close();

  // FAILED_PRECONDITION in a child of fork() (the session is its parent's: a request from
  // here would go through the parent's ring, at its positions, with its ids; a close, its
  // stream), else OK. A load of a counter a pthread_atfork handler bumps: no system call on
  // the calls' path.
  absl::Status ForkedCopy() const;

 private:
  // How many fork()s this process is a child of, counted from the first session.
  static uint64_t ForkCount();

  SessionStream(std::shared_ptr<grpc::Channel> channel, absl::Duration answer_margin);

  // AnswerWatchdog::Watched: when the server is overdue, the stream is cancelled and every
  // request waiting fails with DEADLINE_EXCEEDED.
  absl::Time LookForSilence(absl::Time now, bool held_up) override ABSL_LOCKS_EXCLUDED(mu_);

  // A request waiting for its response, and whether its sender reads the stream for it
  // (Exchange on a thread other than the callback thread).
  struct Pending {
    std::promise<absl::StatusOr<v1::Response>> promise;
    bool read_by_sender = false;
    absl::Duration bound;  // by when its answer is due (AnswerDeadlines::BoundOf)
    // Whether the broker hands it to the worker for the session's requests in order (all
    // but a ping, a declaration's parse and a callback_return, which goes to the thread that
    // waits for it): a request on the same-host channel sent before its answer could
    // overtake it there.
    bool reaches_worker = true;
    // A resolve_function: what its function's result adds to a call's answer on the
    // same-host channel (ResultAnswerBytes), noted with the function's handle when resolved.
    bool resolves = false;
    std::optional<uint64_t> result_bytes;
    // An invocation this request's native code made on its thread (CallbackInvoke.
    // request_id) that another thread read while the sender waits in AwaitAnswer: the sender
    // runs it, as it would had it read it itself.
    std::optional<v1::Response> invoke_here;
    // A handler's answer (SendCallbackReturn): read by whoever reads next, and waited for by
    // nobody, so reading its `done` is no reason for the reader thread to stop (a library
    // thread's next invocation may follow at once).
    bool awaited = true;
  };
  // Who reads the stream now.
  enum class Reader { kNone, kThread, kCaller };

  // SendAsync; `read_by_sender`: the caller waits with AwaitAnswer.
  std::future<absl::StatusOr<v1::Response>> SendAsync(v1::Request* request, bool read_by_sender);
  // Waits for `answer`, to request `id`, reading the stream meanwhile while nobody else does.
  // An invocation that request `id` made on the worker's thread running it
  // (CallbackInvoke.request_id) runs here, as ctypes runs a callback called during a call:
  // read here, no other thread is woken for it; read by another thread (the reader thread,
  // still reading for a library thread's invocations, or another caller), it is handed here
  // (HandToSender). Others go to the callback thread.
  absl::StatusOr<v1::Response> AwaitAnswer(std::future<absl::StatusOr<v1::Response>>& answer,
                                           uint64_t id);
  // Hands invocation `invoke` to the sender of request `request` when that sender reads for
  // its answer (AwaitAnswer runs it); false when it does not (the callback thread's).
  bool HandToSender(uint64_t request, v1::Response& invoke) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether the reader thread must read now: nobody does, the stream goes on, and someone
  // waits for what only the reader thread would read.
  bool ReaderThreadNeeded() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Body of the reader thread: reads while it is needed (or the stream has been left unread
  // for kIdleReadTakeover) until the stream ends.
  void ReadLoop();
  // Reads one message and dispatches it; false when the stream ended (EndStream ran).
  // `*answered_reader`: it answered a request whose sender reads for it.
  // A caller reading for request `awaited` gets that request's invocations in `*run_here`
  // instead (see AwaitAnswer).
  bool ReadOne(bool on_reader_thread, bool* answered_reader, uint64_t awaited = 0,
               std::optional<v1::Response>* run_here = nullptr);
  // After the stream's last message: finishes it and fails every waiter.
  void EndStream();
  // Sets local_peer_ (local_mu_ held).
  void SetLocalPeer(LocalPath* path) ABSL_EXCLUSIVE_LOCKS_REQUIRED(local_mu_);
  // Sends a handler's answer from the callback thread. One too large for the server's
  // request cap goes as the callback's failure instead: native code gets zero at once and
  // the session's CALLBACK_ERROR event says why (unsent, it would wait for the call's
  // deadline).
  void SendCallbackReturn(v1::Request answer);
  // Hands one response to its waiter, or stores it as an event; WORKER_OUTPUT goes to the
  // output handler, on the reader thread (read by a caller, it is queued for that thread,
  // and the caller handles nothing else until the handler has had it). `*answered_reader` as
  // for ReadOne, and so are `awaited` and `run_here`.
  void Dispatch(v1::Response response, bool on_reader_thread, bool* answered_reader,
                uint64_t awaited, std::optional<v1::Response>* run_here);
  // Hands one WORKER_OUTPUT event to the output handler (or stderr).
  void HandleOutput(const v1::SessionEvent& event);
  // Waits until the reader thread has handed every WORKER_OUTPUT event a caller read to the
  // handler (not on the reader thread).
  void AwaitOutputHandled();
  // Writes one request; false if the stream can no longer be written.
  bool Write(const v1::Request& request);
  // Starts the reader thread, once.
  void StartReader();
  // Raises the generation to `generation` if that is newer.
  void NoteGeneration(uint64_t generation);
  // Opens a channel to the session's current worker after a loss (unless another thread
  // did); when that fails, no channel is wanted any more.
  void ReopenLocalPath();
  // Exchange of a top-level call, or of a memory or layout request the worker takes there,
  // through the same-host channel; nullopt when there is none (or it does not take it).
  std::optional<absl::StatusOr<v1::Response>> ExchangeLocally(v1::Request* request,
                                                              BorrowedBlocks borrowed);
  // Whether this thread runs a callback's handler (the callback thread, or a caller's
  // RunHere): the worker's thread that would read the channel waits for that handler.
  bool OnHandlerThread() const;
  // What the channel's turn needs to know of a request: whether it is a call, of which
  // function (0: not a call), with which timeout_ms (0: the session's).
  struct LocalRequest {
    bool call = false;
    uint64_t function = 0;
    uint32_t timeout_ms = 0;
  };
  // Takes the channel's turn for `request` and gives it an id, then runs `exchange(path, id,
  // deadline)` on the channel (an Answer, or LocalPath's errors); nullopt (nothing sent) when
  // there is no channel, `fits(path)` is false, the function was resolved at another worker's
  // address, or a request sent through the broker has not been answered yet. After a failure
  // on the channel, it is dropped and `failed` makes an Answer of what the broker would have
  // answered (LocalFailureAnswer). The turn's rules are ExchangeLocally's.
  template <typename Answer, typename FitsFn, typename ExchangeFn, typename FailedFn>
  std::optional<absl::StatusOr<Answer>> OnChannel(const LocalRequest& request, FitsFn fits,
                                                  ExchangeFn exchange, FailedFn failed);
  // Runs an invocation that came on the same-host channel `path` (LocalPath::InvocationRunner);
  // its handler's requests go there (ExchangeInInvocation) with `call_timeout`. Stamps the
  // generation into `message`'s addresses.
  absl::StatusOr<v1::CallbackReturn> RunLocalInvocation(v1::Response& message, LocalPath& path,
                                                        absl::Duration call_timeout,
                                                        absl::Time deadline);
  // The same for a scalar invocation (LocalPath::ScalarInvocationRunner): nullopt, nothing
  // run, unless the dispatcher takes it (CallbackDispatcher::RunScalar).
  std::optional<ScalarReturn> RunLocalScalarInvocation(const ScalarInvoke& invoke, LocalPath& path,
                                                       absl::Duration call_timeout,
                                                       absl::Time deadline);
  // Runs `run` as the handler of invocation `invocation` on `path` (the scope its nested
  // requests take, counted among the channel's running handlers).
  template <typename RunFn>
  auto InLocalInvocation(uint64_t invocation, LocalPath& path, absl::Duration call_timeout,
                         absl::Time deadline, RunFn run);
  // Takes the channel for one call (or for replacing it), waiting while another thread's
  // call is on it; false, without waiting, while a handler of that call runs (it may be
  // waiting for this thread). ReleaseChannel gives it back.
  bool TakeChannel();
  void ReleaseChannel();
  // The worker generation `function` is bound to (BindFunctionToGeneration), or 0.
  uint64_t BoundGeneration(uint64_t function);
  // What the result of `function` adds to a call's answer (ResultAnswerBytes), when known.
  std::optional<uint64_t> ResultBytesOf(uint64_t function);
  // Exchange of a request made by the handler of an invocation that came on the same-host
  // channel, on the handler's thread: through that channel, or refused.
  absl::StatusOr<v1::Response> ExchangeInInvocation(v1::Request* request, BorrowedBlocks borrowed);
  // The answer to request `id` (a call, or another request) that failed on the channel of
  // worker `generation` with `failure` (LocalPath::Exchange's errors), as the broker would
  // have answered it.
  v1::Response LocalFailureAnswer(uint64_t id, uint64_t generation, bool closed_by_worker,
                                  const absl::Status& failure, bool call);
  // The loss of worker `generation` as the broker reports it (its WORKER_LOST event),
  // waiting for it up to kLossReportWait.
  v1::Error LossOf(uint64_t generation);

  // The process the session belongs to, and how many fork()s its process had come out of
  // then (ForkCount): a child of fork() has a copy of its stream, its same-host channel and
  // its ids, none of which it may use (ForkedCopy).
  const pid_t owner_pid_ = getpid();
  const uint64_t owner_forks_ = ForkCount();
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Ffibox::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::Request, v1::Response>> stream_;
  std::thread reader_;  // started by the first Write (StartReader)
  std::once_flag reader_started_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<uint64_t> scalar_answers_read_{0};
  std::atomic<uint64_t> scalar_invocations_run_{0};
  std::atomic<uint64_t> worker_scalar_calls_{0};  // as the last exchange on a channel left it

  // Serialises writers; gRPC allows one outstanding write and no write after Finish.
  absl::Mutex write_mu_;
  bool writes_closed_ ABSL_GUARDED_BY(write_mu_) = false;

  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  absl::flat_hash_map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  size_t pending_read_by_senders_ ABSL_GUARDED_BY(mu_) = 0;
  size_t pending_unawaited_ ABSL_GUARDED_BY(mu_) = 0;  // of them, handlers' answers
  Reader reading_ ABSL_GUARDED_BY(mu_) = Reader::kNone;
  absl::Time unread_since_ ABSL_GUARDED_BY(mu_);  // when reading_ became kNone
  int loss_reports_awaited_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  // WORKER_OUTPUT events a caller read, for the reader thread to hand to the handler.
  std::vector<v1::SessionEvent> unsent_output_ ABSL_GUARDED_BY(mu_);
  uint64_t output_queued_ ABSL_GUARDED_BY(mu_) = 0;   // put in unsent_output_, ever
  uint64_t output_handled_ ABSL_GUARDED_BY(mu_) = 0;  // of those, handed to the handler
  // The last kKeptEvents unsolicited events, oldest first (a library may have its worker
  // send them without end: a freed callback called from its thread is an event each time).
  static constexpr size_t kKeptEvents = 1000;
  std::deque<v1::SessionEvent> events_ ABSL_GUARDED_BY(mu_);
  // The latest WORKER_LOST event's generation and error.
  uint64_t lost_generation_ ABSL_GUARDED_BY(mu_) = 0;
  v1::Error lost_error_ ABSL_GUARDED_BY(mu_);
  OutputHandler output_handler_ ABSL_GUARDED_BY(mu_);
  // Set when the stream can no longer carry requests (closed by us or broken).
  absl::Status ended_ ABSL_GUARDED_BY(mu_);
  bool reader_done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
  // The answers' deadlines (each Pending has its bound), and when their silence began, on
  // SteadyNow's clock (absl::ToUnixNanos): when the latest wait for answers began (a request
  // that found none waiting, once sent whole), and when the server's latest message came (or
  // a call on the same-host channel ended). Stored without the lock on the hot path; read by
  // LookForSilence.
  AnswerDeadlines answer_deadlines_;
  std::atomic<int64_t> wait_began_ns_{0};
  std::atomic<int64_t> heard_ns_{0};
  // The bound of the call on the same-host channel now (0: none), which requests through the
  // broker wait behind in the worker: it counts while they wait.
  std::atomic<int64_t> channel_call_bound_ns_{0};
  // The server sent nothing in time (LookForSilence): ended_ says so to every waiter.
  bool overdue_ ABSL_GUARDED_BY(mu_) = false;
  // Whether anything came on the stream (else its end means no session was opened).
  std::atomic<bool> read_any_{false};

  // The same-host channel (null: none), held by the thread whose call is on it (or that
  // replaces it), which took the channel first (TakeChannel).
  absl::Mutex local_mu_;
  std::unique_ptr<LocalPath> local_ ABSL_GUARDED_BY(local_mu_);
  // local_, for the reader thread to mark its worker gone when the stream ends while a call
  // holds local_mu_; set and cleared, with local_mu_ held, before local_ changes.
  absl::Mutex peer_mu_;
  LocalPath* local_peer_ ABSL_GUARDED_BY(peer_mu_) = nullptr;
  // Whose turn it is on the channel: taken by a call, and how many handlers of that call run.
  absl::Mutex turn_mu_;
  bool channel_taken_ ABSL_GUARDED_BY(turn_mu_) = false;
  int channel_handlers_ ABSL_GUARDED_BY(turn_mu_) = 0;
  absl::Mutex local_state_mu_;
  absl::Duration local_call_timeout_ ABSL_GUARDED_BY(local_state_mu_);
  absl::flat_hash_map<uint64_t, uint64_t> address_functions_ ABSL_GUARDED_BY(local_state_mu_);
  // Function handle -> what its result adds to a call's answer (Pending::result_bytes).
  absl::flat_hash_map<uint64_t, std::optional<uint64_t>> result_bytes_
      ABSL_GUARDED_BY(local_state_mu_);
  std::atomic<bool> local_enabled_{false};  // local_ != nullptr, read without the lock
  std::atomic<uint64_t> max_request_bytes_{0};
  std::atomic<bool> local_wanted_{false};  // open a channel to the next worker after a loss

  absl::Mutex close_mu_;  // makes Close idempotent and safe from several threads
  bool closed_ ABSL_GUARDED_BY(close_mu_) = false;
  absl::Status close_status_ ABSL_GUARDED_BY(close_mu_);

  // Last, so that it stops before the rest of the stream goes.
  CallbackDispatcher callbacks_;
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_SESSION_STREAM_H_

// Runs the callback invocations of one client session (CallbackInvoke) and serves nested ones.
//
// Invocations run on one dedicated callback thread per session, started with the first
// registered callback, or on a caller's thread: one that reads an invocation its own call
// made (CallbackInvoke.request_id) runs it with RunHere, having given up reading the stream
// (a handler's reentrant requests need the stream read to get their answers). Whoever reads
// hands every other invocation over with Deliver. While a handler runs, requests sent from
// its thread carry Request.invocation (the stream asks CurrentInvocation, which knows the
// handlers of every session that run on the thread, nested), and a blocking send on the
// callback thread serves further invocations while it waits (AwaitServing), so nested
// invocations, or a library thread's, are nested handler calls on the same stack.
//
// Owned by the SessionStream (session_stream.h), which sends the answers. Thread-safe.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_CALLBACK_DISPATCHER_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_CALLBACK_DISPATCHER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "client/cpp/internal/scalar_call.h"
#include "core/scalar_wire.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

class CallbackDispatcher {
 public:
  // Runs one invocation of a callback (`message` is the Response carrying the CallbackInvoke,
  // with the generation of the worker that made it) and returns the client's answer; the
  // dispatcher fills in the invocation id.
  using Handler = std::function<v1::CallbackReturn(const v1::Response& message)>;
  // Runs one invocation of a callback whose parameters are all scalars from their bits (as
  // many as the signature has parameters) and returns the client's answer: what Handler
  // answers for the same invocation as a message (core/scalar_wire.h).
  using ScalarHandler = std::function<ScalarReturn(absl::Span<const ScalarBits> args)>;
  // Sends `request` (a CallbackReturn) without waiting for its answer.
  using AnswerSender = std::function<void(v1::Request request)>;

  // Answers invocations through `send`.
  explicit CallbackDispatcher(AnswerSender send);
  CallbackDispatcher(const CallbackDispatcher&) = delete;
  CallbackDispatcher& operator=(const CallbackDispatcher&) = delete;
  // Stops (see Stop).
  ~CallbackDispatcher();

  // Runs `handler` for invocations of callback `id`, whose signature is `signature`, from
  // now on (replacing any earlier one), and `scalar` (when not null) for its scalar
  // invocations on the same-host channel; starts the callback thread on first use.
  void Register(uint64_t id, Handler handler, v1::Signature signature,
                ScalarHandler scalar = nullptr);
  // Forgets the handler of callback `id`; later invocations of it are answered with an error.
  void Unregister(uint64_t id);

  // Called by the stream's reader with a Response carrying a CallbackInvoke: queues it for the
  // callback thread, or, when no callback was ever registered (or after Stop), answers it
  // with an error at once.
  void Deliver(v1::Response message);

  // Worker `generation` is lost: its invocations still queued are dropped, and those that
  // come later are not run (no native code waits for them, and ffiboxd refuses their
  // answers).
  void ForgetGeneration(uint64_t generation);

  // Runs an invocation read by a thread waiting for the answer to the request that made it
  // (CallbackInvoke.request_id) on that thread, as the callback thread would, and sends the
  // answer; requests the handler sends carry the invocation. Refused as Deliver refuses.
  void RunHere(const v1::Response& message);

  // Runs one invocation that came on the same-host channel (`message` is the Response
  // carrying its CallbackInvoke) on the calling thread, and returns the answer with its
  // invocation id filled in. The worker sent the invoke straight to this client, so it is
  // checked as the broker checks one (CheckCallbackInvoke, against the signature the
  // callback was registered with): INTERNAL describing the violation. An invocation of a
  // callback without a handler is answered with an error, as on the stream.
  absl::StatusOr<v1::CallbackReturn> RunChecked(const v1::Response& message);

  // Runs a scalar invocation that came on the same-host channel on the calling thread, as
  // RunChecked runs it as a message, when its callback has a scalar handler and the
  // invocation passes RunChecked's checks (an id, as many arguments as the signature has
  // parameters); nullopt, nothing run, otherwise: the caller then runs it as a message.
  std::optional<ScalarReturn> RunScalar(const ScalarInvoke& invoke);

  // Whether the calling thread is this dispatcher's callback thread.
  bool OnCallbackThread() const;
  // The invocation the calling thread is serving for this dispatcher (on the callback thread
  // or in RunHere), or 0.
  uint64_t CurrentInvocation() const;
  // On the callback thread: waits for `answer`, running the invocations that arrive meanwhile,
  // and returns it. Whoever fulfils `answer` calls Wake afterwards.
  absl::StatusOr<v1::Response> AwaitServing(std::future<absl::StatusOr<v1::Response>>& answer);
  // Makes a waiting AwaitServing look at its answer again.
  void Wake();

  // Drops queued invocations and the handlers (they may hold the stream), and joins the
  // callback thread (detaches it when called from a handler: its loop ends on return).
  // Idempotent.
  void Stop();

 private:
  // Answers an invocation nobody can run (no callback was ever defined).
  void Refuse(const v1::CallbackInvoke& invoke);
  // Body of the callback thread: runs queued invocations until Stop.
  void Loop();
  // Runs one invocation's handler (or refuses it) and sends the CallbackReturn.
  void Run(const v1::Response& message);
  // Runs `handler` (null: the callback has none) for the invocation `message` carries and
  // returns its answer.
  static v1::CallbackReturn Answer(const Handler* handler, const v1::Response& message);

  struct Registered {
    Handler handler;
    v1::Signature signature;
    ScalarHandler scalar;
  };
  // The handler registered for callback `id`, or null.
  std::shared_ptr<const Registered> Find(uint64_t id);

  const AnswerSender send_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<const Registered>> handlers_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::Response> invokes_ ABSL_GUARDED_BY(mu_);  // waiting for the callback thread
  std::atomic<uint64_t> lost_generation_{0};               // ForgetGeneration's latest
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // started under mu_; joined by Stop
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_CALLBACK_DISPATCHER_H_

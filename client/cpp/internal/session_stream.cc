#include "client/cpp/internal/session_stream.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/internal/generation_stamp.h"
#include "core/encoding_limits.h"
#include "core/errors.h"
#include "core/local_channel.h"
#include "core/thread_name.h"

namespace ffibox {
namespace client_internal {
namespace {

// How long Close waits for the server to answer CloseSession and then to end the stream.
constexpr auto kCloseAnswerWait = std::chrono::seconds(5);
constexpr absl::Duration kStreamEndWait = absl::Seconds(5);
// How long the same-host door may take to hand a channel over; how much longer than the
// session's call timeout a call on the channel waits (the broker ends an overrun first); how
// long a call that found its channel ended waits for the broker's report of the loss.
constexpr absl::Duration kLocalDoorWait = absl::Seconds(5);
constexpr absl::Duration kLocalAnswerMargin = absl::Seconds(5);
constexpr absl::Duration kLossReportWait = absl::Seconds(5);
// How long the stream may go unread between calls before the reader thread reads it.
constexpr absl::Duration kIdleReadTakeover = absl::Milliseconds(20);

bool IsReady(const std::future<absl::StatusOr<v1::Response>>& answer) {
  return answer.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
}

// The invocation that came on a same-host channel whose handler the calling thread runs
// (innermost first; null outside any): its requests go to that channel, answered by
// `deadline` (the call's that the invocation came in).
struct LocalInvocationScope {
  const SessionStream* stream;
  LocalPath* path;
  uint64_t invocation;
  absl::Duration call_timeout;
  absl::Time deadline;
  const LocalInvocationScope* outer;
};
thread_local const LocalInvocationScope* t_local_invocation = nullptr;

// The innermost invocation the calling thread serves for `stream` on its channel, or null
// (a handler of one session's channel may call another session, whose handler may call the
// first again).
const LocalInvocationScope* LocalInvocationOf(const SessionStream* stream) {
  for (const LocalInvocationScope* scope = t_local_invocation; scope != nullptr;
       scope = scope->outer) {
    if (scope->stream == stream) return scope;
  }
  return nullptr;
}

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share their numbering.
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// The size of `request` as written, which the server checks against its cap: with the id
// and the invocation SendAsync sets after its own check, counted at their largest (a tag
// and a ten-byte varint each).
uint64_t WrittenBytes(const v1::Request& request) {
  constexpr uint64_t kLargestVarintField = 11;
  uint64_t bytes = request.ByteSizeLong();
  if (request.id() == 0) bytes += kLargestVarintField;
  if (request.invocation() == 0 && !request.has_callback_return()) bytes += kLargestVarintField;
  return bytes;
}

}  // namespace

SessionStream::SessionStream(std::shared_ptr<grpc::Channel> channel, absl::Duration answer_margin)
    : channel_(std::move(channel)),
      stub_(v1::Ffibox::NewStub(channel_)),
      answer_deadlines_(answer_margin),
      callbacks_([this](v1::Request answer) { SendCallbackReturn(std::move(answer)); }) {}

void SessionStream::SendCallbackReturn(v1::Request answer) {
  const uint64_t max_bytes = max_request_bytes_.load();
  if (const uint64_t bytes = WrittenBytes(answer); max_bytes != 0 && bytes > max_bytes) {
    v1::CallbackReturn* failed = answer.mutable_callback_return();
    const uint64_t invocation = failed->invocation();
    failed->Clear();
    failed->set_invocation(invocation);
    failed->set_error(absl::StrCat("the callback's answer is too large to send: ",
                                   RequestTooLarge(bytes, max_bytes).message()));
  }
  // Answered with done, which nothing waits for: no reader is woken for it (read_by_sender),
  // whoever reads next takes it.
  SendAsync(&answer, /*read_by_sender=*/true);
}

absl::StatusOr<std::shared_ptr<SessionStream>> SessionStream::Start(
    std::shared_ptr<grpc::Channel> channel, absl::Duration answer_margin) {
  std::shared_ptr<SessionStream> stream(new SessionStream(std::move(channel), answer_margin));
  // The stream's headers go out with its first message (the open): starting the stream
  // does not wait for a write of its own.
  stream->context_.set_initial_metadata_corked(true);
  stream->stream_ = stream->stub_->Session(&stream->context_);
  if (stream->stream_ == nullptr) {
    return absl::UnavailableError("could not start an ffibox Session stream");
  }
  SessionStream* raw = stream.get();
  {
    absl::MutexLock lock(&raw->mu_);
    raw->unread_since_ = absl::Now();  // the open's caller reads its answer itself
  }
  AnswerWatchdog::Global().Watch(raw);
  return stream;
}

absl::Time SessionStream::LookForSilence(absl::Time now, bool held_up) {
  {
    absl::MutexLock lock(&mu_);
    if (!ended_.ok()) return absl::InfiniteFuture();            // nothing more is waited for
    if (held_up) wait_began_ns_.store(absl::ToUnixNanos(now));  // the silence was not the server's
    // A call on the same-host channel counts while requests through the broker wait: they
    // wait behind it in the worker. Alone it has its own deadline (ExchangeLocally).
    absl::Duration longest = absl::ZeroDuration();
    if (!pending_.empty()) {
      // Acquire: once it reads the bound of a call that ended as cleared, the end's time
      // below is read too.
      longest = absl::Nanoseconds(channel_call_bound_ns_.load(std::memory_order_acquire));
    }
    for (const auto& [id, pending] : pending_) longest = std::max(longest, pending.bound);
    const absl::Time since = absl::FromUnixNanos(std::max(wait_began_ns_.load(), heard_ns_.load()));
    const AnswerDeadlines::Look look = answer_deadlines_.LookAt(now, since, longest);
    if (!look.overdue) return look.look_again;
    overdue_ = true;
    ended_ = absl::DeadlineExceededError(absl::StrCat(
        "ffiboxd sent nothing for ",
        absl::FormatDuration(absl::Trunc(look.silence, absl::Milliseconds(1))),
        " while requests waited for answers due within ", absl::FormatDuration(look.bound),
        " (their deadline in the worker plus the answer margin of ",
        absl::FormatDuration(answer_deadlines_.margin()),
        "); the session is closed: open a new one once the server answers again"));
  }
  // The reader (a caller or the reader thread) sees the stream end and fails every waiter
  // with ended_; the server, if it still runs, ends the session's worker.
  context_.TryCancel();
  return absl::InfiniteFuture();
}

void SessionStream::StartReader() {
  std::call_once(reader_started_, [this] {
    reader_ = std::thread([this] {
      NameThisThread("ffibox-stream");  // top -H, perf and /proc tell it apart
      ReadLoop();
    });
  });
}

SessionStream::~SessionStream() {
  AnswerWatchdog::Global().Forget(this);
  Close().IgnoreError();
  if (reader_.joinable()) reader_.join();
}

std::future<absl::StatusOr<v1::Response>> SessionStream::SendAsync(v1::Request request) {
  return SendAsync(&request);
}

std::future<absl::StatusOr<v1::Response>> SessionStream::SendAsync(v1::Request* request) {
  return SendAsync(request, /*read_by_sender=*/false);
}

namespace {
std::atomic<uint64_t> forks{0};
}  // namespace

uint64_t SessionStream::ForkCount() {
  static const bool counting = [] {
    return pthread_atfork(nullptr, nullptr,
                          [] { forks.fetch_add(1, std::memory_order_relaxed); }) == 0;
  }();
  (void)counting;
  return forks.load(std::memory_order_relaxed);
}

absl::Status SessionStream::ForkedCopy() const {
  if (forks.load(std::memory_order_relaxed) == owner_forks_) return absl::OkStatus();
  return ErrorStatus(v1::FAILED_PRECONDITION,
                     absl::StrCat("this ffibox session belongs to process ", owner_pid_,
                                  ", which forked this one: sessions do not cross fork(); open "
                                  "one in this process (docs/cpp.md)"));
}

std::future<absl::StatusOr<v1::Response>> SessionStream::SendAsync(v1::Request* request,
                                                                   bool read_by_sender) {
  std::promise<absl::StatusOr<v1::Response>> promise;
  std::future<absl::StatusOr<v1::Response>> future = promise.get_future();
  if (absl::Status forked = ForkedCopy(); !forked.ok()) {
    promise.set_value(std::move(forked));
    return future;
  }
  const LocalInvocationScope* local_invocation = LocalInvocationOf(this);
  if (local_invocation != nullptr && !request->has_close() && !request->has_ping()) {
    if (local_invocation->path->lost()) {
      // No thread of the worker waits for this invocation any more (the call's deadline
      // passed, or it crashed): the loss, as a request on the channel reports it.
      v1::Response lost;
      lost.set_generation(local_invocation->path->generation());
      *lost.mutable_error() = LossOf(local_invocation->path->generation());
      promise.set_value(std::move(lost));
      return future;
    }
    if (request->invocation() == 0 && local_invocation->path->channel_invocations() &&
        AllowedThroughBrokerInChannelInvocation(request->op_case())) {
      // The broker forwards it, and the worker's thread that waits on the channel for the
      // handler runs it inside the invocation.
      request->set_channel_invocation(local_invocation->invocation);
    } else {
      // The broker knows nothing of this invocation, and the worker's thread that would run
      // the request waits for the handler: it could only wait until the call's timeout.
      v1::Response refused;
      refused.set_generation(generation());
      *refused.mutable_error() = ToProtoError(ErrorStatus(
          v1::FAILED_PRECONDITION,
          "inside a callback that native code called during a call on the same-host "
          "channel, only calls, memory reads and writes and layouts (on the channel, waiting "
          "for each) and, when the server takes them, loads, look-ups, callback definitions "
          "and allocations can be sent; send this request outside the handler"));
      promise.set_value(std::move(refused));
      return future;
    }
  }
  const uint64_t max_bytes = max_request_bytes_.load();
  if (const uint64_t bytes = WrittenBytes(*request); max_bytes != 0 && bytes > max_bytes) {
    // Not written (it may have fitted the same-host channel's area, not a message).
    v1::Response refused;
    refused.set_generation(generation());
    *refused.mutable_error() = ToProtoError(RequestTooLarge(bytes, max_bytes));
    promise.set_value(std::move(refused));
    return future;
  }
  const absl::Duration bound = answer_deadlines_.BoundOf(*request);
  uint64_t id;
  bool began_wait;
  {
    absl::MutexLock lock(&mu_);
    if (!ended_.ok()) {
      promise.set_value(ended_);
      return future;
    }
    id = next_id_++;
    began_wait = pending_.empty();
    if (began_wait) wait_began_ns_.store(SteadyNanos(), std::memory_order_relaxed);
    Pending& pending =
        pending_
            .emplace(id, Pending{std::move(promise), read_by_sender, bound,
                                 !request->has_ping() && !request->has_parse_declaration() &&
                                     !request->has_callback_return()})
            .first->second;
    if (request->has_resolve_function()) {
      pending.resolves = true;
      pending.result_bytes = ResultAnswerBytes(request->resolve_function().signature());
    }
    pending.awaited = !(read_by_sender && request->has_callback_return());
    pending_read_by_senders_ += read_by_sender;
    pending_unawaited_ += !pending.awaited;
  }
  request->set_id(id);
  // Inside a handler, requests run inside its invocation (the native caller waits for them).
  if (request->invocation() == 0 && request->channel_invocation() == 0 &&
      !request->has_callback_return()) {
    request->set_invocation(callbacks_.CurrentInvocation());
  }
  // A write fails only once the stream is over; the reader then ends too and fails every
  // pending request with the stream's real ending (e.g. the door's RESOURCE_EXHAUSTED or
  // UNAUTHENTICATED), which a write failure alone cannot know. So the promise stays pending.
  (void)Write(*request);
  // A large request's time on the wire, or behind another's write, is not the server's
  // silence: the wait begins once it was sent.
  if (began_wait) wait_began_ns_.store(SteadyNanos(), std::memory_order_relaxed);
  return future;
}

absl::StatusOr<v1::Response> SessionStream::Exchange(v1::Request request, BorrowedBlocks borrowed) {
  return Exchange(&request, borrowed);
}

absl::StatusOr<v1::Response> SessionStream::Exchange(v1::Request* request,
                                                     BorrowedBlocks borrowed) {
  if (LocalInvocationOf(this) != nullptr && AllowedInChannelInvocation(*request)) {
    if (request->has_call() && request->call().function_request() != 0) {
      // Only the broker knows which function the request names, and the worker's answer to
      // that resolve waits behind the call whose callback this is.
      return ErrorStatus(v1::FAILED_PRECONDITION,
                         "a function whose resolve has not been answered cannot be called from "
                         "a callback that came on the same-host channel");
    }
    return ExchangeInInvocation(request, borrowed);
  }
  // A call naming its function by a resolve request still in flight goes to the broker:
  // only the broker knows which function that names.
  // Not from a handler (on the callback thread, or on a caller's, RunHere): the worker's
  // thread that would read the channel waits for that handler.
  const bool top_level =
      request->invocation() == 0 && request->channel_invocation() == 0 && !OnHandlerThread();
  const bool local_call =
      top_level && request->has_call() && request->call().function_request() == 0;
  // Memory and layout requests too, where the worker takes them (after a loss they wait
  // for a call to open the next worker's channel).
  if (local_call || (top_level && !request->has_call() && AllowedInChannelInvocation(*request) &&
                     local_enabled_.load())) {
    std::optional<absl::StatusOr<v1::Response>> local = ExchangeLocally(request, borrowed);
    if (local.has_value()) return *std::move(local);
  }
  if (request->has_call()) CopyBorrowedIn(request->mutable_call(), borrowed);
  // The callback thread must keep running invocations while it waits: it never reads.
  const bool on_callback_thread = callbacks_.OnCallbackThread();
  std::future<absl::StatusOr<v1::Response>> answer =
      SendAsync(request, /*read_by_sender=*/!on_callback_thread);
  absl::StatusOr<v1::Response> response =
      on_callback_thread
          ? callbacks_.AwaitServing(answer)
          // Only a call's native code calls back, so only a call's or a batch's caller runs
          // handlers (none of them while it holds the same-host channel's turn).
          : AwaitAnswer(answer, request->has_call() || request->has_batch() ? request->id() : 0);
  // After a loss: once the next worker answered a call, a channel to it.
  if (local_call && local_wanted_.load() && !local_enabled_.load() && response.ok() &&
      !response->has_error()) {
    ReopenLocalPath();
  }
  return response;
}

absl::StatusOr<v1::Response> SessionStream::Send(v1::Request request, BorrowedBlocks borrowed) {
  absl::StatusOr<v1::Response> response = Exchange(std::move(request), borrowed);
  if (!response.ok()) return response.status();
  if (response->has_error()) return ErrorStatus(response->error());
  return response;
}

absl::StatusOr<v1::Response> SessionStream::SendExpecting(v1::Request request,
                                                          v1::Response::ResultCase expected,
                                                          BorrowedBlocks borrowed) {
  const v1::Request::OpCase op = request.op_case();
  return Expect(op, Exchange(std::move(request), borrowed), expected);
}

absl::StatusOr<v1::Response> SessionStream::Expect(v1::Request::OpCase op,
                                                   absl::StatusOr<v1::Response> response,
                                                   v1::Response::ResultCase expected) {
  if (!response.ok()) return response.status();
  if (response->has_error()) return ErrorStatus(response->error());
  if (response->result_case() == expected) return response;
  const google::protobuf::FieldDescriptor* asked = v1::Request::descriptor()->FindFieldByNumber(op);
  const google::protobuf::FieldDescriptor* wanted =
      v1::Response::descriptor()->FindFieldByNumber(expected);
  return ErrorStatus(v1::INTERNAL,
                     absl::StrCat("the server answered ", asked != nullptr ? asked->name() : "?",
                                  " without ", wanted != nullptr ? wanted->name() : "?"));
}

absl::Status SessionStream::EnableLocalPath(absl::Duration call_timeout, bool unless_enabled) {
  if (absl::Status forked = ForkedCopy(); !forked.ok()) return forked;
  if (LocalInvocationOf(this) != nullptr) {
    return ErrorStatus(v1::FAILED_PRECONDITION,
                       "a same-host channel cannot be opened inside a callback that came on one");
  }
  // No call is on an earlier channel while the worker replaces it with this one.
  if (!TakeChannel()) {
    return absl::AbortedError("a callback of a call on the same-host channel is running");
  }
  absl::Cleanup release = [this] { ReleaseChannel(); };
  absl::MutexLock local_lock(&local_mu_);
  if (unless_enabled && local_ != nullptr) return absl::OkStatus();
  v1::Request request;
  request.mutable_open_local_channel()->set_callbacks(true);
  absl::StatusOr<v1::Response> response =
      SendExpecting(std::move(request), v1::Response::kLocalChannel);
  if (!response.ok()) return response.status();
  absl::StatusOr<std::unique_ptr<LocalPath>> local = LocalPath::Connect(
      response->local_channel(), kLocalDoorWait,
      [this, call_timeout](v1::Response& message, LocalPath& path, absl::Time deadline) {
        return RunLocalInvocation(message, path, call_timeout, deadline);
      },
      [this, call_timeout](const ScalarInvoke& invoke, LocalPath& path, absl::Time deadline) {
        return RunLocalScalarInvocation(invoke, path, call_timeout, deadline);
      });
  if (!local.ok()) return local.status();
  SetLocalPeer(nullptr);
  local_ = *std::move(local);
  SetLocalPeer(local_.get());
  {
    absl::MutexLock lock(&local_state_mu_);
    local_call_timeout_ = call_timeout;
  }
  local_enabled_.store(true);
  local_wanted_.store(true);
  return absl::OkStatus();
}

void SessionStream::ReopenLocalPath() {
  absl::Duration timeout;
  {
    absl::MutexLock lock(&local_state_mu_);
    timeout = local_call_timeout_;
  }
  // Another thread may have opened it meanwhile: EnableLocalPath looks again. While a
  // handler runs on the channel, a later call tries again.
  absl::Status opened = EnableLocalPath(timeout, /*unless_enabled=*/true);
  if (!opened.ok() && !absl::IsAborted(opened)) local_wanted_.store(false);
}

bool SessionStream::TakeChannel() {
  absl::MutexLock lock(&turn_mu_);
  auto free_or_serving = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(turn_mu_) {
    return !channel_taken_ || channel_handlers_ > 0;
  };
  turn_mu_.Await(absl::Condition(&free_or_serving));
  if (channel_taken_) return false;
  channel_taken_ = true;
  return true;
}

void SessionStream::ReleaseChannel() {
  absl::MutexLock lock(&turn_mu_);
  channel_taken_ = false;
}

bool SessionStream::local_path_enabled() const { return local_enabled_.load(); }

uint64_t SessionStream::worker_scalar_calls() const {
  return worker_scalar_calls_.load(std::memory_order_relaxed);
}

bool SessionStream::OnHandlerThread() const {
  return callbacks_.OnCallbackThread() || callbacks_.CurrentInvocation() != 0;
}

void SessionStream::BindFunctionToGeneration(uint64_t function, uint64_t generation) {
  absl::MutexLock lock(&local_state_mu_);
  address_functions_[function] = generation;
}

uint64_t SessionStream::BoundGeneration(uint64_t function) {
  absl::MutexLock lock(&local_state_mu_);
  const auto bound = address_functions_.find(function);
  return bound != address_functions_.end() ? bound->second : 0;
}

std::optional<uint64_t> SessionStream::ResultBytesOf(uint64_t function) {
  absl::MutexLock lock(&local_state_mu_);
  const auto found = result_bytes_.find(function);
  return found != result_bytes_.end() ? found->second : std::nullopt;
}

template <typename Answer, typename FitsFn, typename ExchangeFn, typename FailedFn>
std::optional<absl::StatusOr<Answer>> SessionStream::OnChannel(const LocalRequest& request,
                                                               FitsFn fits, ExchangeFn exchange,
                                                               FailedFn failed) {
  // Before any lock: in a child of fork(), another thread may have held it.
  if (absl::Status forked = ForkedCopy(); !forked.ok()) return absl::StatusOr<Answer>(forked);
  // One call at a time on the channel; while a handler of the call on it runs, that handler
  // may be waiting for this thread: the call goes through the broker then (which queues it
  // behind the call on the channel and ends both at their deadlines).
  if (!TakeChannel()) return std::nullopt;
  absl::Cleanup release = [this] { ReleaseChannel(); };
  uint64_t bound = 0;
  absl::Duration call_timeout;
  {
    absl::MutexLock lock(&local_state_mu_);
    const auto found =
        request.call ? address_functions_.find(request.function) : address_functions_.end();
    if (found != address_functions_.end()) bound = found->second;
    call_timeout = local_call_timeout_;
  }
  uint64_t id = 0;
  uint64_t generation = 0;
  absl::Status failure;
  bool closed_by_worker = false;
  {
    absl::MutexLock local_lock(&local_mu_);
    if (local_ == nullptr || !fits(*local_)) return std::nullopt;
    if (bound != 0 && bound != local_->generation()) return std::nullopt;
    {
      absl::MutexLock lock(&mu_);
      if (!ended_.ok()) return absl::StatusOr<Answer>(ended_);
      for (const auto& [pending_id, pending] : pending_) {
        // Sent through the broker and not answered yet (SendAsync: a write, then this read),
        // it may not have reached the worker, which would run this one first: this goes
        // through the broker too, behind it, in the order they were sent.
        if (pending.reaches_worker) return std::nullopt;
      }
      id = next_id_++;
    }
    // A request other than a call has the session's timeout, at the broker as here.
    const absl::Duration timeout =
        request.timeout_ms != 0 ? absl::Milliseconds(request.timeout_ms) : call_timeout;
    // Requests through the broker wait behind this call in the worker, and their deadlines
    // there start when it ends.
    channel_call_bound_ns_.store(absl::ToInt64Nanoseconds(answer_deadlines_.BoundOfCall(timeout)),
                                 std::memory_order_relaxed);
    const absl::Time deadline = absl::Now() + timeout + kLocalAnswerMargin;
    absl::StatusOr<Answer> answer = exchange(*local_, id, deadline);
    heard_ns_.store(SteadyNanos(), std::memory_order_relaxed);
    channel_call_bound_ns_.store(0, std::memory_order_release);
    worker_scalar_calls_.store(local_->worker_scalar_calls(), std::memory_order_relaxed);
    if (answer.ok()) {
      NoteGeneration(local_->generation());
      return answer;
    }
    // The channel is done with: later calls go through the broker.
    generation = local_->generation();
    closed_by_worker = local_->closed_by_worker();
    failure = answer.status();
    SetLocalPeer(nullptr);
    local_.reset();
    local_enabled_.store(false);
    // Only a loss is followed by a channel to the next worker; a worker that answers wrongly,
    // late or not at all, or closed the channel itself, gets none again.
    if (!absl::IsFailedPrecondition(failure) &&
        (!absl::IsUnavailable(failure) || closed_by_worker)) {
      local_wanted_.store(false);
    }
  }
  // Not sent whole: the call did not run; it goes through the broker like any other.
  if (absl::IsFailedPrecondition(failure)) return std::nullopt;
  return failed(LocalFailureAnswer(id, generation, closed_by_worker, failure, request.call));
}

std::optional<absl::StatusOr<v1::Response>> SessionStream::ExchangeLocally(
    v1::Request* request, BorrowedBlocks borrowed) {
  const bool call = request->has_call();
  if (call && local_wanted_.load() && !local_enabled_.load() && max_request_bytes_.load() != 0) {
    // After a loss, a call that does not fit a message opens the channel to the next worker
    // (the broker starts it) instead of waiting for a call on the stream to do so.
    if (RequestBytes(*request, borrowed) > max_request_bytes_.load()) ReopenLocalPath();
  }
  const LocalRequest local{call, call ? request->call().function() : 0,
                           request->call().timeout_ms()};
  return OnChannel<v1::Response>(
      local,
      [&](const LocalPath& path) {
        return !path.TooLarge(*request, borrowed) && (call || path.memory_requests());
      },
      [&](LocalPath& path, uint64_t id, absl::Time deadline) {
        request->set_id(id);
        absl::StatusOr<v1::Response> response =
            call ? path.Exchange(request, borrowed, deadline,
                                 ResultBytesOf(request->call().function()))
                 : path.ExchangeNested(*request, deadline);
        if (response.ok()) StampGeneration(&*response);
        return response;
      },
      [](v1::Response failure) { return failure; });
}

std::optional<absl::StatusOr<LocalPath::ScalarAnswer>> SessionStream::CallScalarLocally(
    const ScalarCall& call) {
  // Only a top-level call, off the threads that run handlers (as Exchange's local calls), and
  // not at all without a channel (a session over gRPC, or after a loss until the next worker
  // answered a call through the broker): no lock taken for that.
  if (!local_enabled_.load() || LocalInvocationOf(this) != nullptr || OnHandlerThread()) {
    return std::nullopt;
  }
  return OnChannel<LocalPath::ScalarAnswer>(
      LocalRequest{true, call.function, call.timeout_ms},
      // Too large for a frame: through the broker, which refuses it; the channel stays.
      [&call](const LocalPath& path) { return !path.TooLarge(call); },
      [&](LocalPath& path, uint64_t id, absl::Time deadline) {
        absl::StatusOr<LocalPath::ScalarAnswer> answer = path.ExchangeScalar(id, call, deadline);
        if (answer.ok() && answer->read()) {
          scalar_answers_read_.fetch_add(1, std::memory_order_relaxed);
        }
        if (answer.ok() && answer->response.has_value()) StampGeneration(&*answer->response);
        return answer;
      },
      [](v1::Response failure) {
        LocalPath::ScalarAnswer answer;
        answer.response = std::move(failure);
        return answer;
      });
}

v1::Response SessionStream::LocalFailureAnswer(uint64_t id, uint64_t generation,
                                               bool closed_by_worker, const absl::Status& failure,
                                               bool call) {
  const absl::string_view what = call ? "call" : "request";
  v1::Response failed;
  failed.set_id(id);
  failed.set_generation(generation);
  if (absl::IsUnavailable(failure) && !closed_by_worker) {
    *failed.mutable_error() = LossOf(generation);  // the worker was lost
  } else if (absl::IsUnavailable(failure)) {
    *failed.mutable_error() = ToProtoError(ErrorStatus(
        v1::INTERNAL, absl::StrCat("the worker closed the same-host channel during the ", what)));
  } else if (absl::IsDeadlineExceeded(failure)) {
    *failed.mutable_error() = ToProtoError(
        ErrorStatus(v1::CALL_TIMEOUT,
                    absl::StrCat("the ", what, " on the same-host channel got no answer in time")));
  } else {
    *failed.mutable_error() = ToProtoError(failure);
  }
  return failed;
}

template <typename RunFn>
auto SessionStream::InLocalInvocation(uint64_t invocation, LocalPath& path,
                                      absl::Duration call_timeout, absl::Time deadline, RunFn run) {
  const LocalInvocationScope scope{this,         &path,    invocation,
                                   call_timeout, deadline, t_local_invocation};
  t_local_invocation = &scope;
  {
    absl::MutexLock lock(&turn_mu_);
    ++channel_handlers_;
  }
  auto answer = run();
  {
    absl::MutexLock lock(&turn_mu_);
    --channel_handlers_;
  }
  t_local_invocation = scope.outer;
  return answer;
}

absl::StatusOr<v1::CallbackReturn> SessionStream::RunLocalInvocation(v1::Response& message,
                                                                     LocalPath& path,
                                                                     absl::Duration call_timeout,
                                                                     absl::Time deadline) {
  StampGeneration(&message);
  return InLocalInvocation(message.callback_invoke().invocation(), path, call_timeout, deadline,
                           [&] { return callbacks_.RunChecked(message); });
}

std::optional<ScalarReturn> SessionStream::RunLocalScalarInvocation(const ScalarInvoke& invoke,
                                                                    LocalPath& path,
                                                                    absl::Duration call_timeout,
                                                                    absl::Time deadline) {
  // No address among its arguments: nothing to stamp.
  std::optional<ScalarReturn> answer =
      InLocalInvocation(invoke.invocation, path, call_timeout, deadline,
                        [&] { return callbacks_.RunScalar(invoke); });
  if (answer.has_value()) scalar_invocations_run_.fetch_add(1, std::memory_order_relaxed);
  return answer;
}

absl::StatusOr<v1::Response> SessionStream::ExchangeInInvocation(v1::Request* request,
                                                                 BorrowedBlocks borrowed) {
  const LocalInvocationScope& scope = *LocalInvocationOf(this);
  if (request->has_call()) {
    // What the broker answers for a function resolved at an address of another worker.
    const uint64_t bound = BoundGeneration(request->call().function());
    if (bound != 0 && bound != scope.path->generation()) {
      v1::Response stale;
      stale.set_generation(scope.path->generation());
      *stale.mutable_error() = ToProtoError(ErrorStatus(
          v1::STALE_HANDLE,
          absl::StrCat("the address belongs to worker generation ", bound,
                       "; the session's worker is generation ", scope.path->generation())));
      return stale;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (!ended_.ok()) return ended_;
    request->set_id(next_id_++);
  }
  request->set_invocation(scope.invocation);
  const absl::Duration timeout = request->has_call() && request->call().timeout_ms() != 0
                                     ? absl::Milliseconds(request->call().timeout_ms())
                                     : scope.call_timeout;
  // Never past the call the invocation came in: the broker ends that one at its deadline.
  const absl::Time deadline = std::min(absl::Now() + timeout + kLocalAnswerMargin, scope.deadline);
  absl::StatusOr<v1::Response> response =
      request->has_call() ? scope.path->Exchange(request, borrowed, deadline,
                                                 ResultBytesOf(request->call().function()))
                          : scope.path->ExchangeNested(*request, deadline);
  if (response.ok()) {
    StampGeneration(&*response);
    return response;
  }
  // The channel is done with; the call that waits for this handler ends with the same
  // failure once the handler returns.
  return LocalFailureAnswer(request->id(), scope.path->generation(), scope.path->closed_by_worker(),
                            response.status(), request->has_call());
}

v1::Error SessionStream::LossOf(uint64_t generation) {
  absl::MutexLock lock(&mu_);
  auto reported = [this, generation]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return lost_generation_ >= generation || !ended_.ok();
  };
  ++loss_reports_awaited_;  // the reader thread reads meanwhile
  const bool in_time = mu_.AwaitWithTimeout(absl::Condition(&reported), kLossReportWait);
  --loss_reports_awaited_;
  if (in_time && lost_generation_ == generation) {
    return lost_error_;
  }
  if (!ended_.ok()) {  // the session was closed meanwhile, or its stream broke
    v1::Error ended = ToProtoError(ended_);
    // The client's own code for a stream that ended, as a call on the stream reports it
    // (which no server sends, so ToProtoError does not give it).
    if (absl::IsUnavailable(ended_)) ended.set_code(v1::UNAVAILABLE);
    return ended;
  }
  return ToProtoError(ErrorStatus(
      v1::INTERNAL, "the same-host channel ended and ffiboxd reported no loss of its worker"));
}

void SessionStream::SetOutputHandler(OutputHandler handler) {
  absl::MutexLock lock(&mu_);
  output_handler_ = std::move(handler);
}

std::vector<v1::SessionEvent> SessionStream::TakeEvents() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::SessionEvent> events(std::make_move_iterator(events_.begin()),
                                       std::make_move_iterator(events_.end()));
  events_.clear();
  return events;
}

absl::Status SessionStream::Close() {
  // In a child of fork(), nothing of the parent's stream is touched (Session leaves this
  // copy undestroyed there).
  if (absl::Status forked = ForkedCopy(); !forked.ok()) return forked;
  absl::MutexLock close_lock(&close_mu_);
  if (closed_) return close_status_;
  closed_ = true;

  absl::Status answer_status;
  bool stream_alive;
  {
    absl::MutexLock lock(&mu_);
    stream_alive = ended_.ok();
    closing_ = true;  // the reader thread reads to the stream's end
  }
  if (stream_alive) {
    v1::Request request;
    request.mutable_close();
    std::future<absl::StatusOr<v1::Response>> answer = SendAsync(std::move(request));
    if (answer.wait_for(kCloseAnswerWait) == std::future_status::ready) {
      absl::StatusOr<v1::Response> response = answer.get();
      // A missing answer because the server ended the stream is judged by its final status.
      if (response.ok() && response->has_error()) answer_status = ErrorStatus(response->error());
    } else {
      answer_status = absl::DeadlineExceededError("ffiboxd did not answer CloseSession");
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (ended_.ok()) ended_ = absl::FailedPreconditionError("the ffibox session is closed");
  }
  {
    absl::MutexLock lock(&write_mu_);
    if (!writes_closed_) {
      writes_closed_ = true;
      stream_->WritesDone();
    }
  }
  StartReader();  // a stream never written to has its end read too
  bool cancelled = false;
  {
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&reader_done_), kStreamEndWait)) {
      context_.TryCancel();
      cancelled = true;
    }
  }
  if (reader_.joinable()) reader_.join();
  callbacks_.Stop();

  absl::Status final_status;
  absl::Status expired;  // what ended the stream when the server was overdue
  {
    absl::MutexLock lock(&mu_);
    final_status = final_status_;
    if (overdue_) expired = ended_;
    // The reader may have seen the server end the stream first; after an explicit close,
    // later requests are told that, whatever ended the stream.
    ended_ = absl::FailedPreconditionError("the ffibox session is closed");
  }
  close_status_ = answer_status;
  if (!expired.ok()) {
    close_status_ = expired;  // not the cancellation that followed
  } else if (close_status_.ok() && !final_status.ok() &&
             !(cancelled && final_status.code() == absl::StatusCode::kCancelled)) {
    close_status_ = final_status;
  }
  if (close_status_.ok() && cancelled) {
    close_status_ = absl::DeadlineExceededError("ffiboxd did not end the session stream");
  }
  return close_status_;
}

absl::StatusOr<v1::Response> SessionStream::AwaitAnswer(
    std::future<absl::StatusOr<v1::Response>>& answer, uint64_t id) {
  for (;;) {
    std::optional<v1::Response> handed;
    {
      absl::MutexLock lock(&mu_);
      auto handed_here = [this, id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        auto it = pending_.find(id);
        return it != pending_.end() && it->second.invoke_here.has_value();
      };
      auto answered_or_unread = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return IsReady(answer) || handed_here() || (reading_ == Reader::kNone && !reader_done_);
      };
      mu_.Await(absl::Condition(&answered_or_unread));
      if (IsReady(answer)) break;
      if (handed_here()) {
        handed.swap(pending_.find(id)->second.invoke_here);
      } else {
        reading_ = Reader::kCaller;
      }
    }
    if (handed.has_value()) {
      callbacks_.RunHere(*handed);
      continue;
    }
    // Read until this answer is in; the others' go to their waiters as the reader thread
    // would hand them over.
    bool going_on = true;
    bool answered_reader = false;
    std::optional<v1::Response> run_here;
    while (going_on && !IsReady(answer) && !run_here.has_value()) {
      going_on = ReadOne(/*on_reader_thread=*/false, &answered_reader, id, &run_here);
    }
    if (going_on) {
      absl::MutexLock lock(&mu_);
      reading_ = Reader::kNone;
      unread_since_ = absl::Now();
    }
    // Read by nobody meanwhile, unless the handler's own requests need it (their senders
    // read for them; the reader thread takes what nobody waits for, as between calls).
    if (run_here.has_value()) callbacks_.RunHere(*run_here);
  }
  return answer.get();
}

bool SessionStream::ReaderThreadNeeded() const {
  return reading_ == Reader::kNone && !reader_done_ &&
         (pending_.size() > pending_read_by_senders_ || loss_reports_awaited_ > 0 || closing_);
}

void SessionStream::ReadLoop() {
  for (;;) {
    bool take = false;
    std::vector<v1::SessionEvent> output;
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        if (!unsent_output_.empty()) break;  // what a caller read, handed to the handler here
        if (reader_done_) return;
        if (ReaderThreadNeeded()) break;
        const absl::Duration unread = absl::Now() - unread_since_;
        if (reading_ == Reader::kNone && unread >= kIdleReadTakeover) break;
        // A caller that stops reading does not wake this thread (that would cost every call
        // a wakeup): it looks again when the stream may have been left unread long enough.
        auto wanted = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return ReaderThreadNeeded() || reader_done_ || !unsent_output_.empty();
        };
        mu_.AwaitWithTimeout(absl::Condition(&wanted), reading_ == Reader::kNone
                                                           ? kIdleReadTakeover - unread
                                                           : kIdleReadTakeover);
      }
      output.swap(unsent_output_);
      const bool idle = absl::Now() - unread_since_ >= kIdleReadTakeover;
      if (reading_ == Reader::kNone && !reader_done_ && (ReaderThreadNeeded() || idle)) {
        reading_ = Reader::kThread;
        take = true;
      }
    }
    for (const v1::SessionEvent& event : output) {
      HandleOutput(event);
      absl::MutexLock lock(&mu_);
      ++output_handled_;
    }
    // Reads until a caller can read for itself: once an answer reached a caller that reads
    // for its answers (it may well send again at once), or such a caller waits; not after
    // events, invocations or answers nobody waits for (a handler's), which may come in a row.
    while (take) {
      bool answered_reader = false;
      if (!ReadOne(/*on_reader_thread=*/true, &answered_reader)) return;
      absl::MutexLock lock(&mu_);
      if (pending_.size() == pending_read_by_senders_ && loss_reports_awaited_ == 0 && !closing_ &&
          (answered_reader || pending_read_by_senders_ > pending_unawaited_)) {
        reading_ = Reader::kNone;
        unread_since_ = absl::Now();
        take = false;
      }
    }
  }
}

bool SessionStream::HandToSender(uint64_t request, v1::Response& invoke) {
  if (request == 0) return false;
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(request);
  if (it == pending_.end() || !it->second.read_by_sender || !it->second.awaited ||
      it->second.invoke_here.has_value()) {
    return false;
  }
  it->second.invoke_here = std::move(invoke);
  return true;
}

bool SessionStream::ReadOne(bool on_reader_thread, bool* answered_reader, uint64_t awaited,
                            std::optional<v1::Response>* run_here) {
  v1::Response response;
  if (!stream_->Read(&response)) {
    EndStream();
    if (!on_reader_thread) AwaitOutputHandled();  // the output first, then the failure
    return false;
  }
  read_any_.store(true, std::memory_order_relaxed);  // a flag for a message: no fence
  Dispatch(std::move(response), on_reader_thread, answered_reader, awaited, run_here);
  return true;
}

void SessionStream::SetLocalPeer(LocalPath* path) {
  absl::MutexLock lock(&peer_mu_);
  local_peer_ = path;
}

void SessionStream::EndStream() {
  grpc::Status grpc_status;
  {
    absl::MutexLock lock(&write_mu_);
    writes_closed_ = true;
    grpc_status = stream_->Finish();
  }
  {
    // A call waiting on the same-host channel ends too: the channel cannot see ffiboxd die,
    // and its worker dies with it. It then reports the session's end (LossOf), as a call on
    // the stream does.
    absl::MutexLock lock(&peer_mu_);
    if (local_peer_ != nullptr) local_peer_->MarkPeerGone();
  }
  absl::Status final_status = FromGrpc(grpc_status);
  {
    absl::MutexLock lock(&mu_);
    // The server's door refuses a stream with one of these (credentials, session quotas):
    // every request of the stream fails with it, typed.
    const absl::StatusCode code = final_status.code();
    const bool refused = code == absl::StatusCode::kUnauthenticated ||
                         code == absl::StatusCode::kPermissionDenied ||
                         code == absl::StatusCode::kResourceExhausted;
    if (ended_.ok()) {
      // Nothing ever read: no session was open (the server down, or unreachable).
      const char* what = read_any_.load(std::memory_order_relaxed)
                             ? "ffibox session stream broke: "
                             : "could not open an ffibox session: ";
      ended_ = refused ? final_status
                       : absl::UnavailableError(final_status.ok()
                                                    ? "ffiboxd ended the session stream"
                                                    : absl::StrCat(what, final_status.ToString()));
    }
    absl::Status failure = ended_;
    if (refused) {
      failure = final_status;
    } else if (!overdue_ && failure.code() != absl::StatusCode::kUnavailable) {
      failure =
          absl::UnavailableError(absl::StrCat("ffibox session stream ended before the "
                                              "answer arrived (",
                                              failure.message(), ")"));
    }
    final_status_ = final_status;
    // Under the lock, so that callers waiting for these answers see them.
    for (auto& [id, pending] : pending_) pending.promise.set_value(failure);
    pending_.clear();
    pending_read_by_senders_ = 0;
    pending_unawaited_ = 0;
    reading_ = Reader::kNone;
    reader_done_ = true;
  }
  callbacks_.Wake();  // the callback thread may be waiting for one of them
}

void SessionStream::AwaitOutputHandled() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](SessionStream* self)
           ABSL_NO_THREAD_SAFETY_ANALYSIS { return self->output_handled_ == self->output_queued_; },
      this));
}

void SessionStream::HandleOutput(const v1::SessionEvent& event) {
  OutputHandler handler;
  {
    absl::MutexLock lock(&mu_);
    handler = output_handler_;
  }
  if (handler) {
    handler(event.stream(), event.output());
  } else {
    (void)!fwrite(event.output().data(), 1, event.output().size(), stderr);
    fflush(stderr);
  }
}

void SessionStream::Dispatch(v1::Response response, bool on_reader_thread, bool* answered_reader,
                             uint64_t awaited, std::optional<v1::Response>* run_here) {
  heard_ns_.store(SteadyNanos(), std::memory_order_relaxed);
  NoteGeneration(response.generation());
  StampGeneration(&response);
  const bool output =
      response.has_event() && response.event().kind() == v1::SessionEvent::WORKER_OUTPUT;
  // What the library printed before this message is handled first, as when the reader
  // thread reads both: a call's output comes before its result.
  if (!on_reader_thread && !output) AwaitOutputHandled();
  if (response.id() == 0) {
    if (output) {
      if (on_reader_thread) {
        HandleOutput(response.event());
      } else {
        // The handler runs on the reader thread only (SetOutputHandler), never on a caller's.
        absl::MutexLock lock(&mu_);
        unsent_output_.push_back(std::move(*response.mutable_event()));
        ++output_queued_;
      }
    } else if (response.has_event()) {
      if (response.event().kind() == v1::SessionEvent::WORKER_LOST) {
        callbacks_.ForgetGeneration(response.generation());
      }
      absl::MutexLock lock(&mu_);
      if (response.event().kind() == v1::SessionEvent::WORKER_LOST &&
          response.generation() >= lost_generation_) {
        lost_generation_ = response.generation();
        lost_error_ = response.event().error();
      }
      events_.push_back(std::move(*response.mutable_event()));
      if (events_.size() > kKeptEvents) events_.pop_front();
    } else if (response.has_callback_invoke()) {
      const uint64_t request = response.callback_invoke().request_id();
      if (run_here != nullptr && awaited != 0 && request == awaited) {
        *run_here = std::move(response);
      } else if (!HandToSender(request, response)) {
        callbacks_.Deliver(std::move(response));
      }
    }
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(response.id());
    if (it == pending_.end()) return;  // not ours (or answered twice): nothing waits for it
    if (it->second.resolves && response.has_function()) {
      // Before the answer is handed over, so that the function's first call finds it
      // (local_state_mu_ is never held while mu_ is taken).
      absl::MutexLock state_lock(&local_state_mu_);
      result_bytes_[response.function().function()] = it->second.result_bytes;
    }
    it->second.promise.set_value(std::move(response));
    pending_read_by_senders_ -= it->second.read_by_sender;
    pending_unawaited_ -= !it->second.awaited;
    *answered_reader = it->second.read_by_sender && it->second.awaited;
    pending_.erase(it);
  }
  callbacks_.Wake();  // the callback thread may be waiting for this answer
}

bool SessionStream::Write(const v1::Request& request) {
  bool written = false;
  {
    absl::MutexLock lock(&write_mu_);
    if (!writes_closed_) written = stream_->Write(request);
  }
  // After the first write (the open, as a rule): its thread is made while the server reads
  // that write, not before it.
  StartReader();
  return written;
}

void SessionStream::NoteGeneration(uint64_t generation) {
  uint64_t seen = generation_.load(std::memory_order_relaxed);
  while (generation > seen &&
         !generation_.compare_exchange_weak(seen, generation, std::memory_order_relaxed)) {
  }
}

}  // namespace client_internal
}  // namespace ffibox

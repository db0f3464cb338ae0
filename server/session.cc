#include "server/session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "server/request_validation.h"
#include "server/worker_protocol.pb.h"
#include "server/worker_reply.h"

namespace ffibox {
namespace {

// How often a request may find its freshly started worker dead before it gives up (a
// library whose constructor crashes would otherwise restart workers forever).
constexpr int kMaxStartAttempts = 2;

v1::Response ErrorResponse(uint64_t id, const v1::Error& error) {
  v1::Response response;
  response.set_id(id);
  *response.mutable_error() = error;
  return response;
}

v1::Response EventResponse(v1::SessionEvent::Kind kind, uint64_t generation,
                           const v1::Error* error) {
  v1::Response response;
  response.set_generation(generation);
  response.mutable_event()->set_kind(kind);
  if (error != nullptr) *response.mutable_event()->mutable_error() = *error;
  return response;
}

}  // namespace

Session::Session(const SessionConfig& config, ResponseSink* sink, std::string session_id)
    : config_(config),
      sink_(sink),
      session_id_(std::move(session_id)),
      call_timeout_(config.default_call_timeout) {}

Session::~Session() { Shutdown(); }

void Session::Reply(const v1::Request& request, v1::Response response) {
  response.set_id(request.id());
  sink_->Send(response);
}

void Session::ReplyError(const v1::Request& request, const absl::Status& status) {
  sink_->Send(ErrorResponse(request.id(), ToProtoError(status)));
}

bool Session::HandleRequest(const v1::Request& request) {
  bool first = false;
  {
    absl::MutexLock lock(&mu_);
    first = !any_request_;
    any_request_ = true;
  }
  if (request.id() == 0) {
    ReplyError(request, InvalidArgumentAt("id", "request ids start at 1 (0 is reserved)"));
    return true;
  }
  size_t size = request.ByteSizeLong();
  if (size > config_.max_message_bytes) {
    ReplyError(request,
               ErrorStatus(v1::RESOURCE_EXHAUSTED,
                           absl::StrCat("request of ", size, " bytes exceeds the limit of ",
                                        config_.max_message_bytes, " bytes")));
    return true;
  }
  if (request.invocation() != 0 && request.op_case() != v1::Request::kCallbackReturn &&
      request.op_case() != v1::Request::kPing && request.op_case() != v1::Request::kClose) {
    absl::Status scope;
    {
      absl::MutexLock lock(&mu_);
      scope = CheckInvocationScope(request.invocation());
    }
    if (!scope.ok()) {
      ReplyError(request, scope);
      return true;
    }
  }
  switch (request.op_case()) {
    case v1::Request::kOpen:
      if (!first) {
        ReplyError(request, ErrorStatus(v1::FAILED_PRECONDITION,
                                        "open must be the first request of a session"));
      } else {
        Open(request);
      }
      return true;
    case v1::Request::kPing: {
      v1::Response response;
      response.mutable_done();
      Reply(request, std::move(response));
      return true;
    }
    case v1::Request::kClose: {
      v1::Response response;
      response.mutable_done();
      Reply(request, std::move(response));
      return false;
    }
    case v1::Request::kLoadLibrary:
      LoadLibrary(request);
      return true;
    case v1::Request::kResolveFunction:
      ResolveFunction(request);
      return true;
    case v1::Request::kCall:
      Call(request);
      return true;
    case v1::Request::kGetLayout:
      GetLayout(request);
      return true;
    case v1::Request::kLookupSymbol:
      LookupSymbol(request);
      return true;
    case v1::Request::kReadMemory:
    case v1::Request::kWriteMemory:
    case v1::Request::kAllocMemory:
    case v1::Request::kFreeMemory:
    case v1::Request::kFillMemory:
    case v1::Request::kCopyMemory:
    case v1::Request::kReadString:
      MemoryOperation(request);
      return true;
    case v1::Request::kDefineCallback:
      DefineCallback(request);
      return true;
    case v1::Request::kFreeCallback:
      FreeCallback(request);
      return true;
    case v1::Request::kCallbackReturn:
      CallbackReturn(request);
      return true;
    case v1::Request::OP_NOT_SET:
      ReplyError(request, InvalidArgumentAt("op", "the request names no operation"));
      return true;
    default:
      ReplyError(request, ErrorStatus(v1::UNIMPLEMENTED,
                                      absl::StrCat("operation ", request.op_case(),
                                                   " is not implemented by this server")));
      return true;
  }
}

void Session::Open(const v1::Request& request) {
  const v1::OpenSession& open = request.open();
  if (!v1::RestartPolicy_IsValid(open.restart())) {
    ReplyError(request, InvalidArgumentAt("open.restart", "unknown restart policy"));
    return;
  }
  absl::Duration timeout = open.call_timeout_ms() == 0 ? config_.default_call_timeout
                                                       : absl::Milliseconds(open.call_timeout_ms());
  if (timeout > config_.max_call_timeout) {
    ReplyError(request,
               InvalidArgumentAt("open.call_timeout_ms",
                                 absl::StrCat("exceeds the server's maximum of ",
                                              absl::FormatDuration(config_.max_call_timeout))));
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    call_timeout_ = timeout;
    restart_ = open.restart() != v1::NO_RESTART;
  }
  v1::Response response;
  v1::SessionOpened* opened = response.mutable_opened();
  opened->set_session_id(session_id_);
  opened->set_call_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(timeout)));
  opened->set_max_message_bytes(config_.max_message_bytes);
  Reply(request, std::move(response));
}

void Session::LoadLibrary(const v1::Request& request) {
  absl::Status valid = ValidateLoadLibrary(request.load_library());
  if (!valid.ok()) return ReplyError(request, valid);
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    if (libraries_.size() >= config_.max_libraries) {
      return ReplyError(request, ErrorStatus(v1::RESOURCE_EXHAUSTED,
                                             absl::StrCat("a session may load at most ",
                                                          config_.max_libraries, " libraries")));
    }
    libraries_.push_back(LibraryRecord{request.load_library().path(), State::kPending});
    pending.handle = libraries_.size();
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("dlopen ", request.load_library().path());
  Forward(request, std::move(pending));
}

void Session::ResolveFunction(const v1::Request& request) {
  const v1::ResolveFunction& resolve = request.resolve_function();
  absl::Status valid = ValidateResolveFunction(resolve, config_.type_limits);
  if (!valid.ok()) return ReplyError(request, valid);
  const bool by_address = resolve.has_address();
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    if (by_address && !AddressIsCurrent(resolve.address().generation())) {
      return ReplyError(request, StaleAddress(resolve.address().generation()));
    }
    if (!by_address && (resolve.library() == 0 || resolve.library() > libraries_.size() ||
                        libraries_[resolve.library() - 1].state == State::kFailed)) {
      return ReplyError(request,
                        ErrorStatus(v1::NOT_FOUND, absl::StrCat("resolve_function.library: no "
                                                                "loaded library has handle ",
                                                                resolve.library())));
    }
    if (functions_.size() >= config_.max_functions) {
      return ReplyError(request, ErrorStatus(v1::RESOURCE_EXHAUSTED,
                                             absl::StrCat("a session may resolve at most ",
                                                          config_.max_functions, " functions")));
    }
    pending.handle = next_function_handle_++;
    FunctionRecord record{resolve.library(), resolve.symbol(), resolve.signature(),
                          State::kPending};
    if (by_address) {
      // Bound to the worker generation of its address: never replayed after a restart.
      record.generation = resolve.address().generation();
      record.symbol = absl::StrCat("function at 0x", absl::Hex(resolve.address().address()));
      pending.required_generation = record.generation;
    }
    pending.label = by_address ? record.symbol : absl::StrCat("dlsym ", resolve.symbol());
    functions_[pending.handle] = std::move(record);
    pending.timeout = call_timeout_;
  }
  Forward(request, std::move(pending));
}

bool Session::AddressIsCurrent(uint64_t generation) const {
  return worker_alive_ && generation == generation_;
}

absl::Status Session::StaleAddress(uint64_t generation) const {
  return ErrorStatus(
      v1::STALE_HANDLE,
      absl::StrCat("the address belongs to worker generation ", generation,
                   worker_alive_
                       ? absl::StrCat("; the session's worker is generation ", generation_)
                       : std::string("; that worker is gone")));
}

void Session::Call(const v1::Request& request) {
  const v1::Call& call = request.call();
  PendingRequest pending;
  v1::Signature signature;
  {
    absl::MutexLock lock(&mu_);
    auto function = functions_.find(call.function());
    if (function == functions_.end() || function->second.state == State::kFailed) {
      return ReplyError(
          request, ErrorStatus(v1::NOT_FOUND, absl::StrCat("call.function: no resolved function "
                                                           "has handle ",
                                                           call.function())));
    }
    if (function->second.generation != 0 && !AddressIsCurrent(function->second.generation)) {
      return ReplyError(
          request, ErrorStatus(v1::STALE_HANDLE,
                               absl::StrCat("call.function: function ", call.function(),
                                            " was resolved at an address of worker generation ",
                                            function->second.generation,
                                            ", which is gone; resolve it again")));
    }
    pending.required_generation = function->second.generation;
    signature = function->second.signature;
    pending.label = function->second.symbol;
    pending.timeout =
        call.timeout_ms() != 0 ? absl::Milliseconds(call.timeout_ms()) : call_timeout_;
  }
  if (pending.timeout > config_.max_call_timeout) {
    return ReplyError(
        request, InvalidArgumentAt("call.timeout_ms",
                                   absl::StrCat("exceeds the server's maximum of ",
                                                absl::FormatDuration(config_.max_call_timeout))));
  }
  absl::Status valid = ValidateCallShape(call, signature, config_.type_limits);
  if (!valid.ok()) return ReplyError(request, valid);
  pending.returned_block_sizes = ReturnedBlockSizes(call);
  pending.block_sizes = BlockSizes(call);
  Forward(request, std::move(pending));
}

void Session::GetLayout(const v1::Request& request) {
  absl::Status valid =
      ValidateType(request.get_layout().type(), config_.type_limits, "get_layout.type");
  if (!valid.ok()) return ReplyError(request, valid);
  PendingRequest pending;
  pending.label = "layout";
  {
    absl::MutexLock lock(&mu_);
    pending.timeout = call_timeout_;
  }
  Forward(request, std::move(pending));
}

void Session::LookupSymbol(const v1::Request& request) {
  const v1::LookupSymbol& lookup = request.lookup_symbol();
  absl::Status valid = ValidateLookupSymbol(lookup, config_.type_limits);
  if (!valid.ok()) return ReplyError(request, valid);
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    if (lookup.library() == 0 || lookup.library() > libraries_.size() ||
        libraries_[lookup.library() - 1].state == State::kFailed) {
      return ReplyError(request,
                        ErrorStatus(v1::NOT_FOUND, absl::StrCat("lookup_symbol.library: no loaded "
                                                                "library has handle ",
                                                                lookup.library())));
    }
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("dlsym ", lookup.symbol());
  Forward(request, std::move(pending));
}

void Session::MemoryOperation(const v1::Request& request) {
  absl::Status valid = ValidateMemoryRequest(request, config_.type_limits);
  if (!valid.ok()) return ReplyError(request, valid);
  PendingRequest pending;
  pending.label = MemoryOperationName(request);
  if (request.has_read_memory()) {
    pending.read_typed = request.read_memory().has_type();
    pending.read_size = pending.read_typed ? TypeSizeOf(request.read_memory().type())
                                           : request.read_memory().size();
  }
  {
    absl::MutexLock lock(&mu_);
    pending.timeout = call_timeout_;
  }
  Forward(request, std::move(pending));
}

absl::Status Session::CheckInvocationScope(uint64_t invocation) const {
  if (invocation == 0) return absl::OkStatus();
  auto open = invocations_.find(invocation);
  if (open == invocations_.end()) {
    return ErrorStatus(v1::FAILED_PRECONDITION,
                       absl::StrCat("invocation: callback invocation ", invocation,
                                    " is not open (it was answered, or its worker is gone)"));
  }
  if (open->second.depth >= config_.max_callback_depth) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("invocation: callback invocation ", invocation, " is nested ",
                                    open->second.depth, " deep; the server allows at most ",
                                    config_.max_callback_depth, " nested callback invocations"));
  }
  return absl::OkStatus();
}

void Session::DefineCallback(const v1::Request& request) {
  absl::Status valid = ValidateDefineCallback(request.define_callback(), config_.type_limits);
  if (!valid.ok()) return ReplyError(request, valid);
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    if (callbacks_.size() >= config_.max_callbacks) {
      return ReplyError(
          request, ErrorStatus(v1::RESOURCE_EXHAUSTED,
                               absl::StrCat("a session may define at most ", config_.max_callbacks,
                                            " callbacks at once; free some with free_callback")));
    }
    pending.handle = next_callback_handle_++;
    CallbackRecord record;
    record.signature = std::make_shared<const v1::Signature>(request.define_callback().signature());
    callbacks_[pending.handle] = std::move(record);
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("define_callback ", pending.handle);
  Forward(request, std::move(pending));
}

void Session::FreeCallback(const v1::Request& request) {
  const uint64_t id = request.free_callback().callback();
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    auto record = callbacks_.find(id);
    if (record == callbacks_.end() || record->second.freed) {
      return ReplyError(request,
                        ErrorStatus(v1::NOT_FOUND, absl::StrCat("free_callback.callback: no "
                                                                "callback has id ",
                                                                id)));
    }
    if (!worker_alive_) {
      // Nothing to free in a worker: a new one would not define it.
      callbacks_.erase(record);
      v1::Response response;
      response.mutable_done();
      return Reply(request, std::move(response));
    }
    record->second.freed = true;
    pending.handle = id;
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("free_callback ", id);
  Forward(request, std::move(pending));
}

void Session::CallbackReturn(const v1::Request& request) {
  const v1::CallbackReturn& answer = request.callback_return();
  WorkerProcess* worker = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto open = invocations_.find(answer.invocation());
    if (answer.invocation() == 0 || open == invocations_.end()) {
      return ReplyError(request, ErrorStatus(v1::FAILED_PRECONDITION,
                                             absl::StrCat("callback_return.invocation: callback "
                                                          "invocation ",
                                                          answer.invocation(),
                                                          " is not open (it was answered, or its "
                                                          "worker is gone)")));
    }
    auto scope = scopes_.find(answer.invocation());
    if (scope != scopes_.end() && !scope->second.queue.empty()) {
      return ReplyError(
          request,
          ErrorStatus(v1::FAILED_PRECONDITION,
                      absl::StrCat("callback_return.invocation: ", scope->second.queue.size(),
                                   " requests sent inside invocation ", answer.invocation(),
                                   " are still running; wait for their answers first")));
    }
    absl::Status valid =
        ValidateCallbackReturn(answer, *open->second.signature, open->second.shipped);
    if (!valid.ok()) return ReplyError(request, valid);
    invocations_.erase(open);
    if (scope != scopes_.end()) scopes_.erase(scope);
    worker = worker_alive_ ? worker_.get() : nullptr;
  }
  if (worker != nullptr) {
    internal::WorkerRequest wrapped;
    wrapped.set_id(0);  // not answered by the worker
    wrapped.set_invocation(answer.invocation());
    *wrapped.mutable_request() = request;
    wrapped.mutable_request()->set_id(0);
    // A failed send means the worker is dying; its reader reports that.
    (void)worker->channel().Send(wrapped.SerializeAsString());
  }
  v1::Response response;
  response.mutable_done();
  Reply(request, std::move(response));
}

void Session::Forward(const v1::Request& request, PendingRequest pending) {
  pending.client_id = request.id();
  pending.op = request.op_case();
  pending.scope = request.invocation();
  absl::Status status;
  if (pending.scope != 0) {
    // Inside an invocation of the live worker: never start a new one for it.
    status = Enqueue(request, pending);
    if (status.ok()) return;
  }
  for (int attempt = 0; pending.scope == 0 && attempt < kMaxStartAttempts; ++attempt) {
    status = EnsureWorker();
    if (!status.ok()) break;
    status = Enqueue(request, pending);
    if (status.ok()) return;
    if (ErrorCodeOf(status) == v1::STALE_HANDLE) break;
  }
  if (!status.ok()) {
    absl::MutexLock lock(&mu_);
    RecordOutcome(pending, ErrorResponse(pending.client_id, ToProtoError(status)));
  }
  ReplyError(request, status);
}

absl::Status Session::EnsureWorker() {
  std::unique_ptr<WorkerProcess> dead;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    if (closing_) return ErrorStatus(v1::FAILED_PRECONDITION, "the session is closing");
    if (worker_alive_) return absl::OkStatus();
    if (worker_ != nullptr && !restart_) {
      return ErrorStatus(v1::FAILED_PRECONDITION,
                         absl::StrCat("the session's worker was lost (", last_death_.message(),
                                      ") and the session does not restart workers"));
    }
    dead = std::move(worker_);
    generation = ++generation_;
  }
  // The dead worker's reader thread has finished its work under mu_; wait for it to exit.
  if (reader_.joinable()) reader_.join();
  dead.reset();

  WorkerLaunchOptions options;
  options.worker_path = config_.worker_path;
  options.generation = generation;
  options.max_reply_bytes = config_.max_reply_bytes;
  options.max_callback_depth = config_.max_callback_depth;
  absl::StatusOr<std::unique_ptr<WorkerProcess>> started = WorkerProcess::Start(options);
  if (!started.ok()) {
    return ErrorStatus(v1::INTERNAL,
                       absl::StrCat("cannot start a worker: ", started.status().message()));
  }
  WorkerProcess* worker = started->get();
  {
    absl::MutexLock lock(&mu_);
    worker_ = std::move(*started);
    worker_alive_ = true;
    scopes_.clear();
    in_flight_ = 0;
    invocations_.clear();
  }
  reader_ = std::thread([this, worker] { ReadReplies(worker); });
  if (generation > 1) {
    sink_->Send(EventResponse(v1::SessionEvent::WORKER_RESTARTED, generation, nullptr));
    ReplayHandles();
  }
  return absl::OkStatus();
}

void Session::ReplayHandles() {
  std::vector<std::pair<v1::Request, PendingRequest>> replays;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < libraries_.size(); ++i) {
      if (libraries_[i].state != State::kReady) continue;
      std::pair<v1::Request, PendingRequest> replay;
      replay.first.mutable_load_library()->set_path(libraries_[i].path);
      replay.second.op = v1::Request::kLoadLibrary;
      replay.second.handle = i + 1;
      replay.second.label = absl::StrCat("dlopen ", libraries_[i].path, " (replay)");
      replay.second.timeout = call_timeout_;
      replays.push_back(std::move(replay));
    }
    for (const auto& [handle, function] : functions_) {
      // Functions resolved by address belong to their worker generation only.
      if (function.state != State::kReady || function.generation != 0) continue;
      std::pair<v1::Request, PendingRequest> replay;
      v1::ResolveFunction* resolve = replay.first.mutable_resolve_function();
      resolve->set_library(function.library);
      resolve->set_symbol(function.symbol);
      *resolve->mutable_signature() = function.signature;
      replay.second.op = v1::Request::kResolveFunction;
      replay.second.handle = handle;
      replay.second.label = absl::StrCat("dlsym ", function.symbol, " (replay)");
      replay.second.timeout = call_timeout_;
      replays.push_back(std::move(replay));
    }
    for (const auto& [id, callback] : callbacks_) {
      // Callback ids are stable: the new worker defines them again, at new addresses.
      if (callback.state != State::kReady || callback.freed) continue;
      std::pair<v1::Request, PendingRequest> replay;
      *replay.first.mutable_define_callback()->mutable_signature() = *callback.signature;
      replay.second.op = v1::Request::kDefineCallback;
      replay.second.handle = id;
      replay.second.label = absl::StrCat("define_callback ", id, " (replay)");
      replay.second.timeout = call_timeout_;
      replays.push_back(std::move(replay));
    }
  }
  // Replays are queued ahead of the request that caused the restart, so it runs with every
  // handle in place. A failed replay leaves the handle's calls failing in the worker.
  for (auto& [request, pending] : replays) {
    if (!Enqueue(request, std::move(pending)).ok()) return;
  }
}

absl::Status Session::Enqueue(const v1::Request& request, PendingRequest pending) {
  internal::WorkerRequest wrapped;
  WorkerProcess* worker = nullptr;
  bool was_idle = false;
  {
    absl::MutexLock lock(&mu_);
    if (!worker_alive_) return ErrorStatus(v1::WORKER_CRASHED, last_death_.message());
    if (pending.required_generation != 0 && pending.required_generation != generation_) {
      return StaleAddress(pending.required_generation);
    }
    // The invocation may have closed (or its worker died) since HandleRequest checked.
    absl::Status scope_status = CheckInvocationScope(pending.scope);
    if (!scope_status.ok()) return scope_status;
    if (in_flight_ >= config_.max_in_flight) {
      return ErrorStatus(
          v1::RESOURCE_EXHAUSTED,
          absl::StrCat("more than ", config_.max_in_flight, " requests in flight in one session"));
    }
    pending.sequence = next_sequence_++;
    wrapped.set_id(pending.sequence);
    wrapped.set_handle(pending.handle);
    wrapped.set_invocation(pending.scope);
    Scope& scope = scopes_[pending.scope];
    if (pending.scope != 0) scope.depth = invocations_[pending.scope].depth;
    was_idle = scope.queue.empty();
    if (was_idle) scope.head_deadline = absl::Now() + pending.timeout;
    scope.queue.push_back(std::move(pending));
    ++in_flight_;
    worker = worker_.get();
  }
  *wrapped.mutable_request() = request;
  wrapped.mutable_request()->set_id(0);
  // The reader waits with the old head's deadline (or none): make it pick up the new one.
  if (was_idle) worker->channel().Interrupt();
  // A failed send means the worker is dying; its reader fails the queued request.
  (void)worker->channel().Send(wrapped.SerializeAsString());
  return absl::OkStatus();
}

void Session::ReadReplies(WorkerProcess* worker) {
  for (;;) {
    absl::Time deadline;
    {
      absl::MutexLock lock(&mu_);
      deadline = NextDeadline();
    }
    absl::StatusOr<std::string> frame = worker->channel().Receive(deadline);
    if (frame.ok()) {
      std::optional<v1::Response> to_client;
      absl::Status accepted;
      {
        absl::MutexLock lock(&mu_);
        accepted = AcceptFrame(*frame, *worker, &to_client);
      }
      if (accepted.ok()) {
        if (to_client.has_value()) sink_->Send(*to_client);
        continue;
      }
      worker->Kill();
      return HandleWorkerDeath(worker, DeathCause::kProtocolViolation, accepted.message());
    }
    switch (frame.status().code()) {
      case absl::StatusCode::kCancelled: {
        bool closing = false;
        {
          absl::MutexLock lock(&mu_);
          closing = closing_;
        }
        if (!closing) continue;  // the deadline changed
        // Shutdown: do not wait for end of stream, which never comes while a process the
        // worker forked still holds its end of the channel.
        worker->Kill();
        return HandleWorkerDeath(worker, DeathCause::kUnexpected, "");
      }
      case absl::StatusCode::kDeadlineExceeded: {
        Culprit culprit;
        bool overdue = false;
        {
          absl::MutexLock lock(&mu_);
          overdue = FindOverdue(absl::Now(), &culprit);
        }
        if (!overdue) continue;
        worker->Kill();
        return HandleWorkerDeath(worker, DeathCause::kDeadline, "", &culprit);
      }
      case absl::StatusCode::kUnavailable:
        return HandleWorkerDeath(worker, DeathCause::kUnexpected, "");
      default:
        worker->Kill();
        return HandleWorkerDeath(worker, DeathCause::kProtocolViolation, frame.status().message());
    }
  }
}

absl::Status Session::AcceptFrame(absl::string_view frame, const WorkerProcess& worker,
                                  std::optional<v1::Response>* to_client) {
  absl::StatusOr<internal::WorkerReply> reply = ParseWorkerFrame(frame);
  if (!reply.ok()) return reply.status();
  if (reply->has_invoke()) {
    absl::Status invoke = AcceptInvoke(reply->invoke());
    if (!invoke.ok()) return invoke;
    v1::Response response;
    response.set_generation(worker.generation());
    *response.mutable_callback_invoke() = std::move(*reply->mutable_invoke());
    *to_client = std::move(response);
    return absl::OkStatus();
  }
  if (reply->has_event()) {
    absl::Status event = CheckWorkerEvent(reply->event());
    if (!event.ok()) return event;
    v1::Response response;
    response.set_generation(worker.generation());
    *response.mutable_event() = std::move(*reply->mutable_event());
    *to_client = std::move(response);
    return absl::OkStatus();
  }
  // A response answers the head of one scope (scopes run independently).
  const uint64_t sequence = reply->response().id();
  auto scope = scopes_.begin();
  for (; scope != scopes_.end(); ++scope) {
    if (!scope->second.queue.empty() && scope->second.queue.front().sequence == sequence) break;
  }
  if (scope == scopes_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reply for request ", sequence, ", which is not running"));
  }
  absl::StatusOr<v1::Response> parsed =
      CheckWorkerResponse(std::move(*reply->mutable_response()), scope->second.queue.front());
  if (!parsed.ok()) return parsed.status();
  PendingRequest done = std::move(scope->second.queue.front());
  scope->second.queue.pop_front();
  --in_flight_;
  if (!scope->second.queue.empty()) {
    scope->second.head_deadline = absl::Now() + scope->second.queue.front().timeout;
  } else if (scope->first != 0 && !invocations_.contains(scope->first)) {
    scopes_.erase(scope);  // the invocation was answered and its last request is done
  }
  last_label_ = done.label;
  parsed->set_generation(worker.generation());
  RecordOutcome(done, *parsed);
  if (done.client_id != 0) *to_client = std::move(*parsed);  // replays tell the client nothing
  return absl::OkStatus();
}

absl::Status Session::AcceptInvoke(const v1::CallbackInvoke& invoke) {
  auto callback = callbacks_.find(invoke.callback());
  if (callback == callbacks_.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invocation of callback ", invoke.callback(), ", which is not defined"));
  }
  OpenInvocation open;
  absl::Status shape = CheckCallbackInvoke(invoke, *callback->second.signature, &open.shipped);
  if (!shape.ok()) return shape;
  const uint64_t id = invoke.invocation();
  if (invocations_.contains(id) || scopes_.contains(id)) {
    return absl::InvalidArgumentError(absl::StrCat("invocation id ", id, " is already in use"));
  }
  if (invoke.parent_invocation() != 0) {
    auto parent = invocations_.find(invoke.parent_invocation());
    auto parent_scope = scopes_.find(invoke.parent_invocation());
    if (parent == invocations_.end() || parent_scope == scopes_.end() ||
        parent_scope->second.queue.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("invocation ", id, " is nested in invocation ",
                                                     invoke.parent_invocation(),
                                                     ", which is not running a request"));
    }
    open.depth = parent->second.depth + 1;
    if (open.depth > config_.max_callback_depth) {
      return absl::InvalidArgumentError(
          absl::StrCat("invocation ", id, " is nested deeper than the limit"));
    }
  }
  open.callback = invoke.callback();
  open.signature = callback->second.signature;
  auto top = scopes_.find(0);
  if (invoke.parent_invocation() == 0 && (top == scopes_.end() || top->second.queue.empty())) {
    // Outside any call: nothing else bounds how long the client may take.
    open.timeout = call_timeout_;
    open.deadline = absl::Now() + call_timeout_;
  }
  invocations_[id] = std::move(open);
  return absl::OkStatus();
}

absl::Time Session::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, scope] : scopes_) {
    if (!scope.queue.empty()) next = std::min(next, scope.head_deadline);
  }
  for (const auto& [id, open] : invocations_) next = std::min(next, open.deadline);
  return next;
}

bool Session::FindOverdue(absl::Time now, Culprit* culprit) const {
  for (const auto& [id, scope] : scopes_) {
    if (!scope.queue.empty() && now >= scope.head_deadline) {
      culprit->sequence = scope.queue.front().sequence;
      culprit->label = scope.queue.front().label;
      culprit->timeout = scope.queue.front().timeout;
      return true;
    }
  }
  for (const auto& [id, open] : invocations_) {
    if (now >= open.deadline) {
      culprit->sequence = 0;
      culprit->label =
          absl::StrCat("callback ", open.callback, " (invocation ", id, ", outside any call)");
      culprit->timeout = open.timeout;
      return true;
    }
  }
  return false;
}

Session::Culprit Session::InnermostRunning() const {
  Culprit culprit;
  int depth = -1;
  for (const auto& [id, scope] : scopes_) {
    if (scope.queue.empty() || scope.depth <= depth) continue;
    depth = scope.depth;
    culprit.sequence = scope.queue.front().sequence;
    culprit.label = scope.queue.front().label;
    culprit.timeout = scope.queue.front().timeout;
  }
  return culprit;
}

void Session::RecordOutcome(const PendingRequest& pending, const v1::Response& response) {
  State state = response.has_error() ? State::kFailed : State::kReady;
  if (pending.op == v1::Request::kLoadLibrary && pending.handle >= 1 &&
      pending.handle <= libraries_.size()) {
    libraries_[pending.handle - 1].state = state;
  } else if (pending.op == v1::Request::kResolveFunction) {
    auto function = functions_.find(pending.handle);
    if (function != functions_.end()) function->second.state = state;
  } else if (pending.op == v1::Request::kDefineCallback) {
    // A failed definition leaves no id behind (and does not count against the limit).
    auto callback = callbacks_.find(pending.handle);
    if (callback == callbacks_.end()) return;
    if (state == State::kReady) {
      callback->second.state = state;
    } else {
      callbacks_.erase(callback);
    }
  } else if (pending.op == v1::Request::kFreeCallback) {
    // Freed, or unknown to the worker, or lost with it: gone in every case.
    callbacks_.erase(pending.handle);
  }
}

void Session::HandleWorkerDeath(WorkerProcess* worker, DeathCause cause, absl::string_view detail,
                                const Culprit* culprit) {
  WorkerExit exit = worker->Reap();
  // Every request in flight, the blamed one first; `second` is true for requests that were
  // only queued behind another (not yet started by the worker).
  std::vector<std::pair<PendingRequest, bool>> failed;
  v1::Error error;
  bool closing = false;
  {
    absl::MutexLock lock(&mu_);
    const Culprit blamed = culprit != nullptr ? *culprit : InnermostRunning();
    for (auto& [id, scope] : scopes_) {
      bool head = true;
      for (PendingRequest& pending : scope.queue) {
        const bool is_blamed = blamed.sequence != 0 && pending.sequence == blamed.sequence;
        auto position = is_blamed ? failed.begin() : failed.end();
        failed.emplace(position, std::move(pending), !head);
        head = false;
      }
    }
    // Heads (running, or blocked in native code under a callback) before queued requests.
    std::stable_partition(
        failed.begin(), failed.end(),
        [](const std::pair<PendingRequest, bool>& entry) { return !entry.second; });
    scopes_.clear();
    in_flight_ = 0;
    // Open invocations die with the worker: their native callers are gone.
    invocations_.clear();
    error = DescribeWorkerDeath(exit, cause, blamed.label, blamed.timeout, detail);
    if (blamed.label.empty() && !last_label_.empty()) {
      error.set_message(absl::StrCat(error.message(), " (last call: ", last_label_, ")"));
    }
    last_death_ = error;
    worker_alive_ = false;
    closing = closing_;
    for (const auto& [pending, queued] : failed) {
      // Work of a lost worker is gone: a library or function it was loading must be
      // requested again by the client.
      RecordOutcome(pending, ErrorResponse(0, error));
    }
  }
  if (closing) return;
  for (const auto& [pending, queued] : failed) {
    if (pending.client_id == 0) continue;
    v1::Error own = error;
    if (queued) {
      own.set_message(absl::StrCat(error.message(), "; this request was queued behind it"));
    }
    v1::Response response = ErrorResponse(pending.client_id, own);
    response.set_generation(worker->generation());
    sink_->Send(response);
  }
  sink_->Send(EventResponse(v1::SessionEvent::WORKER_LOST, worker->generation(), &error));
}

void Session::Shutdown() {
  WorkerProcess* worker = nullptr;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    worker = worker_.get();
  }
  if (worker != nullptr) {
    worker->Kill();
    worker->channel().Interrupt();
  }
  if (reader_.joinable()) reader_.join();
  std::unique_ptr<WorkerProcess> last;
  {
    absl::MutexLock lock(&mu_);
    last = std::move(worker_);
    worker_alive_ = false;
  }
  // ~WorkerProcess reaps: no zombie outlives the session.
}

}  // namespace ffibox

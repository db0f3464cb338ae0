#include "server/session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "server/jail/jail_layers.h"
#include "server/request_validation.h"
#include "server/responses.h"
#include "server/worker_protocol.pb.h"
#include "server/worker_reply.h"

namespace ffibox {
namespace {

// How often a request may find its freshly started worker dead before it gives up (a
// library whose constructor crashes would otherwise restart workers forever).
constexpr int kMaxStartAttempts = 2;

// The smallest memory cap a session may ask for: below it the worker cannot even run.
constexpr uint64_t kMinSessionMemoryBytes = uint64_t{16} << 20;

}  // namespace

Session::Session(const SessionConfig& config, ResponseSink* sink, std::string session_id)
    : config_(config),
      sink_(sink),
      session_id_(std::move(session_id)),
      call_timeout_(config.default_call_timeout),
      memory_limit_bytes_(config.jail.address_space_bytes),
      idle_cpu_percent_(config.jail.idle_cpu_percent) {}

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
  absl::Status environment = ValidateEnvironment(open, config_.env_allow);
  if (!environment.ok()) {
    ReplyError(request, environment);
    return;
  }
  uint64_t server_cap = config_.jail.address_space_bytes;
  uint64_t memory_limit = server_cap;
  if (open.memory_limit_bytes() != 0) {
    if (open.memory_limit_bytes() < kMinSessionMemoryBytes ||
        (server_cap != 0 && open.memory_limit_bytes() > server_cap)) {
      ReplyError(
          request,
          InvalidArgumentAt(
              "open.memory_limit_bytes",
              absl::StrCat("must be at least ", kMinSessionMemoryBytes,
                           server_cap != 0
                               ? absl::StrCat(" and at most the server's cap of ", server_cap)
                               : "")));
      return;
    }
    memory_limit = open.memory_limit_bytes();
  }
  uint32_t idle_cpu_percent = config_.jail.idle_cpu_percent;
  if (open.idle_cpu_percent() != 0) {
    if (open.idle_cpu_percent() > 100) {
      ReplyError(request,
                 InvalidArgumentAt("open.idle_cpu_percent", "must be 1..100 (percent of one CPU)"));
      return;
    }
    idle_cpu_percent = open.idle_cpu_percent();
  }
  std::unique_ptr<ScratchDirectory> scratch;
  if (open.scratch_directory()) {
    if (config_.scratch_root.empty()) {
      ReplyError(request, ErrorStatus(v1::FAILED_PRECONDITION,
                                      "open.scratch_directory: this server has no scratch root "
                                      "(sandbox.scratch_root, --scratch_root)"));
      return;
    }
    absl::StatusOr<std::unique_ptr<ScratchDirectory>> made =
        ScratchDirectory::Create(config_.scratch_root, session_id_);
    if (!made.ok()) {
      ReplyError(request, made.status());
      return;
    }
    scratch = *std::move(made);
  }
  std::string scratch_path = scratch != nullptr ? scratch->path() : std::string();
  {
    absl::MutexLock lock(&mu_);
    call_timeout_ = timeout;
    restart_ = open.restart() != v1::NO_RESTART;
    memory_limit_bytes_ = memory_limit;
    idle_cpu_percent_ = idle_cpu_percent;
    environment_.assign(open.environment().begin(), open.environment().end());
    if (scratch != nullptr) scratch_ = std::move(scratch);
  }
  v1::Response response;
  v1::SessionOpened* opened = response.mutable_opened();
  opened->set_session_id(session_id_);
  opened->set_call_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(timeout)));
  opened->set_max_message_bytes(config_.max_message_bytes);
  opened->set_memory_limit_bytes(memory_limit);
  for (std::string& layer : ActiveJailLayers(config_.jail)) opened->add_jail_layers(layer);
  for (const std::string& waived : config_.jail.waived) opened->add_waived_jail_layers(waived);
  opened->set_scratch_directory(scratch_path);
  if (config_.cgroups != nullptr) {
    opened->set_worker_pids_max(config_.jail.worker_pids_max);
    opened->set_idle_cpu_percent(idle_cpu_percent);
  } else {
    opened->set_worker_pids_max(config_.jail.processes);  // RLIMIT_NPROC, or 0: none
  }
  Reply(request, std::move(response));
}

void Session::LoadLibrary(const v1::Request& request) {
  absl::Status valid = ValidateLoadLibrary(request.load_library());
  if (!valid.ok()) return ReplyError(request, valid);
  v1::Request admitted = request;
  if (config_.allowlist != nullptr) {
    // The worker loads exactly the file that was checked: the resolved absolute path.
    absl::StatusOr<std::string> resolved = config_.allowlist->Admit(request.load_library().path());
    if (!resolved.ok()) return ReplyError(request, resolved.status());
    admitted.mutable_load_library()->set_path(*std::move(resolved));
  }
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    if (libraries_.size() >= config_.max_libraries) {
      return ReplyError(request, ErrorStatus(v1::RESOURCE_EXHAUSTED,
                                             absl::StrCat("a session may load at most ",
                                                          config_.max_libraries, " libraries")));
    }
    libraries_.push_back(LibraryRecord{admitted.load_library().path(), State::kPending});
    pending.handle = libraries_.size();
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("dlopen ", admitted.load_library().path());
  Forward(admitted, std::move(pending));
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
  pending.kept_blocks = KeptBlocks(call);
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

}  // namespace ffibox

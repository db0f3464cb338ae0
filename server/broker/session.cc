#include "server/broker/session.h"

#include <fcntl.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/c_declaration.h"
#include "core/encoding_limits.h"
#include "core/errors.h"
#include "core/local_channel.h"
#include "core/status_macros.h"
#include "server/broker/call_validation.h"
#include "server/broker/library_descriptor.h"
#include "server/broker/request_validation.h"
#include "server/broker/responses.h"
#include "server/broker/spin_turn.h"
#include "server/broker/worker_reply.h"
#include "server/jail/jail_layers.h"
#include "server/jail/user_namespace.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {
namespace {

// How often a request may find its freshly started worker dead before it gives up (a
// library whose constructor crashes would otherwise restart workers forever).
constexpr int kMaxStartAttempts = 2;

// How long the stream thread spins for the worker's answer to a request the client waits for
// (Session::ReadAnswerInPlace) before it leaves the answer to the reader thread. A worker
// asleep since the last request wakes and answers a small call in 10 to 40 µs mostly; here
// (a VM of two vCPUs) 95 to 99 % of such calls were answered within this spin, against 75 to
// 90 % within half of it.
constexpr absl::Duration kAnswerInPlaceSpin = absl::Microseconds(100);
// How often FinishInFlight asks whether the client is still there.
constexpr absl::Duration kClientGonePoll = absl::Milliseconds(50);
// After a spin that missed its answer, the next 1, 2, 4 ... up to this many requests leave
// their answers to the reader thread (a session whose calls take longer than the spin does
// not spin on every one).
constexpr int kMaxAnswerInPlaceBackoff = 64;

// The smallest memory cap a session may ask for: below it the worker cannot even run.
constexpr uint64_t kMinSessionMemoryBytes = uint64_t{16} << 20;

// The most threads and processes a worker may have: its cgroup's task limit, else its
// RLIMIT_NPROC; 0: none (SessionOpened.worker_pids_max).
uint64_t WorkerTasksMax(const SessionConfig& config) {
  return config.cgroups != nullptr ? config.jail.worker_pids_max : config.jail.processes;
}

// The session's bounds on the requests and invocations in flight.
InFlightRequests::Limits InFlightRequestLimits(const SessionConfig& config) {
  InFlightRequests::Limits limits;
  limits.max_in_flight = config.max_in_flight;
  limits.max_callback_depth = config.max_callback_depth;
  // One invocation outside any other per thread at most.
  const uint64_t tasks = WorkerTasksMax(config);
  if (tasks != 0) {
    limits.max_top_level_invocations = std::min<uint64_t>(tasks, limits.max_top_level_invocations);
  }
  return limits;
}

// What the worker's answer to `request`, queued as `pending`, may hold (core/encoding_limits.h).
AnswerLimits AnswerLimitsOf(const v1::Request& request, const PendingRequest& pending) {
  switch (request.op_case()) {
    case v1::Request::kCall:
      return CallAnswerLimits(pending.call);
    case v1::Request::kBatch: {
      AnswerLimits limits;
      limits.results = pending.batch_calls;
      limits.changed = MaxChangedRuns();
      for (const auto& [index, expected] : pending.batch_blocks) {
        limits.Add(CallAnswerLimits(expected));
      }
      return limits;
    }
    case v1::Request::kGetLayout:
      return LayoutAnswerLimits(request.get_layout().type());
    case v1::Request::kReadMemoryList: {
      AnswerLimits limits;
      limits.memory_reads = pending.read_list.size();
      return limits;
    }
    default:
      return AnswerLimits();
  }
}

// The answer to request `id` that the broker refused with `status` before any worker saw it.
v1::Response RefusalResponse(uint64_t id, const absl::Status& status) {
  v1::Error error = ToProtoError(status);
  error.set_never_reached_worker(true);
  return ErrorResponse(id, error);
}

}  // namespace

Session::Session(const SessionConfig& config, ResponseSink* sink, std::string session_id)
    : config_(config),
      sink_(sink),
      session_id_(std::move(session_id)),
      call_timeout_(config.default_call_timeout),
      memory_limit_bytes_(config.jail.address_space_bytes),
      idle_cpu_percent_(config.jail.idle_cpu_percent),
      handles_(HandleTable::Limits{config.max_libraries, config.max_functions, config.max_callbacks,
                                   config.max_signature_bytes}),
      requests_(InFlightRequestLimits(config)) {
  if (config_.deadlines != nullptr) {
    reader_alarm_ = config_.deadlines->NewAlarm([this] {
      absl::MutexLock lock(&mu_);
      if (worker_ != nullptr) worker_->WakeReader();
    });
    throttle_alarm_ = config_.deadlines->NewAlarm([this] { ThrottleIfIdle(); });
  }
}

absl::Time IdleThrottleTick(absl::Time t) {
  const int64_t tick = absl::ToInt64Nanoseconds(kIdleThrottleDelay);
  const int64_t since_epoch = absl::ToUnixNanos(t);
  return absl::FromUnixNanos((since_epoch / tick + (since_epoch % tick > 0 ? 1 : 0)) * tick);
}

void Session::ThrottleIfIdle() {
  absl::MutexLock lock(&mu_);
  // A request in flight: its end arms the alarm again. A worker serving a same-host channel
  // is never throttled.
  if (worker_ == nullptr || requests_.size() != 0 || local_worker_end_ != nullptr) return;
  const absl::Time due = idle_since_ + kIdleThrottleDelay;
  if (absl::Now() < due) {
    throttle_alarm_->Arm(IdleThrottleTick(due));  // requests came and went since it was armed
    return;
  }
  worker_->Throttle();
}

Session::~Session() { Shutdown(); }

void Session::Reply(const v1::Request& request, v1::Response response) {
  response.set_id(request.id());
  sink_->Send(std::move(response));
}

void Session::Refuse(uint64_t id, v1::Request::OpCase op, const absl::Status& status) {
  config_.metrics.CallsAnswered(op, 0, ErrorCodeOf(status));
  sink_->Send(RefusalResponse(id, status));
}

void Session::RefuseUnparsed(uint64_t id, v1::Request::OpCase op, const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    any_request_ = true;
  }
  Refuse(id, op, status);
}

absl::Duration Session::CallTimeout() {
  absl::MutexLock lock(&mu_);
  return call_timeout_;
}

bool Session::HandleRequest(const v1::Request& request, bool client_waits) {
  bool first = false;
  {
    absl::MutexLock lock(&mu_);
    first = !any_request_;
    any_request_ = true;
  }
  // A client that answers a callback waits for the call it is inside, whenever its answer
  // arrives (often before this thread asks for it, while it writes the invoke).
  answer_in_place_ = client_waits || request.op_case() == v1::Request::kCallbackReturn;
  absl::StatusOr<Answer> answer = Dispatch(request, first);
  answer_in_place_ = false;
  if (!answer.ok()) {
    // Refused here (or no worker could start for it): the request never reached a worker.
    // One that Enqueue accepted is answered by the reader thread, even when its send failed.
    Refuse(request.id(), request.op_case(), answer.status());
  } else if (answer->has_value()) {
    Reply(request, **std::move(answer));
  }
  // A request with the read side taken went to the worker and has no answer of its own yet:
  // no write of this thread's holds the side from the reader thread but the worker's answer.
  if (read_side_) ReadAnswerInPlace();
  sink_->Flush();
  if (answer.ok() && request.op_case() == v1::Request::kOpen) TakePooledWorker();
  return !(answer.ok() && request.op_case() == v1::Request::kClose);
}

void Session::TakePooledWorker() {
  {
    absl::MutexLock lock(&mu_);
    if (!restart_) return;
  }
  // Without a pooled worker for it (none idle, no pool, a scratch directory), or on a
  // failure, the first request that needs a worker starts one (EnsureWorker) and reports
  // what fails.
  (void)EnsureWorker(/*ahead=*/true);
}

bool Session::HandleRequest(v1::Request* request, bool client_waits) {
  strippable_ = request;
  const bool more = HandleRequest(*request, client_waits);
  strippable_ = nullptr;
  return more;
}

void Session::StripBlocks(const v1::Request& request) {
  if (&request != strippable_) return;
  // Swapped out, not cleared: a cleared string (an arena's ones too) keeps its buffer. An
  // empty one is left alone (asking for it would make one).
  auto free_data = [](auto& holder) {
    if (!holder.data().empty()) std::string().swap(*holder.mutable_data());
  };
  switch (strippable_->op_case()) {
    case v1::Request::kCall:
      for (v1::MemoryBlock& block : *strippable_->mutable_call()->mutable_blocks()) {
        free_data(block);
      }
      break;
    case v1::Request::kBatch:
      for (v1::Call& call : *strippable_->mutable_batch()->mutable_calls()) {
        for (v1::MemoryBlock& block : *call.mutable_blocks()) free_data(block);
      }
      break;
    case v1::Request::kWriteMemory:
      free_data(*strippable_->mutable_write_memory());
      break;
    default:
      break;
  }
}

bool Session::MayReadInPlace() {
  if (!answer_in_place_ || read_side_) return false;
  if (in_place_skips_ > 0) {
    --in_place_skips_;
    return false;
  }
  absl::MutexLock lock(&mu_);
  // A worker serving a same-host channel keeps its reader thread on the channel.
  return local_worker_end_ == nullptr;
}

bool Session::NextFollows() const {
  // The client's next request (or its answer to a callback) comes a round trip after this
  // one's answer, if it waits for each; the spin for it costs one spin if it does not. It
  // must not take a CPU another session's request could use: no other worker runs one
  // (SessionWorker::BusyWorkers, as for reading in place), and one session's worker spins
  // at a time (SpinTurn). A worker serving a same-host channel takes its calls there.
  return local_worker_end_ == nullptr && SessionWorker::BusyWorkers() <= 1 &&
         SpinTurn::OfProcess().Take(this, absl::Now());
}

void Session::SendReadingInPlace(WorkerSupervisor* worker, bool in_place,
                                 absl::FunctionRef<bool()> fits, absl::FunctionRef<void()> send) {
  // Taken before the send, the read side makes the worker's answer wake no other thread; but
  // a send that waits for room in the ring needs the reader thread free to end a worker that
  // never makes it: then the side is taken after the send.
  if (in_place) {
    // Counted from before the send: the reader thread may take the answer before the side.
    absl::MutexLock lock(&mu_);
    answers_before_send_ = answers_accepted_;
  }
  if (in_place && fits()) read_side_ = worker->TakeReadSide();
  send();
  if (in_place && !read_side_) read_side_ = worker->TakeReadSide();
}

void Session::ReadAnswerInPlace() {
  const uint64_t answers = answers_before_send_;
  // Until the worker answers a request (the one just sent, or one queued before it, which
  // then answers first) or invokes a callback: the client acts on either.
  const bool answered = read_side_.Read(absl::Now() + kAnswerInPlaceSpin, [this, answers] {
    absl::MutexLock lock(&mu_);
    return answers_accepted_ != answers;
  });
  read_side_ = WorkerSupervisor::ReadSide();
  in_place_backoff_ = answered ? 0 : std::min(2 * in_place_backoff_ + 1, kMaxAnswerInPlaceBackoff);
  in_place_skips_ = in_place_backoff_;
}

absl::StatusOr<Session::Answer> Session::Dispatch(const v1::Request& request, bool first) {
  if (request.id() == 0) return InvalidArgumentAt("id", "request ids start at 1 (0 is reserved)");
  if (request.channel_invocation() != 0) {
    if (request.invocation() != 0) {
      return InvalidArgumentAt("channel_invocation",
                               "a request runs inside one invocation: not with `invocation`");
    }
    if (!AllowedThroughBrokerInChannelInvocation(request.op_case())) {
      return InvalidArgumentAt(
          "channel_invocation",
          "only loads, look-ups, callback definitions and memory or layout requests come "
          "through the broker from inside an invocation on the same-host channel");
    }
    absl::MutexLock lock(&mu_);
    if (local_worker_end_ == nullptr) {
      return ErrorStatus(v1::FAILED_PRECONDITION,
                         "channel_invocation: the session has no same-host channel");
    }
    FFIBOX_RETURN_IF_ERROR(requests_.CheckChannelScope(request.channel_invocation()));
  }
  if (request.invocation() != 0 && request.op_case() != v1::Request::kCallbackReturn &&
      request.op_case() != v1::Request::kPing && request.op_case() != v1::Request::kClose) {
    absl::MutexLock lock(&mu_);
    FFIBOX_RETURN_IF_ERROR(requests_.CheckScope(request.invocation()));
  }
  switch (request.op_case()) {
    case v1::Request::kOpen:
      if (!first) {
        return ErrorStatus(v1::FAILED_PRECONDITION, "open must be the first request of a session");
      }
      return Open(request);
    case v1::Request::kPing:
    case v1::Request::kClose: {
      v1::Response response;
      response.mutable_done();
      return response;
    }
    case v1::Request::kParseDeclaration: {
      // Pure text to Signature: answered here, no worker involved.
      v1::Response response;
      FFIBOX_ASSIGN_OR_RETURN(
          *response.mutable_declaration(),
          ParseDeclarationRequest(request.parse_declaration(), config_.type_limits));
      return response;
    }
    case v1::Request::kLoadLibrary:
      return LoadLibrary(request);
    case v1::Request::kResolveFunction:
      return ResolveFunction(request);
    case v1::Request::kCall:
      return Call(request);
    case v1::Request::kBatch:
      return Batch(request);
    case v1::Request::kGetLayout:
      return GetLayout(request);
    case v1::Request::kLookupSymbol:
      return LookupSymbol(request);
    case v1::Request::kReadMemory:
    case v1::Request::kReadMemoryList:
    case v1::Request::kWriteMemory:
    case v1::Request::kAllocMemory:
    case v1::Request::kFreeMemory:
    case v1::Request::kFillMemory:
    case v1::Request::kCopyMemory:
    case v1::Request::kReadString:
      return MemoryOperation(request);
    case v1::Request::kDefineCallback:
      return DefineCallback(request);
    case v1::Request::kFreeCallback:
      return FreeCallback(request);
    case v1::Request::kOpenLocalChannel:
      return OpenLocalChannel(request);
    case v1::Request::kCallbackReturn:
      return CallbackReturn(request);
    case v1::Request::OP_NOT_SET:
      return InvalidArgumentAt("op", "the request names no operation");
    default:
      return ErrorStatus(v1::UNIMPLEMENTED, absl::StrCat("operation ", request.op_case(),
                                                         " is not implemented by this server"));
  }
}

absl::StatusOr<Session::Answer> Session::Open(const v1::Request& request) {
  const v1::OpenSession& open = request.open();
  if (!v1::RestartPolicy_IsValid(open.restart())) {
    return InvalidArgumentAt("open.restart", "unknown restart policy");
  }
  absl::Duration timeout = open.call_timeout_ms() == 0 ? config_.default_call_timeout
                                                       : absl::Milliseconds(open.call_timeout_ms());
  if (timeout > config_.max_call_timeout) {
    return InvalidArgumentAt("open.call_timeout_ms",
                             absl::StrCat("exceeds the server's maximum of ",
                                          absl::FormatDuration(config_.max_call_timeout)));
  }
  FFIBOX_RETURN_IF_ERROR(ValidateEnvironment(open, config_.env_allow));
  uint64_t server_cap = config_.jail.address_space_bytes;
  uint64_t memory_limit = server_cap;
  if (open.memory_limit_bytes() != 0) {
    if (open.memory_limit_bytes() < kMinSessionMemoryBytes ||
        (server_cap != 0 && open.memory_limit_bytes() > server_cap)) {
      return InvalidArgumentAt(
          "open.memory_limit_bytes",
          absl::StrCat("must be at least ", kMinSessionMemoryBytes,
                       server_cap != 0
                           ? absl::StrCat(" and at most the server's cap of ", server_cap)
                           : ""));
    }
    memory_limit = open.memory_limit_bytes();
  }
  uint32_t idle_cpu_percent = config_.jail.idle_cpu_percent;
  if (open.idle_cpu_percent() != 0) {
    if (open.idle_cpu_percent() > 100) {
      return InvalidArgumentAt("open.idle_cpu_percent", "must be 1..100 (percent of one CPU)");
    }
    idle_cpu_percent = open.idle_cpu_percent();
  }
  std::unique_ptr<ScratchDirectory> scratch;
  if (open.scratch_directory()) {
    if (config_.scratch_root.empty()) {
      return ErrorStatus(v1::FAILED_PRECONDITION,
                         "open.scratch_directory: this server has no scratch root "
                         "(jail.scratch_root, --scratch_root)");
    }
    FFIBOX_ASSIGN_OR_RETURN(scratch,
                            ScratchDirectory::Create(config_.scratch_root, session_id_,
                                                     ScratchDirectory::WorkerIds(config_.jail)));
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
  opened->set_max_batch_calls(static_cast<uint32_t>(config_.type_limits.max_batch_calls));
  opened->set_union_members(true);
  opened->set_memory_lists(true);
  opened->set_unchecked_addresses(true);
  opened->set_memory_limit_bytes(memory_limit);
  for (std::string& layer : ActiveJailLayers(config_.jail)) opened->add_jail_layers(layer);
  for (const std::string& waived : config_.jail.waived) opened->add_waived_jail_layers(waived);
  opened->set_scratch_directory(scratch_path);
  opened->set_worker_pids_max(WorkerTasksMax(config_));
  if (config_.cgroups != nullptr) opened->set_idle_cpu_percent(idle_cpu_percent);
  return response;
}

absl::StatusOr<Session::Answer> Session::LoadLibrary(const v1::Request& request) {
  FFIBOX_RETURN_IF_ERROR(ValidateLoadLibrary(request.load_library()));
  v1::Request admitted = request;
  if (config_.allowlist != nullptr) {
    // The worker loads exactly the file that was checked: the resolved absolute path.
    FFIBOX_ASSIGN_OR_RETURN(*admitted.mutable_load_library()->mutable_path(),
                            config_.allowlist->Admit(request.load_library().path()));
  }
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    FFIBOX_ASSIGN_OR_RETURN(pending.handle, handles_.AddLibrary(admitted.load_library().path(),
                                                                admitted.load_library().global()));
    handles_.NoteLoadRequest(request.id(), pending.handle);
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("dlopen ", admitted.load_library().path());
  return Forward(admitted, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::ResolveFunction(const v1::Request& request) {
  const v1::ResolveFunction& resolve = request.resolve_function();
  FFIBOX_RETURN_IF_ERROR(ValidateResolveFunction(resolve, config_.type_limits));
  const bool by_address = resolve.has_address();
  HandleTable::Function function{resolve.library(), resolve.symbol(), resolve.signature()};
  PendingRequest pending;
  if (by_address) {
    // Bound to the worker generation of its address: never replayed after a restart.
    function.generation = resolve.address().generation();
    function.symbol = absl::StrCat("function at 0x", absl::Hex(resolve.address().address()));
    pending.required_generation = function.generation;
  }
  pending.label = by_address ? function.symbol : absl::StrCat("dlsym ", resolve.symbol());
  // A library named by its load request goes to the worker by its handle.
  std::optional<v1::Request> named;
  {
    absl::MutexLock lock(&mu_);
    if (by_address && !AddressIsCurrent(function.generation)) {
      return StaleAddress(function.generation);
    }
    if (resolve.library_request() != 0) {
      const absl::StatusOr<uint64_t> library =
          handles_.LibraryOfRequest(resolve.library_request(), "resolve_function.library_request");
      FFIBOX_RETURN_IF_ERROR(AfterRecordedFailures(library.status()));
      function.library = *library;
      named = request;
      named->mutable_resolve_function()->set_library(function.library);
      named->mutable_resolve_function()->clear_library_request();
    }
    if (!by_address) {
      FFIBOX_RETURN_IF_ERROR(handles_.CheckLibrary(function.library, "resolve_function.library"));
    }
    FFIBOX_ASSIGN_OR_RETURN(pending.handle, handles_.AddFunction(std::move(function)));
    handles_.NoteResolveRequest(request.id(), pending.handle);
    pending.timeout = call_timeout_;
  }
  return Forward(named.has_value() ? *named : request, std::move(pending));
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

CallContext Session::CallContextLocked() const {
  CallContext context;
  context.handles = &handles_;
  context.live_generation = worker_alive_ ? generation_ : 0;
  context.default_timeout = call_timeout_;
  context.max_timeout = config_.max_call_timeout;
  context.limits = &config_.type_limits;
  return context;
}

absl::Status Session::AfterRecordedFailures(absl::Status named) {
  if (!named.ok()) {
    mu_.Await(absl::Condition(
        +[](int* unsent) { return *unsent == 0; }, &failures_unsent_));
  }
  return named;
}

absl::StatusOr<Session::Answer> Session::Call(const v1::Request& request) {
  PendingRequest pending;
  // A call naming its function by its resolve request goes to the worker named by handle:
  // copied here, outside the lock, and named under it.
  std::optional<v1::Request> named;
  if (NamesRequestedFunctions(request)) {
    named = request;
    StripBlocks(request);  // the copy goes down
  }
  const v1::Request& forwarded = named.has_value() ? *named : request;
  {
    absl::MutexLock lock(&mu_);
    if (named.has_value()) {
      FFIBOX_RETURN_IF_ERROR(AfterRecordedFailures(NameRequestedFunctions(*named, handles_)));
    }
    FFIBOX_RETURN_IF_ERROR(ValidateCallRequest(forwarded.call(), CallContextLocked(), &pending));
  }
  // Its function: a worker that answers it is not resolved says why, if its replay failed.
  pending.handle = forwarded.call().function();
  return Forward(forwarded, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::Batch(const v1::Request& request) {
  PendingRequest pending;
  std::optional<v1::Request> named;  // as for a call
  if (NamesRequestedFunctions(request)) {
    named = request;
    StripBlocks(request);
  }
  const v1::Request& forwarded = named.has_value() ? *named : request;
  {
    absl::MutexLock lock(&mu_);
    if (named.has_value()) {
      FFIBOX_RETURN_IF_ERROR(AfterRecordedFailures(NameRequestedFunctions(*named, handles_)));
    }
    FFIBOX_RETURN_IF_ERROR(ValidateBatchRequest(forwarded.batch(), CallContextLocked(), &pending));
  }
  return Forward(forwarded, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::GetLayout(const v1::Request& request) {
  FFIBOX_RETURN_IF_ERROR(
      ValidateType(request.get_layout().type(), config_.type_limits, "get_layout.type"));
  PendingRequest pending;
  pending.label = "layout";
  pending.timeout = CallTimeout();
  return Forward(request, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::LookupSymbol(const v1::Request& request) {
  const v1::LookupSymbol& lookup = request.lookup_symbol();
  FFIBOX_RETURN_IF_ERROR(ValidateLookupSymbol(lookup, config_.type_limits));
  PendingRequest pending;
  std::optional<v1::Request> named;  // the library named by its load request
  {
    absl::MutexLock lock(&mu_);
    uint64_t library = lookup.library();
    if (lookup.library_request() != 0) {
      const absl::StatusOr<uint64_t> named_library =
          handles_.LibraryOfRequest(lookup.library_request(), "lookup_symbol.library_request");
      FFIBOX_RETURN_IF_ERROR(AfterRecordedFailures(named_library.status()));
      library = *named_library;
      named = request;
      named->mutable_lookup_symbol()->set_library(library);
      named->mutable_lookup_symbol()->clear_library_request();
    }
    FFIBOX_RETURN_IF_ERROR(handles_.CheckLibrary(library, "lookup_symbol.library"));
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("dlsym ", lookup.symbol());
  return Forward(named.has_value() ? *named : request, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::MemoryOperation(const v1::Request& request) {
  FFIBOX_RETURN_IF_ERROR(ValidateMemoryRequest(request, config_.type_limits));
  PendingRequest pending;
  pending.label = MemoryOperationName(request);
  if (request.has_read_memory()) {
    pending.read_typed = request.read_memory().has_type();
    pending.read_size = pending.read_typed ? TypeSizeOf(request.read_memory().type())
                                           : request.read_memory().size();
  }
  for (const v1::ReadMemory& read : request.read_memory_list().reads()) {
    pending.read_list.push_back(ExpectedReadOf(read));
  }
  pending.timeout = CallTimeout();
  return Forward(request, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::DefineCallback(const v1::Request& request) {
  FFIBOX_RETURN_IF_ERROR(ValidateDefineCallback(request.define_callback(), config_.type_limits));
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    FFIBOX_ASSIGN_OR_RETURN(pending.handle, handles_.AddCallback(request.define_callback()));
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("define_callback ", pending.handle);
  return Forward(request, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::FreeCallback(const v1::Request& request) {
  const uint64_t id = request.free_callback().callback();
  PendingRequest pending;
  {
    absl::MutexLock lock(&mu_);
    FFIBOX_RETURN_IF_ERROR(handles_.MarkCallbackFreed(id));
    if (!worker_alive_) {
      // Nothing to free in a worker: a new one would not define it.
      handles_.ForgetCallback(id);
      v1::Response response;
      response.mutable_done();
      return response;
    }
    pending.handle = id;
    pending.timeout = call_timeout_;
  }
  pending.label = absl::StrCat("free_callback ", id);
  return Forward(request, std::move(pending));
}

absl::StatusOr<Session::Answer> Session::CallbackReturn(const v1::Request& request) {
  FFIBOX_RETURN_IF_ERROR(AnswerInvocation(request));
  return std::nullopt;  // answered with done
}

absl::Status Session::AnswerInvocation(const v1::Request& request) {
  const v1::CallbackReturn& answer = request.callback_return();
  WorkerSupervisor* worker = nullptr;
  bool next_follows = false;
  {
    absl::MutexLock lock(&mu_);
    FFIBOX_ASSIGN_OR_RETURN(const InFlightRequests::Invocation* open,
                            requests_.AnswerableInvocation(answer.invocation()));
    FFIBOX_RETURN_IF_ERROR(ValidateCallbackReturn(answer, *open->signature, open->shipped));
    requests_.CloseInvocation(answer.invocation());
    worker = worker_alive_ ? worker_.get() : nullptr;
    next_follows = NextFollows();
  }
  // Answered ahead of anything the worker sends after it (docs/protocol.md). When this
  // thread reads the worker's next message in place, the two leave in one write; else the
  // done goes with the reader thread's next write, or at HandleRequest's Flush, whichever
  // comes first.
  if (request.id() != 0) {
    v1::Response done;
    done.set_id(request.id());
    done.mutable_done();
    sink_->SendWithNext(std::move(done));
  }
  if (worker != nullptr) {
    internal::WorkerRequest wrapped;
    wrapped.set_id(0);  // not answered by the worker
    wrapped.set_invocation(answer.invocation());
    *wrapped.mutable_request() = request;
    wrapped.mutable_request()->set_id(0);
    wrapped.set_next_follows(next_follows);
    // The call it answers goes on: its answer may be read here. A failed send means the
    // worker is dying; its reader reports that.
    SendReadingInPlace(
        worker, MayReadInPlace(), [&] { return worker->SendFitsNow(wrapped); },
        [&] { (void)worker->Send(wrapped); });
  }
  return absl::OkStatus();
}

void Session::FinishInFlight(absl::FunctionRef<bool()> client_gone) {
  for (;;) {
    std::vector<uint64_t> unanswerable;
    {
      absl::MutexLock lock(&mu_);
      client_closed_side_ = true;
      auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !worker_alive_ || (requests_.size() == 0 && !requests_.HasOpenInvocations()) ||
               !requests_.AnswerableInvocations().empty();
      };
      // Polled: a client that disconnects or cancels wakes nothing here (and a worker that
      // invokes callbacks without end keeps the condition true).
      do {
        if (client_gone()) return;
      } while (!mu_.AwaitWithTimeout(absl::Condition(&settled), kClientGonePoll));
      if (!worker_alive_) return;
      unanswerable = requests_.AnswerableInvocations();
      if (unanswerable.empty()) return;  // nothing in flight
    }
    for (uint64_t invocation : unanswerable) {
      v1::Request failed;  // id 0: the client acknowledges nothing
      failed.mutable_callback_return()->set_invocation(invocation);
      failed.mutable_callback_return()->set_error(
          "the client closed its side of the session's stream: no callback can be answered");
      // Refused when the worker died meanwhile (the invocation closed with it), or when the
      // invocation takes no such answer: then the session ends as for a cancelled client.
      if (!AnswerInvocation(failed).ok()) return;
    }
    sink_->Flush();
  }
}

absl::StatusOr<Session::Answer> Session::Forward(const v1::Request& request,
                                                 PendingRequest pending) {
  pending.client_id = request.id();
  pending.op = request.op_case();
  pending.channel_scope = request.channel_invocation() != 0;
  pending.scope = pending.channel_scope ? request.channel_invocation() : request.invocation();
  pending.answer_limits = AnswerLimitsOf(request, pending);
  // A load (a dlopen, milliseconds) or a same-host channel's set-up never answers within the
  // spin: its answer is left to the reader thread.
  const bool may_read_in_place = request.op_case() != v1::Request::kLoadLibrary &&
                                 request.op_case() != v1::Request::kOpenLocalChannel;
  absl::Status status;
  if (pending.scope != 0) {
    // Inside an invocation of the live worker: never start a new one for it.
    status = Enqueue(request, pending, may_read_in_place);
    if (status.ok()) return std::nullopt;
  }
  for (int attempt = 0; pending.scope == 0 && attempt < kMaxStartAttempts; ++attempt) {
    // A dead worker's supervisor is destroyed here, which waits for its reader thread.
    read_side_ = WorkerSupervisor::ReadSide();
    status = EnsureWorker();
    if (!status.ok()) break;
    status = Enqueue(request, pending, may_read_in_place);
    if (status.ok()) return std::nullopt;
    if (ErrorCodeOf(status) == v1::STALE_HANDLE) break;
  }
  absl::MutexLock lock(&mu_);
  RecordOutcome(pending, ErrorResponse(pending.client_id, ToProtoError(status)));
  return status;
}

absl::Status Session::EnsureWorker(bool ahead) {
  std::unique_ptr<WorkerSupervisor> dead;
  SessionWorker::Settings settings;
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
    settings.generation = ++generation_;
    if (scratch_ != nullptr) settings.scratch_directory = scratch_->path();
    settings.memory_limit_bytes = memory_limit_bytes_;
    settings.idle_cpu_percent = idle_cpu_percent_;
    settings.ahead = ahead;
  }
  // The dead worker's reader reaped it and reported its death; wait for the reader to end,
  // then the worker's cgroup is removed.
  dead.reset();

  absl::StatusOr<std::unique_ptr<WorkerSupervisor>> started =
      WorkerSupervisor::Start(config_, settings, session_id_, &output_budget_, this);
  if (!started.ok()) {
    // No worker had this generation: the next start takes it again, and is a restart only
    // if a worker lived before.
    absl::MutexLock lock(&mu_);
    --generation_;
    return started.status();
  }
  WorkerSupervisor* worker = started->get();
  {
    absl::MutexLock lock(&mu_);
    worker_ = *std::move(started);
    worker_alive_ = true;
  }
  // Only now: a worker that dies at once is reported to a session that knows it.
  if (absl::Status reading = worker->StartReader(); !reading.ok()) {
    std::unique_ptr<WorkerSupervisor> unread;
    {
      absl::MutexLock lock(&mu_);
      unread = std::move(worker_);
      worker_alive_ = false;
      --generation_;  // as for a worker that did not start
    }
    unread->Stop();
    return reading;
  }
  if (settings.generation > 1) {
    config_.metrics.WorkerRestarted();
    sink_->Send(EventResponse(v1::SessionEvent::WORKER_RESTARTED, settings.generation, nullptr));
    ReplayHandles();
  }
  return absl::OkStatus();
}

void Session::ReplayHandles() {
  std::vector<HandleTable::Replay> replays;
  absl::Duration timeout;
  {
    absl::MutexLock lock(&mu_);
    replays = handles_.Replays();
    timeout = call_timeout_;
  }
  // Replays are queued ahead of the request that caused the restart, so it runs with every
  // handle in place. A failed replay leaves the handle's calls failing, saying why
  // (RecordLost): in the worker's answer, or here when the library's file cannot be opened
  // again (removed; RESOURCE_EXHAUSTED, out of descriptors, stops the replays instead: the
  // next restart tries again).
  for (HandleTable::Replay& replay : replays) {
    PendingRequest pending;
    pending.op = replay.op;
    pending.handle = replay.handle;
    pending.label = replay.label;
    pending.timeout = timeout;
    const absl::Status queued = Enqueue(replay.request, std::move(pending));
    if (queued.ok()) continue;
    if (replay.op != v1::Request::kLoadLibrary ||
        ToProtoError(queued).code() != v1::LIBRARY_LOAD_FAILED) {
      return;  // the worker is gone, or the session closing
    }
    absl::MutexLock lock(&mu_);
    handles_.RecordOutcome(replay.op, replay.handle, /*succeeded=*/false);
    handles_.RecordLost(replay.op, replay.handle,
                        absl::StrCat(replay.label, " failed: ", queued.message()));
  }
}

absl::Status Session::Enqueue(const v1::Request& request, PendingRequest pending,
                              bool may_read_in_place) {
  internal::WorkerRequest wrapped;
  WorkerSupervisor* worker = nullptr;
  bool was_idle = false;
  absl::Time head_deadline = absl::InfiniteFuture();
  // A load hands the worker a descriptor of the file the allowlist admitted.
  LibraryFd library;
  if (request.has_load_library()) {
    absl::Status opened = OpenLibraryFor(request.load_library().path(), &library);
    if (!opened.ok()) return opened;
  }
  // A same-host channel hands the worker its memfd, and the client the same through the door.
  // The client gets it from the door once the worker attached it (AcceptReply).
  LibraryFd local_memfd;
  if (request.has_open_local_channel()) {
    uint64_t memory_limit = 0;
    {
      absl::MutexLock lock(&mu_);
      memory_limit = memory_limit_bytes_;
    }
    FFIBOX_ASSIGN_OR_RETURN(
        local_memfd.fd, ShmChannel::CreateMemfd(
                            kLocalChannelRingBytes,
                            LocalSharedBytes(config_.type_limits.max_block_bytes, memory_limit)));
    auto setup = std::make_shared<PendingRequest::LocalChannelSetup>();
    FFIBOX_ASSIGN_OR_RETURN(setup->worker_end, ShmChannel::Attach(local_memfd.fd));
    setup->memfd.fd = fcntl(local_memfd.fd, F_DUPFD_CLOEXEC, 0);
    if (setup->memfd.fd < 0) {
      return ErrorStatus(v1::RESOURCE_EXHAUSTED, "no descriptor left for the same-host channel");
    }
    pending.local_channel = std::move(setup);
  }
  {
    absl::MutexLock lock(&mu_);
    if (!worker_alive_) return ErrorStatus(v1::WORKER_CRASHED, last_death_.message());
    if (pending.required_generation != 0 && pending.required_generation != generation_) {
      return StaleAddress(pending.required_generation);
    }
    wrapped.set_handle(pending.handle);
    if (pending.channel_scope) {
      wrapped.set_channel_invocation(pending.scope);
    } else {
      wrapped.set_invocation(pending.scope);
    }
    // The invocation may have closed (or its worker died) since HandleRequest checked.
    FFIBOX_ASSIGN_OR_RETURN(InFlightRequests::Queued queued,
                            requests_.Queue(std::move(pending), absl::Now()));
    wrapped.set_id(queued.sequence);
    if (request.has_load_library()) {
      for (const auto& [name, value] : environment_) (*wrapped.mutable_environment())[name] = value;
    }
    if (local_memfd.fd >= 0) {
      wrapped.mutable_local_channel()->set_max_request_bytes(config_.max_message_bytes);
      wrapped.mutable_local_channel()->set_callbacks(request.open_local_channel().callbacks());
    }
    was_idle = queued.became_head;
    if (was_idle) head_deadline = requests_.NextDeadline();
    // The first request in flight lifts the idle CPU throttle.
    if (queued.first) worker_->Busy();
    wrapped.set_next_follows(NextFollows());
    worker = worker_.get();
  }
  if (local_memfd.fd >= 0 && !worker->SendDescriptor(local_memfd.fd, wrapped.id()).ok()) {
    worker->Kill();
  }
  if (library.fd >= 0) {
    wrapped.set_library_descriptor(true);
    // A worker that does not take its descriptors is dead or hostile: kill it, so its
    // reader fails the queued request at once instead of the load waiting out its deadline.
    if (!worker->SendDescriptor(library.fd, wrapped.id()).ok()) worker->Kill();
  }
  // The reader waits with the old head's deadline (or none): make it pick up the new one
  // by then (the timer's alarm: no wakeup at all when the reply comes first), or now.
  if (was_idle) {
    if (reader_alarm_ == nullptr) {
      worker->WakeReader();
    } else if (head_deadline != absl::InfiniteFuture()) {
      reader_alarm_->Arm(head_deadline);
    }
  }
  // A failed send means the worker is dying or broke the channel (which wakes the reader):
  // its reader fails the queued request. The client's request goes down uncopied, its id
  // included (the worker answers `wrapped`'s).
  // The answer may be read here (SendReadingInPlace).
  SendReadingInPlace(
      worker, was_idle && may_read_in_place && MayReadInPlace(),
      [&] { return worker->SendFitsNow(wrapped, request); },
      [&] { (void)worker->Send(wrapped, request); });
  StripBlocks(request);
  return absl::OkStatus();
}

absl::StatusOr<Session::Answer> Session::OpenLocalChannel(const v1::Request& request) {
  if (config_.local_door == nullptr) {
    return ErrorStatus(v1::FAILED_PRECONDITION,
                       "a same-host channel is offered on ffiboxd's unix-socket listeners only");
  }
  if (request.invocation() != 0) {
    return InvalidArgumentAt("invocation", "a same-host channel is opened at the top level");
  }
  PendingRequest pending;
  pending.label = "open a same-host channel";
  pending.timeout = CallTimeout();
  return Forward(request, std::move(pending));
}

namespace {

// The host uid a jailed worker runs as (none without the jail): its user namespace's map, or,
// with that layer waived, nobody under root and ffiboxd's own uid otherwise.
std::optional<uid_t> JailedWorkerUid(const JailOptions& jail) {
  if (!jail.enabled) return std::nullopt;
  const std::vector<std::string> layers = ActiveJailLayers(jail);
  if (std::find(layers.begin(), layers.end(), JailLayerKey(JailLayer::kUserNamespace)) !=
      layers.end()) {
    return WorkerHostIds().uid;
  }
  return geteuid() == 0 ? kNobodyId : geteuid();
}

}  // namespace

absl::Status Session::OpenLibraryFor(const std::string& path, LibraryFd* library) {
  bool by_descriptor = false;
  {
    absl::MutexLock lock(&mu_);
    // Only an admitted path is opened (every server has an allowlist; sessions built
    // without one, in tests, pass the path through).
    by_descriptor =
        config_.allowlist != nullptr && worker_ != nullptr && worker_->loads_by_descriptor();
  }
  if (!by_descriptor) return absl::OkStatus();
  absl::StatusOr<int> fd =
      OpenLibraryForWorker(path, &library_copies_, JailedWorkerUid(config_.jail),
                           config_.jail.enabled && WorkerIsAnotherUser(),
                           /*client_reads_as_broker=*/config_.client_reads_as_broker);
  if (!fd.ok()) {
    return ErrorStatus(
        absl::IsResourceExhausted(fd.status()) ? v1::RESOURCE_EXHAUSTED : v1::LIBRARY_LOAD_FAILED,
        absl::StrCat("cannot open ", fd.status().message()));
  }
  library->fd = *fd;
  return absl::OkStatus();
}

void Session::Shutdown() {
  if (reader_alarm_ != nullptr) reader_alarm_->Cancel();
  if (throttle_alarm_ != nullptr) throttle_alarm_->Cancel();
  SpinTurn::OfProcess().Release(this);
  WorkerSupervisor* worker = nullptr;
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    worker = worker_.get();
  }
  // Its reader reports the death to a closing session (which tells the client nothing)
  // and ends.
  if (worker != nullptr) worker->Stop();
  std::unique_ptr<WorkerSupervisor> last;
  {
    absl::MutexLock lock(&mu_);
    last = std::move(worker_);
    worker_alive_ = false;
  }
  // Reaped outside the lock: no zombie outlives the session; then its cgroup goes.
  last.reset();
  // A channel its client never fetched holds no memory past the session (the reader that
  // registers channels has ended).
  if (config_.local_door != nullptr) config_.local_door->Forget(session_id_);
}
}  // namespace ffibox

// The worker side of Session (see session.h): starting workers and replaying the session's
// handles, sending requests, reading and checking what the worker sends, deadlines, deaths,
// and shutdown. session.cc holds the client side.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/errors.h"
#include "server/jail/jail_layers.h"
#include "server/jail/user_namespace.h"
#include "server/library_descriptor.h"
#include "server/request_validation.h"
#include "server/responses.h"
#include "server/session.h"
#include "server/worker_limits.h"
#include "server/worker_protocol.pb.h"
#include "server/worker_reply.h"

namespace ffibox {
WorkerLaunchOptions WorkerLaunchOptionsFor(const SessionConfig& config, uint64_t generation) {
  WorkerLaunchOptions options;
  options.worker_path = config.worker_path;
  options.generation = generation;
  options.max_reply_bytes = config.max_reply_bytes;
  options.max_callback_depth = config.max_callback_depth;
  options.jail = config.jail;
  return options;
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
  std::unique_ptr<WorkerCgroup> dead_cgroup;
  {
    absl::MutexLock lock(&mu_);
    dead_cgroup = std::move(cgroup_);
  }
  dead_cgroup.reset();  // after the reap: the group is empty

  WorkerLaunchOptions options = WorkerLaunchOptionsFor(config_, generation);
  {
    absl::MutexLock lock(&mu_);
    if (scratch_ != nullptr) options.jail.scratch_directory = scratch_->path();
  }
  // The pool holds generation-1 workers only (a worker stamps its generation on addresses),
  // started before any session, so without a scratch directory.
  std::unique_ptr<WorkerProcess> pooled;
  if (generation == 1 && config_.pool != nullptr && options.jail.scratch_directory.empty()) {
    pooled = config_.pool->Take();
  }
  absl::StatusOr<std::unique_ptr<WorkerProcess>> started = std::move(pooled);
  if (*started == nullptr) started = WorkerProcess::Start(options);
  if (!started.ok()) {
    // Fail closed: a worker whose jail could not be applied is not started, and the next
    // worker gets the same layers again.
    std::string message = absl::StrCat("cannot start a worker: ", started.status().message());
    fprintf(stderr, "ffiboxd: session %s: %s\n", session_id_.c_str(), message.c_str());
    v1::ErrorCode code = v1::INTERNAL;
    if (IsJailError(started.status())) {
      code = v1::JAIL_UNAVAILABLE;
    } else if (absl::IsResourceExhausted(started.status())) {
      code = v1::RESOURCE_EXHAUSTED;
    }
    return ErrorStatus(code, message);
  }
  // Before the first request: a pooled worker was started before this session existed, and
  // the session may have asked for a lower memory cap than the server's.
  uint64_t memory_limit = 0;
  {
    absl::MutexLock lock(&mu_);
    memory_limit = memory_limit_bytes_;
  }
  absl::Status limited = ApplyWorkerLimits((*started)->worker_pid(),
                                           WorkerLimits{memory_limit, config_.jail.cpu_seconds});
  if (!limited.ok()) {
    return ErrorStatus(v1::INTERNAL,
                       absl::StrCat("cannot limit the session's worker: ", limited.message()));
  }
  // Fail closed: a worker whose cgroup cannot be made serves nothing.
  std::unique_ptr<WorkerCgroup> cgroup;
  if (config_.cgroups != nullptr) {
    uint32_t idle_cpu_percent = 0;
    {
      absl::MutexLock lock(&mu_);
      idle_cpu_percent = idle_cpu_percent_;
    }
    absl::StatusOr<std::unique_ptr<WorkerCgroup>> attached = config_.cgroups->Attach(
        (*started)->worker_pid(),
        WorkerCgroupLimits{config_.jail.worker_pids_max, memory_limit, idle_cpu_percent});
    if (!attached.ok()) {
      (*started)->Kill();
      started->reset();  // reaped here, before its group goes
      std::string message =
          absl::StrCat("cannot put the worker in its cgroup: ", attached.status().message());
      fprintf(stderr, "ffiboxd: session %s: %s\n", session_id_.c_str(), message.c_str());
      return ErrorStatus(v1::JAIL_UNAVAILABLE, message);
    }
    cgroup = *std::move(attached);
  }
  std::unique_ptr<ProcessCapWatch> process_cap;
  if (cgroup == nullptr && config_.jail.processes > 0) {
    const pid_t worker_pid = (*started)->worker_pid();
    process_cap = std::make_unique<ProcessCapWatch>(
        worker_pid, worker_pid != (*started)->pid() ? 1 : 0, config_.jail.processes);
  }
  WorkerProcess* worker = started->get();
  {
    absl::MutexLock lock(&mu_);
    worker_ = std::move(*started);
    cgroup_ = std::move(cgroup);
    process_cap_ = std::move(process_cap);
    worker_alive_ = true;
    scopes_.clear();
    in_flight_ = 0;
    invocations_.clear();
  }
  // What the library prints reaches the client as WORKER_OUTPUT events, within a budget.
  for (auto [fd, stream] :
       {std::pair{worker->stdout_fd(), v1::STDOUT}, std::pair{worker->stderr_fd(), v1::STDERR}}) {
    if (fd < 0) continue;
    worker->channel().Watch(fd, [this, fd = fd, stream = stream, generation](short) {
      bool closed = false;
      std::optional<std::string> output = output_budget_.Drain(fd, absl::Now(), &closed);
      if (output.has_value()) {
        v1::Response event = EventResponse(v1::SessionEvent::WORKER_OUTPUT, generation, nullptr);
        event.mutable_event()->set_output(*std::move(output));
        event.mutable_event()->set_stream(stream);
        sink_->Send(event);
      }
      return !closed;
    });
  }
  // A forbidden syscall stops the worker in the kernel until ffiboxd reads it here.
  if (worker->seccomp_listener() >= 0) {
    // It also hangs up when the worker ends; only a pending notification is read.
    worker->channel().Watch(worker->seccomp_listener(), [worker](short revents) {
      return (revents & POLLIN) != 0 && worker->HandleSeccompNotification();
    });
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
  // A load hands the worker a descriptor of the file the allowlist admitted.
  LibraryFd library;
  if (request.has_load_library()) {
    absl::Status opened = OpenLibraryFor(request.load_library().path(), &library);
    if (!opened.ok()) return opened;
  }
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
    if (request.has_load_library()) {
      for (const auto& [name, value] : environment_) (*wrapped.mutable_environment())[name] = value;
    }
    wrapped.set_handle(pending.handle);
    wrapped.set_invocation(pending.scope);
    Scope& scope = scopes_[pending.scope];
    if (pending.scope != 0) scope.depth = invocations_[pending.scope].depth;
    was_idle = scope.queue.empty();
    if (was_idle) scope.head_deadline = absl::Now() + pending.timeout;
    scope.queue.push_back(std::move(pending));
    // The first request in flight lifts the idle CPU throttle.
    if (++in_flight_ == 1 && cgroup_ != nullptr) cgroup_->SetBusy(true).IgnoreError();
    worker = worker_.get();
  }
  *wrapped.mutable_request() = request;
  wrapped.mutable_request()->set_id(0);
  if (library.fd >= 0) {
    wrapped.set_library_descriptor(true);
    // A worker that does not take its descriptors is dead or hostile: kill it, so its
    // reader fails the queued request at once instead of the load waiting out its deadline.
    if (!worker->SendDescriptor(library.fd, wrapped.id()).ok()) worker->Kill();
  }
  // The reader waits with the old head's deadline (or none): make it pick up the new one.
  if (was_idle) worker->channel().Interrupt();
  // A failed send means the worker is dying; its reader fails the queued request.
  (void)worker->channel().Send(wrapped.SerializeAsString());
  return absl::OkStatus();
}

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
      OpenLibraryForWorker(path, config_.jail.enabled && WorkerIsAnotherUser());
  if (!fd.ok()) {
    return ErrorStatus(
        absl::IsResourceExhausted(fd.status()) ? v1::RESOURCE_EXHAUSTED : v1::LIBRARY_LOAD_FAILED,
        absl::StrCat("cannot open ", fd.status().message()));
  }
  library->fd = *fd;
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
      std::vector<std::string> limit_hits;
      {
        absl::MutexLock lock(&mu_);
        accepted = AcceptFrame(*frame, *worker, &to_client);
        // Parsed: its bytes are not needed while the reply goes out (one copy fewer at the
        // peak of a large reply).
        std::string().swap(*frame);
        if (accepted.ok() && in_flight_ == 0 && cgroup_ != nullptr) {
          // Idle again: the throttle is back on, and whatever limit bit during the
          // request is told to the client before the reply.
          cgroup_->SetBusy(false).IgnoreError();
          limit_hits = cgroup_->NewLimitHits();
        } else if (accepted.ok() && in_flight_ == 0 && process_cap_ != nullptr) {
          limit_hits = process_cap_->NewLimitHits();
        }
      }
      if (accepted.ok()) {
        for (const std::string& hit : limit_hits) {
          v1::Error error;
          error.set_code(v1::RESOURCE_EXHAUSTED);
          error.set_message(hit);
          fprintf(stderr, "ffiboxd: session %s: limit reached: %s\n", session_id_.c_str(),
                  hit.c_str());
          sink_->Send(EventResponse(v1::SessionEvent::LIMIT_REACHED, worker->generation(), &error));
        }
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
  // ~WorkerProcess reaps: no zombie outlives the session; then its cgroup goes.
  last.reset();
  std::unique_ptr<WorkerCgroup> cgroup;
  {
    absl::MutexLock lock(&mu_);
    cgroup = std::move(cgroup_);
  }
}

}  // namespace ffibox

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
#include "core/status_macros.h"
#include "server/jail/jail_layers.h"
#include "server/jail/user_namespace.h"
#include "server/library_descriptor.h"
#include "server/request_validation.h"
#include "server/responses.h"
#include "server/session.h"
#include "server/worker_protocol.pb.h"
#include "server/worker_reply.h"

namespace ffibox {
absl::Status Session::EnsureWorker() {
  std::unique_ptr<SessionWorker> dead;
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
  }
  const uint64_t generation = settings.generation;
  // The dead worker's reader thread has finished its work under mu_; wait for it to exit.
  if (reader_.joinable()) reader_.join();
  dead.reset();  // reaped, then its cgroup removed

  FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<SessionWorker> started,
                          SessionWorker::Start(config_, settings, session_id_));
  WorkerProcess* worker = &started->process();
  {
    absl::MutexLock lock(&mu_);
    worker_ = std::move(started);
    worker_alive_ = true;
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
  std::vector<HandleTable::Replay> replays;
  absl::Duration timeout;
  {
    absl::MutexLock lock(&mu_);
    replays = handles_.Replays();
    timeout = call_timeout_;
  }
  // Replays are queued ahead of the request that caused the restart, so it runs with every
  // handle in place. A failed replay leaves the handle's calls failing in the worker.
  for (HandleTable::Replay& replay : replays) {
    PendingRequest pending;
    pending.op = replay.op;
    pending.handle = replay.handle;
    pending.label = std::move(replay.label);
    pending.timeout = timeout;
    if (!Enqueue(replay.request, std::move(pending)).ok()) return;
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
    wrapped.set_handle(pending.handle);
    wrapped.set_invocation(pending.scope);
    // The invocation may have closed (or its worker died) since HandleRequest checked.
    FFIBOX_ASSIGN_OR_RETURN(InFlightRequests::Queued queued,
                            requests_.Queue(std::move(pending), absl::Now()));
    wrapped.set_id(queued.sequence);
    if (request.has_load_library()) {
      for (const auto& [name, value] : environment_) (*wrapped.mutable_environment())[name] = value;
    }
    was_idle = queued.became_head;
    // The first request in flight lifts the idle CPU throttle.
    if (queued.first) worker_->Busy();
    worker = &worker_->process();
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
    by_descriptor = config_.allowlist != nullptr && worker_ != nullptr &&
                    worker_->process().loads_by_descriptor();
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
      deadline = requests_.NextDeadline();
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
        if (accepted.ok() && requests_.size() == 0) {
          // Idle again: the throttle is back on, and whatever limit bit during the
          // request is told to the client before the reply.
          limit_hits = worker_->Idle();
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
        std::optional<Culprit> overdue;
        {
          absl::MutexLock lock(&mu_);
          overdue = requests_.FindOverdue(absl::Now());
        }
        if (!overdue.has_value()) continue;
        worker->Kill();
        return HandleWorkerDeath(worker, DeathCause::kDeadline, "", &*overdue);
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
  const PendingRequest* running = requests_.RunningRequest(sequence);
  if (running == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("reply for request ", sequence, ", which is not running"));
  }
  FFIBOX_ASSIGN_OR_RETURN(v1::Response parsed,
                          CheckWorkerResponse(std::move(*reply->mutable_response()), *running));
  PendingRequest done = requests_.Finish(sequence, absl::Now());
  parsed.set_generation(worker.generation());
  RecordOutcome(done, parsed);
  if (done.client_id != 0) *to_client = std::move(parsed);  // replays tell the client nothing
  return absl::OkStatus();
}

absl::Status Session::AcceptInvoke(const v1::CallbackInvoke& invoke) {
  std::shared_ptr<const v1::Signature> signature = handles_.CallbackSignature(invoke.callback());
  if (signature == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("invocation of callback ", invoke.callback(), ", which is not defined"));
  }
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  FFIBOX_RETURN_IF_ERROR(CheckCallbackInvoke(invoke, *signature, &shipped));
  return requests_.OpenInvocation(invoke, std::move(signature), std::move(shipped), call_timeout_,
                                  absl::Now());
}

void Session::RecordOutcome(const PendingRequest& pending, const v1::Response& response) {
  handles_.RecordOutcome(pending.op, pending.handle, !response.has_error());
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
    const Culprit blamed = culprit != nullptr ? *culprit : requests_.InnermostRunning();
    const std::string& last_label = requests_.last_label();
    failed = requests_.Drain(blamed);
    error = DescribeWorkerDeath(exit, cause, blamed.label, blamed.timeout, detail);
    if (blamed.label.empty() && !last_label.empty()) {
      error.set_message(absl::StrCat(error.message(), " (last call: ", last_label, ")"));
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
    if (worker_ != nullptr) worker = &worker_->process();
  }
  if (worker != nullptr) {
    worker->Kill();
    worker->channel().Interrupt();
  }
  if (reader_.joinable()) reader_.join();
  std::unique_ptr<SessionWorker> last;
  {
    absl::MutexLock lock(&mu_);
    last = std::move(worker_);
    worker_alive_ = false;
  }
  // Reaped outside the lock: no zombie outlives the session; then its cgroup goes.
  last.reset();
}

}  // namespace ffibox

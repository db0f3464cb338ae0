#include "server/broker/worker_supervisor.h"

#include <poll.h>

#include <utility>

#include "core/status_macros.h"
#include "core/thread_name.h"

namespace ffibox {

absl::StatusOr<std::unique_ptr<WorkerSupervisor>> WorkerSupervisor::Start(
    const SessionConfig& config, const SessionWorker::Settings& settings,
    absl::string_view session_id, OutputBudget* output_budget, Listener* listener) {
  FFIBOX_ASSIGN_OR_RETURN(std::unique_ptr<SessionWorker> worker,
                          SessionWorker::Start(config, settings, session_id));
  std::unique_ptr<WorkerSupervisor> supervisor(
      new WorkerSupervisor(std::move(worker), output_budget, listener));
  supervisor->WatchDescriptors();
  return supervisor;
}

WorkerSupervisor::~WorkerSupervisor() { Stop(); }

void WorkerSupervisor::WatchDescriptors() {
  WorkerProcess& process = worker_->process();
  // What the library prints reaches the listener within the session's budget.
  for (auto [fd, stream] :
       {std::pair{process.stdout_fd(), v1::STDOUT}, std::pair{process.stderr_fd(), v1::STDERR}}) {
    if (fd < 0) continue;
    process.connection().Watch(fd, [this, fd = fd, stream = stream](short) {
      bool closed = false;
      std::optional<std::string> output = output_budget_->Drain(fd, absl::Now(), &closed);
      if (output.has_value()) listener_->OnOutput(generation(), stream, *std::move(output));
      return !closed;
    });
  }
  // A forbidden syscall stops the worker in the kernel until the broker reads it here.
  if (process.seccomp_listener() >= 0) {
    // It also hangs up when the worker ends; only a pending notification is read.
    process.connection().Watch(process.seccomp_listener(), [&process](short revents) {
      return (revents & POLLIN) != 0 && process.HandleSeccompNotification();
    });
  }
}

absl::Status WorkerSupervisor::StartReader() {
  worker_->process().connection().SetReplyLimits([this] { return listener_->ReplyLimits(); });
  absl::StatusOr<std::thread> reader = StartThread("ffibox-reader", [this] { ReadReplies(); });
  if (!reader.ok()) return reader.status();
  reader_ = *std::move(reader);
  return absl::OkStatus();
}

void WorkerSupervisor::Stop() {
  stopping_.store(true);
  Kill();
  WakeReader();
  if (reader_.joinable()) reader_.join();
}

absl::Status WorkerSupervisor::Send(const internal::WorkerRequest& request) {
  return worker_->process().connection().Send(request);
}

absl::Status WorkerSupervisor::Send(const internal::WorkerRequest& envelope,
                                    const v1::Request& request) {
  return worker_->process().connection().Send(envelope, request);
}

absl::Status WorkerSupervisor::SendDescriptor(int fd, uint64_t tag) {
  return worker_->process().SendDescriptor(fd, tag);
}

void WorkerSupervisor::WakeReader() { worker_->process().connection().Interrupt(); }

void WorkerSupervisor::Kill() { worker_->process().Kill(); }

WorkerSupervisor::ReadSide WorkerSupervisor::TakeReadSide() {
  // Reading in place spins: only while this worker is the process's only busy one, so the
  // spin never takes a CPU another session's worker or stream could use.
  if (!reader_.joinable() || SessionWorker::BusyWorkers() > 1) return ReadSide();
  // The reader thread holds the lock unless it sleeps: then this thread may read instead.
  if (!role_mu_.TryLock()) return ReadSide();
  worker_->process().connection().MuteSleepingReader();
  return ReadSide(this);
}

WorkerSupervisor::ReadSide& WorkerSupervisor::ReadSide::operator=(ReadSide&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::exchange(other.owner_, nullptr);
  }
  return *this;
}

bool WorkerSupervisor::ReadSide::Read(absl::Time until, absl::FunctionRef<bool()> done) {
  if (owner_ == nullptr) return false;
  WorkerConnection& connection = owner_->worker_->process().connection();
  for (;;) {
    if (owner_->violation_.has_value()) return false;
    if (done()) return true;
    absl::StatusOr<internal::WorkerReply> reply = connection.ReceiveInPlace(until);
    if (!reply.ok()) {
      // Nothing yet, an Interrupt or the worker's end: the reader sees them when it wakes.
      // A broken frame was consumed here: the reader is told.
      const absl::StatusCode code = reply.status().code();
      if (code != absl::StatusCode::kDeadlineExceeded && code != absl::StatusCode::kCancelled &&
          code != absl::StatusCode::kUnavailable) {
        owner_->violation_ = std::string(reply.status().message());
      }
      return false;
    }
    absl::Status accepted = owner_->listener_->OnReply(owner_->generation(), *std::move(reply));
    if (!accepted.ok()) owner_->violation_ = std::string(accepted.message());
  }
}

void WorkerSupervisor::ReadSide::Release() {
  if (owner_ == nullptr) return;
  WorkerSupervisor* owner = std::exchange(owner_, nullptr);
  owner->worker_->process().connection().UnmuteSleepingReader();
  const bool violated = owner->violation_.has_value();
  owner->role_mu_.Unlock();
  if (violated) owner->WakeReader();
}

void WorkerSupervisor::ReadReplies() {
  WorkerConnection& connection = worker_->process().connection();
  // Held throughout but while the connection sleeps (ReadInPlace).
  absl::MutexLock role(&role_mu_);
  for (;;) {
    absl::StatusOr<internal::WorkerReply> reply =
        connection.Receive(listener_->NextDeadline(), &role_mu_);
    if (violation_.has_value()) {
      return ReportDeath(/*kill=*/true, DeathCause::kProtocolViolation, *violation_);
    }
    if (reply.ok()) {
      absl::Status accepted = listener_->OnReply(generation(), *std::move(reply));
      if (!accepted.ok()) {
        return ReportDeath(/*kill=*/true, DeathCause::kProtocolViolation, accepted.message());
      }
      // A worker that keeps sending (a callback storm) must not postpone its deadlines.
      const absl::Time now = absl::Now();
      if (listener_->NextDeadline() > now) continue;
      std::optional<Culprit> overdue = listener_->Overdue(now);
      if (!overdue.has_value()) continue;
      return ReportDeath(/*kill=*/true, DeathCause::kDeadline, "", &*overdue);
    }
    switch (reply.status().code()) {
      case absl::StatusCode::kCancelled:
        if (!stopping_.load()) continue;  // woken for a new deadline
        // Stopping: do not wait for end of stream, which never comes while a process the
        // worker forked still holds its end of the channel.
        return ReportDeath(/*kill=*/true, DeathCause::kUnexpected, "");
      case absl::StatusCode::kDeadlineExceeded: {
        std::optional<Culprit> overdue = listener_->Overdue(absl::Now());
        if (!overdue.has_value()) continue;
        return ReportDeath(/*kill=*/true, DeathCause::kDeadline, "", &*overdue);
      }
      case absl::StatusCode::kUnavailable:
        return ReportDeath(/*kill=*/false, DeathCause::kUnexpected, "");
      default:
        // A frame over the size limit, one left unfinished, or one that is not a reply.
        return ReportDeath(/*kill=*/true, DeathCause::kProtocolViolation, reply.status().message());
    }
  }
}

void WorkerSupervisor::ReportDeath(bool kill, DeathCause cause, absl::string_view detail,
                                   const Culprit* culprit) {
  if (kill) Kill();
  WorkerExit exit = worker_->process().Reap();
  exit.oom_kills = worker_->OomKills();
  listener_->OnDeath(generation(), exit, cause, detail, culprit);
  // It runs nothing any more, and once the listener knows, nothing is sent to it.
  worker_->NotBusy();
}

}  // namespace ffibox

// What comes up from the session's worker (see session.h): Session as its supervisor's
// Listener. Each reply is checked against the request it answers before anything of it is
// recorded or relayed; a death fails everything in flight with one typed error.
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/call_answer.h"
#include "core/errors.h"
#include "core/local_channel.h"
#include "core/status_macros.h"
#include "server/broker/limited_log.h"
#include "server/broker/responses.h"
#include "server/broker/session.h"
#include "server/broker/spin_turn.h"
#include "server/broker/worker_reply.h"

namespace ffibox {
namespace {

// How often the reader looks at a same-host call in progress: an eighth of the call
// timeout, within these bounds.
constexpr absl::Duration kLocalCheckMin = absl::Milliseconds(10);
constexpr absl::Duration kLocalCheckMax = absl::Milliseconds(250);

}  // namespace

LimitedLog& Session::EverySessionsLimitLog() {
  static LimitedLog* const log = new LimitedLog(60);
  return *log;
}

absl::Time Session::NextDeadline() {
  absl::MutexLock lock(&mu_);
  absl::Time next = requests_.NextDeadline();
  if (local_worker_end_ != nullptr) next = std::min(next, LocalCallDeadline());
  return next;
}

AnswerLimits Session::ReplyLimits() {
  absl::MutexLock lock(&mu_);
  return requests_.ReplyLimits(config_.type_limits.max_args);
}

std::optional<Session::Culprit> Session::Overdue(absl::Time now) {
  std::optional<Culprit> overdue;
  std::vector<std::string> limit_hits;
  uint64_t generation = 0;
  {
    absl::MutexLock lock(&mu_);
    overdue = requests_.FindOverdue(now);
    const std::optional<LocalCallSnapshot> local = LocalCall();
    // A top-level request overdue while the worker runs a call from the same-host channel
    // has been waiting for that call, not running: its clock starts again (once).
    if (overdue.has_value() && local.has_value() &&
        requests_.PostponeTopLevelHead(overdue->sequence, now)) {
      overdue = requests_.FindOverdue(now);
    }
    if (!overdue.has_value() && local.has_value() && local->deadline <= now) {
      overdue = local->culprit;
    }
    // Calls on the same-host channel pass no reply here: the limits that bit during them are
    // told at the reader's next look instead.
    if (!overdue.has_value() && local_worker_end_ != nullptr && worker_ != nullptr) {
      limit_hits = worker_->NewLimitHits();
      generation = generation_;
    }
  }
  ReportLimitHits(generation, limit_hits);
  return overdue;
}

void Session::ReportLimitHits(uint64_t generation, const std::vector<std::string>& hits) {
  for (const std::string& hit : hits) {
    v1::Error error;
    error.set_code(v1::RESOURCE_EXHAUSTED);
    error.set_message(hit);
    limit_log_.Write(absl::StrCat("ffiboxd: session ", session_id_, ": limit reached: ", hit));
    sink_->Send(EventResponse(v1::SessionEvent::LIMIT_REACHED, generation, &error));
  }
}

std::optional<Session::LocalCallSnapshot> Session::LocalCall() {
  // Untrusted words: a worker (or its client) that lies only escapes its own timeout while
  // its client waits (the client's wait has a deadline of its own, and closing the session
  // kills the worker), or gets its own worker killed. They change as calls come and go, so
  // they are taken as one snapshot: `since`, the others, `since` again, which must agree.
  if (local_worker_end_ == nullptr) return std::nullopt;
  const uint64_t since = local_worker_end_->LoadStatusWord(kLocalBusySinceWord);
  const uint64_t timeout_ms = local_worker_end_->LoadStatusWord(kLocalBusyTimeoutWord);
  const uint64_t function = local_worker_end_->LoadStatusWord(kLocalBusyFunctionWord);
  const uint64_t mono = LocalClockNanos();
  if (since == 0 || since > mono ||
      local_worker_end_->LoadStatusWord(kLocalBusySinceWord) != since) {
    return std::nullopt;
  }
  LocalCallSnapshot call;
  call.culprit.timeout = timeout_ms == 0
                             ? call_timeout_
                             : std::min(absl::Milliseconds(static_cast<int64_t>(
                                            std::min<uint64_t>(timeout_ms, INT64_MAX / 2))),
                                        config_.max_call_timeout);
  absl::StatusOr<const HandleTable::Function*> known = handles_.FindFunction(function);
  // A memory or layout request names no function (0).
  call.culprit.label = known.ok()      ? (*known)->symbol
                       : function == 0 ? "a request on the same-host channel"
                                       : "a call on the same-host channel";
  call.deadline = absl::Now() - absl::Nanoseconds(mono - since) + call.culprit.timeout;
  return call;
}

absl::Time Session::LocalCallDeadline() {
  // Look again soon (an eighth of the session's timeout, within bounds), so a call that starts
  // is not missed for long and the limits that bite during a call are told soon after it
  // (a look is the only time they are: a call on the channel sends the broker nothing); at
  // the latest at the running call's deadline.
  const absl::Time next_look =
      absl::Now() + std::clamp(call_timeout_ / 8, kLocalCheckMin, kLocalCheckMax);
  std::optional<LocalCallSnapshot> running = LocalCall();
  if (running.has_value()) return std::min(running->deadline, next_look);
  return next_look;
}

void Session::CloseLocalChannel() {
  if (local_worker_end_ != nullptr) local_worker_end_->Close();
  local_worker_end_.reset();
}

void Session::OnOutput(uint64_t generation, v1::OutputStream stream, std::string output) {
  v1::Response event = EventResponse(v1::SessionEvent::WORKER_OUTPUT, generation, nullptr);
  event.mutable_event()->set_output(std::move(output));
  event.mutable_event()->set_stream(stream);
  sink_->Send(std::move(event));
}

absl::Status Session::OnReply(uint64_t generation, internal::WorkerReply reply) {
  std::optional<v1::Response> to_client;
  std::vector<std::string> limit_hits;
  bool failure = false;
  {
    absl::MutexLock lock(&mu_);
    const size_t in_flight = requests_.size();
    FFIBOX_RETURN_IF_ERROR(AcceptReply(generation, std::move(reply), &to_client));
    failure = to_client.has_value() && to_client->has_error();
    if (failure) ++failures_unsent_;
    // The worker may spin for what follows: the turn lasts while it may.
    SpinTurn::OfProcess().Answered(this, absl::Now());
    if (requests_.size() == 0 && worker_ != nullptr) {
      // Idle again: whatever limit bit during the request is told to the client before the
      // reply, and the throttle comes back on (kIdleThrottleDelay after the end of the last
      // request, unless another comes first; an event the worker sends while idle starts no
      // idle time, or it could keep its throttle off). A worker serving a same-host channel
      // is never idle (its calls pass no request here), but its limits are told all the same.
      limit_hits = worker_->Idle();
      if (local_worker_end_ == nullptr && requests_.size() < in_flight) {
        idle_since_ = absl::Now();
        if (throttle_alarm_ != nullptr) {
          throttle_alarm_->Arm(IdleThrottleTick(idle_since_ + kIdleThrottleDelay));
        } else {
          worker_->Throttle();
        }
      }
    }
  }
  ReportLimitHits(generation, limit_hits);
  if (to_client.has_value()) sink_->Send(std::move(*to_client));
  if (failure) {
    absl::MutexLock lock(&mu_);
    --failures_unsent_;
  }
  return absl::OkStatus();
}

absl::Status Session::AcceptReply(uint64_t generation, internal::WorkerReply reply,
                                  std::optional<v1::Response>* to_client) {
  if (reply.started()) {
    return absl::InvalidArgumentError("the worker said again that it started");
  }
  if (reply.has_invoke()) {
    absl::Status invoke = AcceptInvoke(reply.mutable_invoke());
    if (!invoke.ok()) return invoke;
    // No answer can come from a client that closed its side: FinishInFlight fails it.
    if (client_closed_side_) return absl::OkStatus();
    v1::Response response;
    response.set_generation(generation);
    *response.mutable_callback_invoke() = std::move(*reply.mutable_invoke());
    *to_client = std::move(response);
    return absl::OkStatus();
  }
  if (reply.has_event()) {
    absl::Status event = CheckWorkerEvent(reply.event());
    if (!event.ok()) return event;
    const std::string note =
        events_dropped_ == 0 ? std::string()
                             : absl::StrCat("[ffibox: ", events_dropped_,
                                            " callback errors dropped before this one: over the "
                                            "session's budget] ");
    if (!event_budget_.Take(reply.event().ByteSizeLong() + note.size(), absl::Now())) {
      ++events_dropped_;
      return absl::OkStatus();
    }
    if (!note.empty()) {
      v1::Error* error = reply.mutable_event()->mutable_error();
      error->set_message(absl::StrCat(note, error->message()));
      events_dropped_ = 0;
    }
    v1::Response response;
    response.set_generation(generation);
    *response.mutable_event() = std::move(*reply.mutable_event());
    *to_client = std::move(response);
    return absl::OkStatus();
  }
  // A response answers the head of one scope (scopes run independently).
  const uint64_t sequence = reply.response().id();
  const PendingRequest* running = requests_.RunningRequest(sequence);
  if (running == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("reply for request ", sequence, ", which is not running"));
  }
  FFIBOX_ASSIGN_OR_RETURN(v1::Response parsed,
                          CheckWorkerResponse(std::move(*reply.mutable_response()), *running));
  const absl::Time now = absl::Now();
  PendingRequest done = requests_.Finish(sequence, now);
  ++answers_accepted_;
  parsed.set_generation(generation);
  if (done.op == v1::Request::kOpenLocalChannel && !parsed.has_error() &&
      done.local_channel != nullptr && config_.local_door != nullptr) {
    // The worker serves the channel now (and closed any earlier one): the broker watches it
    // in place of the earlier one, and the client may fetch it.
    absl::StatusOr<std::string> token =
        config_.local_door->Register(session_id_, std::exchange(done.local_channel->memfd.fd, -1));
    if (token.ok()) {
      v1::LocalChannelOpened* opened = parsed.mutable_local_channel();
      opened->set_door_path(config_.local_door->path());
      opened->set_token(*std::move(token));
      opened->set_generation(generation);
      opened->set_max_request_bytes(config_.max_message_bytes);
      opened->set_shared_bytes(done.local_channel->worker_end->shared_bytes());
      opened->set_channel_invocations(true);
      opened->set_memory_requests(true);
      local_worker_end_ = std::move(done.local_channel->worker_end);
    } else {
      parsed.clear_local_channel();
      *parsed.mutable_error() =
          ToProtoError(ErrorStatus(v1::RESOURCE_EXHAUSTED, token.status().message()));
    }
  }
  RecordOutcome(done, parsed);
  if (done.op == v1::Request::kCall && done.client_id != 0 && parsed.has_error() &&
      parsed.error().code() == v1::NOT_FOUND) {
    // The worker has no such function: when the new worker was not given it again (its
    // replay failed, answered just before), the table says why.
    absl::StatusOr<const HandleTable::Function*> known = handles_.FindFunction(done.handle);
    if (!known.ok()) parsed.mutable_error()->set_message(ToProtoError(known.status()).message());
  }
  if (done.client_id != 0) {
    // A batch that failed part-way has the results of the calls before the failed one.
    const uint32_t ok_calls = done.op == v1::Request::kBatch ? parsed.batch().results_size()
                              : parsed.has_error()           ? 0
                                                             : 1;
    config_.metrics.CallsAnswered(done.op, ok_calls, parsed.error().code());
    config_.metrics.CallLatency(done.op, now - done.queued_at);
  }
  if (done.client_id != 0) *to_client = std::move(parsed);  // replays tell the client nothing
  return absl::OkStatus();
}

absl::Status Session::AcceptInvoke(v1::CallbackInvoke* invoke_message) {
  const v1::CallbackInvoke& invoke = *invoke_message;
  std::shared_ptr<const v1::DefineCallback> definition =
      handles_.CallbackDefinition(invoke.callback());
  if (definition == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("invocation of callback ", invoke.callback(), ", which is not defined"));
  }
  // The invocation keeps the signature, and with it the definition, alive.
  std::shared_ptr<const v1::Signature> signature(definition, &definition->signature());
  std::vector<std::pair<uint32_t, uint64_t>> shipped;
  FFIBOX_RETURN_IF_ERROR(
      CheckCallbackInvoke(invoke, *signature, definition->buffer_bytes(), &shipped));
  FFIBOX_ASSIGN_OR_RETURN(const uint64_t client_request, requests_.InvokingRequest(invoke));
  FFIBOX_RETURN_IF_ERROR(requests_.OpenInvocation(invoke, std::move(signature), std::move(shipped),
                                                  call_timeout_, absl::Now()));
  invoke_message->set_request_id(client_request);
  ++answers_accepted_;
  return absl::OkStatus();
}

void Session::RecordOutcome(const PendingRequest& pending, const v1::Response& response) {
  handles_.RecordOutcome(pending.op, pending.handle, !response.has_error());
  if (response.has_error() && pending.client_id == 0) {
    // The broker's own replay in a restarted worker: the client's later requests naming the
    // handle say why it is gone.
    handles_.RecordLost(pending.op, pending.handle,
                        absl::StrCat(pending.label, " failed: ", response.error().message()));
  }
}

void Session::OnDeath(uint64_t generation, const WorkerExit& exit, DeathCause cause,
                      absl::string_view detail, const Culprit* culprit) {
  // Every request in flight, the blamed one first; `queued` is true for requests that were
  // only queued behind another (not yet started by the worker).
  std::vector<std::pair<PendingRequest, bool>> failed;
  v1::Error error;
  bool closing = false;
  {
    absl::MutexLock lock(&mu_);
    // A call from the same-host channel runs on the worker's main thread, before any queued
    // top-level request: it is what died, when the worker says one ran.
    const std::optional<LocalCallSnapshot> local = LocalCall();
    // Inside it, a request its callback's handler sent through the broker may run: one
    // naming an invocation on the channel, or one inside an invocation that came through
    // the broker (a session whose callbacks stay on the stream).
    std::optional<Culprit> in_invocation = requests_.RunningInChannelScope();
    if (!in_invocation.has_value() && local.has_value()) {
      in_invocation = requests_.InnermostRunningInInvocation();
    }
    const Culprit blamed = culprit != nullptr          ? *culprit
                           : in_invocation.has_value() ? *in_invocation
                           : local.has_value()         ? local->culprit
                                                       : requests_.InnermostRunning();
    const std::string& last_label = requests_.last_label();
    failed = requests_.Drain(blamed);
    if (local.has_value() && !in_invocation.has_value() && blamed.sequence == 0) {
      // The channel's call ran on the worker's main thread, ahead of every request the
      // broker had sent: each of them waited behind it.
      for (auto& entry : failed) entry.second = true;
    }
    error = DescribeWorkerDeath(exit, cause, blamed.label, blamed.timeout, detail);
    if (blamed.label.empty() && !last_label.empty()) {
      error.set_message(absl::StrCat(error.message(), " (last call: ", last_label, ")"));
    }
    last_death_ = error;
    worker_alive_ = false;
    // The client may be waiting on the same-host channel: it reads end of stream now, and
    // the loss from the WORKER_LOST event below.
    CloseLocalChannel();
    closing = closing_;
    for (const auto& [pending, queued] : failed) {
      // Work of a lost worker is gone: a library or function it was loading must be
      // requested again by the client. A replay it had not started is not: its handle stays
      // ready, and the next worker is sent it again (only the replay that was running when
      // the worker died, a library crashing in its constructor, is lost).
      if (pending.client_id == 0 && queued) continue;
      RecordOutcome(pending, ErrorResponse(0, error));
    }
    if (!closing) ++failures_unsent_;  // the failures below, as one
  }
  if (closing) return;
  config_.metrics.WorkerDied(error, cause);
  const absl::Time now = absl::Now();
  for (const auto& [pending, queued] : failed) {
    if (pending.client_id == 0) continue;
    config_.metrics.CallsAnswered(pending.op, 0, error.code());
    config_.metrics.CallLatency(pending.op, now - pending.queued_at);
    v1::Error own = error;
    if (queued) {
      own.set_message(absl::StrCat(error.message(), "; this request was queued behind it"));
    }
    v1::Response response = ErrorResponse(pending.client_id, own);
    response.set_generation(generation);
    sink_->Send(std::move(response));
  }
  {
    absl::MutexLock lock(&mu_);
    --failures_unsent_;
  }
  sink_->Send(EventResponse(v1::SessionEvent::WORKER_LOST, generation, &error));
}

}  // namespace ffibox

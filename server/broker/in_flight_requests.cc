#include "server/broker/in_flight_requests.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/call_answer.h"
#include "core/errors.h"
#include "core/status_macros.h"

namespace ffibox {

absl::Status InFlightRequests::CheckScope(uint64_t invocation) const {
  if (invocation == 0) return absl::OkStatus();
  auto open = invocations_.find(invocation);
  if (open == invocations_.end()) {
    return ErrorStatus(v1::FAILED_PRECONDITION,
                       absl::StrCat("invocation: callback invocation ", invocation,
                                    " is not open (it was answered, or its worker is gone)"));
  }
  if (open->second.depth >= limits_.max_callback_depth) {
    return InvocationTooDeep(invocation, open->second.depth, limits_.max_callback_depth);
  }
  return absl::OkStatus();
}

absl::Status InFlightRequests::CheckChannelScope(uint64_t id) const {
  if (id == 0 || invocations_.contains(id)) {
    return InvalidArgumentAt(
        "channel_invocation",
        absl::StrCat(id, " is no invocation on the same-host channel",
                     id == 0 ? "" : " (it came through the broker: name it in `invocation`)"));
  }
  if (!scopes_.contains(ChannelKey(id)) && channel_scopes_ >= kMaxChannelScopes) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED,
                       absl::StrCat("requests are running inside ", channel_scopes_,
                                    " invocations on the same-host channel, the most there can "
                                    "be waiting at once"));
  }
  return absl::OkStatus();
}

absl::StatusOr<InFlightRequests::Queued> InFlightRequests::Queue(PendingRequest pending,
                                                                 absl::Time now) {
  absl::Status scope_status =
      pending.channel_scope ? CheckChannelScope(pending.scope) : CheckScope(pending.scope);
  if (!scope_status.ok()) return scope_status;
  if (in_flight_ >= limits_.max_in_flight) {
    return ErrorStatus(v1::RESOURCE_EXHAUSTED, absl::StrCat("more than ", limits_.max_in_flight,
                                                            " requests in flight in one session"));
  }
  Queued queued;
  queued.sequence = pending.sequence = next_sequence_++;
  pending.queued_at = now;
  const ScopeKey key = pending.channel_scope ? ChannelKey(pending.scope) : BrokerKey(pending.scope);
  auto [entry, made] = scopes_.try_emplace(key);
  Scope& scope = entry->second;
  if (pending.channel_scope) {
    channel_scopes_ += made;
    scope.depth = 1;  // deeper than the top level; the worker bounds the nesting
  } else if (pending.scope != 0) {
    scope.depth = invocations_[pending.scope].depth;
  }
  queued.became_head = scope.queue.empty();
  if (queued.became_head) scope.head_deadline = now + pending.timeout;
  scope.queue.push_back(std::move(pending));
  queued.first = ++in_flight_ == 1;
  return queued;
}

const PendingRequest* InFlightRequests::RunningRequest(uint64_t sequence) const {
  for (const auto& [id, scope] : scopes_) {
    if (!scope.queue.empty() && scope.queue.front().sequence == sequence) {
      return &scope.queue.front();
    }
  }
  return nullptr;
}

PendingRequest InFlightRequests::Finish(uint64_t sequence, absl::Time now) {
  auto scope = scopes_.begin();
  while (scope->second.queue.empty() || scope->second.queue.front().sequence != sequence) {
    ++scope;
  }
  PendingRequest done = std::move(scope->second.queue.front());
  scope->second.queue.pop_front();
  --in_flight_;
  if (!scope->second.queue.empty()) {
    scope->second.head_deadline = now + scope->second.queue.front().timeout;
  } else if (scope->first.second) {
    // An invocation on the same-host channel, which the broker does not follow: its scope
    // lasts while requests run in it.
    --channel_scopes_;
    scopes_.erase(scope);
  } else if (scope->first.first != 0 && !invocations_.contains(scope->first.first)) {
    scopes_.erase(scope);  // the invocation was answered and its last request is done
  }
  last_label_ = done.label;
  return done;
}

absl::StatusOr<uint64_t> InFlightRequests::InvokingRequest(const v1::CallbackInvoke& invoke) const {
  if (invoke.request_id() == 0) {
    if (invoke.kept_size() != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invocation ", invoke.invocation(), " reports kept blocks without naming its call"));
    }
    return 0;
  }
  auto scope = scopes_.find(BrokerKey(invoke.parent_invocation()));
  if (scope == scopes_.end() || scope->second.queue.empty() ||
      scope->second.queue.front().sequence != invoke.request_id()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invocation ", invoke.invocation(), " says request ", invoke.request_id(),
                     " made it, which is not running ",
                     invoke.parent_invocation() == 0
                         ? std::string("at the top level")
                         : absl::StrCat("in invocation ", invoke.parent_invocation())));
  }
  const PendingRequest& making = scope->second.queue.front();
  if (invoke.kept_size() != 0) {
    if (making.op != v1::Request::kCall) {
      return absl::InvalidArgumentError(
          absl::StrCat("invocation ", invoke.invocation(),
                       " reports kept blocks of a request that is not a call"));
    }
    FFIBOX_RETURN_IF_ERROR(CheckKeptBlocks(invoke.kept(), making.call.kept_blocks,
                                           absl::StrCat("invocation ", invoke.invocation())));
  }
  return making.client_id;
}

absl::Status InFlightRequests::OpenInvocation(const v1::CallbackInvoke& invoke,
                                              std::shared_ptr<const v1::Signature> signature,
                                              std::vector<std::pair<uint32_t, uint64_t>> shipped,
                                              absl::Duration idle_timeout, absl::Time now) {
  const uint64_t id = invoke.invocation();
  if (invocations_.contains(id) || scopes_.contains(BrokerKey(id))) {
    return absl::InvalidArgumentError(absl::StrCat("invocation id ", id, " is already in use"));
  }
  if (invocations_.size() >= limits_.max_open_invocations) {
    return absl::InvalidArgumentError(absl::StrCat("invocation ", id, " would be more than ",
                                                   limits_.max_open_invocations,
                                                   " invocations open at once"));
  }
  if (invoke.parent_invocation() == 0) {
    if (top_level_invocations_ >= limits_.max_top_level_invocations) {
      return absl::InvalidArgumentError(
          absl::StrCat("invocation ", id, " would be more than ", limits_.max_top_level_invocations,
                       " invocations open at once outside any other (one a thread of the "
                       "worker at most)"));
    }
  }
  Invocation open;
  if (invoke.parent_invocation() != 0) {
    auto parent = invocations_.find(invoke.parent_invocation());
    auto parent_scope = scopes_.find(BrokerKey(invoke.parent_invocation()));
    if (parent == invocations_.end() || parent_scope == scopes_.end() ||
        parent_scope->second.queue.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("invocation ", id, " is nested in invocation ",
                                                     invoke.parent_invocation(),
                                                     ", which is not running a request"));
    }
    open.depth = parent->second.depth + 1;
    if (open.depth > limits_.max_callback_depth) {
      return absl::InvalidArgumentError(
          absl::StrCat("invocation ", id, " is nested deeper than the limit"));
    }
  }
  open.callback = invoke.callback();
  open.signature = std::move(signature);
  open.shipped = std::move(shipped);
  auto top = scopes_.find(BrokerKey(0));
  if (invoke.parent_invocation() == 0 && (top == scopes_.end() || top->second.queue.empty())) {
    // Outside any call: nothing else bounds how long the client may take.
    open.timeout = idle_timeout;
    open.deadline = now + idle_timeout;
  }
  if (open.depth == 1) ++top_level_invocations_;
  invocations_[id] = std::move(open);
  return absl::OkStatus();
}

absl::StatusOr<const InFlightRequests::Invocation*> InFlightRequests::AnswerableInvocation(
    uint64_t id) const {
  auto open = invocations_.find(id);
  if (id == 0 || open == invocations_.end()) {
    return ErrorStatus(v1::FAILED_PRECONDITION,
                       absl::StrCat("callback_return.invocation: callback invocation ", id,
                                    " is not open (it was answered, or its worker is gone)"));
  }
  auto scope = scopes_.find(BrokerKey(id));
  if (scope != scopes_.end() && !scope->second.queue.empty()) {
    return ErrorStatus(v1::FAILED_PRECONDITION,
                       absl::StrCat("callback_return.invocation: ", scope->second.queue.size(),
                                    " requests sent inside invocation ", id,
                                    " are still running; wait for their answers first"));
  }
  return &open->second;
}

void InFlightRequests::CloseInvocation(uint64_t id) {
  auto open = invocations_.find(id);
  if (open != invocations_.end()) {
    if (open->second.depth == 1) --top_level_invocations_;
    invocations_.erase(open);
  }
  scopes_.erase(BrokerKey(id));
}

std::vector<uint64_t> InFlightRequests::AnswerableInvocations() const {
  std::vector<uint64_t> answerable;
  for (const auto& [id, invocation] : invocations_) {
    auto scope = scopes_.find(BrokerKey(id));
    if (scope == scopes_.end() || scope->second.queue.empty()) answerable.push_back(id);
  }
  std::sort(answerable.begin(), answerable.end());
  return answerable;
}

AnswerLimits InFlightRequests::ReplyLimits(uint64_t max_params) const {
  AnswerLimits limits = InvokeLimits(max_params);
  for (const auto& [id, scope] : scopes_) {
    if (!scope.queue.empty()) limits.Add(scope.queue.front().answer_limits);
  }
  return limits;
}

absl::Time InFlightRequests::NextDeadline() const {
  absl::Time next = absl::InfiniteFuture();
  for (const auto& [id, scope] : scopes_) {
    if (!scope.queue.empty()) next = std::min(next, scope.head_deadline);
  }
  for (const auto& [id, open] : invocations_) next = std::min(next, open.deadline);
  return next;
}

std::optional<InFlightRequests::Culprit> InFlightRequests::FindOverdue(absl::Time now) const {
  for (const auto& [id, scope] : scopes_) {
    if (!scope.queue.empty() && now >= scope.head_deadline) {
      const PendingRequest& head = scope.queue.front();
      return Culprit{head.sequence, head.label, head.timeout};
    }
  }
  for (const auto& [id, open] : invocations_) {
    if (now >= open.deadline) {
      return Culprit{
          0, absl::StrCat("callback ", open.callback, " (invocation ", id, ", outside any call)"),
          open.timeout};
    }
  }
  return std::nullopt;
}

bool InFlightRequests::PostponeTopLevelHead(uint64_t sequence, absl::Time now) {
  auto top = scopes_.find(BrokerKey(0));
  if (top == scopes_.end() || top->second.queue.empty()) return false;
  PendingRequest& head = top->second.queue.front();
  if (head.sequence != sequence || head.postponed) return false;
  head.postponed = true;
  top->second.head_deadline = now + head.timeout;
  return true;
}

InFlightRequests::Culprit InFlightRequests::InnermostRunning() const {
  Culprit culprit;
  int depth = -1;
  for (const auto& [id, scope] : scopes_) {
    if (scope.queue.empty() || scope.depth <= depth) continue;
    depth = scope.depth;
    const PendingRequest& head = scope.queue.front();
    culprit = Culprit{head.sequence, head.label, head.timeout};
  }
  return culprit;
}

std::optional<InFlightRequests::Culprit> InFlightRequests::InnermostRunningInInvocation() const {
  const Culprit innermost = InnermostRunning();
  for (const auto& [id, scope] : scopes_) {
    if (scope.depth >= 1 && !scope.queue.empty() &&
        scope.queue.front().sequence == innermost.sequence) {
      return innermost;
    }
  }
  return std::nullopt;
}

std::optional<InFlightRequests::Culprit> InFlightRequests::RunningInChannelScope() const {
  for (const auto& [key, scope] : scopes_) {
    if (!key.second || scope.queue.empty()) continue;
    const PendingRequest& head = scope.queue.front();
    return Culprit{head.sequence, head.label, head.timeout};
  }
  return std::nullopt;
}

std::vector<std::pair<PendingRequest, bool>> InFlightRequests::Drain(const Culprit& blamed) {
  std::vector<std::pair<PendingRequest, bool>> drained;
  for (auto& [id, scope] : scopes_) {
    bool head = true;
    for (PendingRequest& pending : scope.queue) {
      const bool is_blamed = blamed.sequence != 0 && pending.sequence == blamed.sequence;
      drained.emplace(is_blamed ? drained.begin() : drained.end(), std::move(pending), !head);
      head = false;
    }
  }
  // Heads before queued requests, the blamed one staying first.
  std::stable_partition(drained.begin(), drained.end(),
                        [](const std::pair<PendingRequest, bool>& entry) { return !entry.second; });
  scopes_.clear();
  channel_scopes_ = 0;
  in_flight_ = 0;
  invocations_.clear();
  top_level_invocations_ = 0;
  return drained;
}

}  // namespace ffibox

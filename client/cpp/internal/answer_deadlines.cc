#include "client/cpp/internal/answer_deadlines.h"

#include <algorithm>

namespace ffibox {
namespace client_internal {
namespace {

// Distinct bounds kept with no request waiting before they are dropped.
constexpr size_t kKeptIdleBounds = 16;

}  // namespace

AnswerDeadlines::AnswerDeadlines(absl::Duration margin) : margin_(margin) {}

absl::Duration AnswerDeadlines::BoundOf(const v1::Request& request) const {
  auto deadline_of = [this](const v1::Call& call) {
    return call.timeout_ms() != 0 ? absl::Milliseconds(call.timeout_ms()) : call_timeout_;
  };
  switch (request.op_case()) {
    case v1::Request::kOpen:
    case v1::Request::kPing:
    case v1::Request::kClose:
    case v1::Request::kParseDeclaration:
    case v1::Request::kCallbackReturn:
      return margin_;  // the broker answers these at once
    case v1::Request::kCall:
      return deadline_of(request.call()) + margin_;
    case v1::Request::kBatch: {
      // The server's deadline of a batch: its own, else the sum of its calls'.
      if (request.batch().timeout_ms() != 0) {
        return absl::Milliseconds(request.batch().timeout_ms()) + margin_;
      }
      absl::Duration sum = absl::ZeroDuration();
      for (const v1::Call& call : request.batch().calls()) sum += deadline_of(call);
      return sum + margin_;
    }
    default:
      return call_timeout_ + margin_;
  }
}

void AnswerDeadlines::Sent(absl::Duration bound, absl::Time now) {
  if (waiting_++ == 0) quiet_since_ = now;
  ++bounds_[bound];
}

void AnswerDeadlines::Answered(absl::Duration bound) {
  auto it = bounds_.find(bound);
  if (it == bounds_.end() || it->second == 0) return;  // not waited for (cleared meanwhile)
  --it->second;
  --waiting_;
  if (it->second == 0 && bounds_.size() > kKeptIdleBounds) bounds_.erase(it);
}

void AnswerDeadlines::Clear() {
  bounds_.clear();
  waiting_ = 0;
}

AnswerDeadlines::Look AnswerDeadlines::LookAt(absl::Time now, absl::Time heard) const {
  Look look;
  if (waiting_ == 0) {
    // A request sent from now on is due no earlier than a margin later.
    look.look_again = now + margin_;
    return look;
  }
  for (auto it = bounds_.rbegin(); it != bounds_.rend(); ++it) {
    if (it->second > 0) {
      look.bound = it->first;
      break;
    }
  }
  const absl::Time since = std::max(quiet_since_, heard);
  look.silence = now - since;
  look.overdue = look.silence >= look.bound;
  // Later messages and requests only move this further away; the watchdog looks again then.
  look.look_again = since + look.bound;
  return look;
}

void AnswerDeadlines::Forgive(absl::Time now) { quiet_since_ = now; }

}  // namespace client_internal
}  // namespace ffibox

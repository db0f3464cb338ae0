#include "client/cpp/internal/answer_deadlines.h"

#include <time.h>

#include <algorithm>

namespace ffibox {
namespace client_internal {

int64_t SteadyNanos() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
}

absl::Time SteadyNow() { return absl::FromUnixNanos(SteadyNanos()); }

AnswerDeadlines::AnswerDeadlines(absl::Duration margin) : margin_(margin) {}

absl::Duration AnswerDeadlines::BoundOfCall(absl::Duration timeout) const {
  return (timeout != absl::ZeroDuration() ? timeout : call_timeout()) + margin_;
}

absl::Duration AnswerDeadlines::BoundOf(const v1::Request& request) const {
  const absl::Duration call_timeout = this->call_timeout();
  auto deadline_of = [call_timeout](const v1::Call& call) {
    return call.timeout_ms() != 0 ? absl::Milliseconds(call.timeout_ms()) : call_timeout;
  };
  switch (request.op_case()) {
    case v1::Request::kOpen:
    case v1::Request::kPing:
    case v1::Request::kClose:
    case v1::Request::kParseDeclaration:
    case v1::Request::kCallbackReturn:
      return margin_;  // the broker answers these at once
    case v1::Request::kCall:
      return BoundOfCall(absl::Milliseconds(request.call().timeout_ms()));
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
      return call_timeout + margin_;
  }
}

AnswerDeadlines::Look AnswerDeadlines::LookAt(absl::Time now, absl::Time since,
                                              absl::Duration longest) {
  Look look;
  // Every bound is at least the margin: a request sent from now on, and one whose longer
  // companions are answered meanwhile (the server's answer to them starts its silence
  // again), is due no earlier than a margin from now.
  look.look_again = now + margin_;
  if (longest <= absl::ZeroDuration()) {
    overdue_seen_ = absl::InfiniteFuture();
    return look;
  }
  look.bound = longest;
  look.silence = now - since;
  if (look.silence < longest) {
    overdue_seen_ = absl::InfiniteFuture();
    look.look_again = std::min(look.look_again, since + longest);
    return look;
  }
  // As long as the bound: looked at once more, after the reader had the time to take what
  // came meanwhile (a message read since starts the silence again).
  if (overdue_seen_ == absl::InfiniteFuture()) overdue_seen_ = now;
  look.overdue = now - overdue_seen_ >= kOverdueConfirmation;
  look.look_again = look.overdue ? absl::InfiniteFuture() : overdue_seen_ + kOverdueConfirmation;
  return look;
}

}  // namespace client_internal
}  // namespace ffibox

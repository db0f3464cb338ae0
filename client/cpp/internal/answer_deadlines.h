// The client's own deadline for a session stream's answers, so that a server that stops
// answering (stopped, wedged, on a host that went away without a reset) cannot leave a
// request waiting forever. Internal to the C++ client: SessionStream keeps one, and
// AnswerWatchdog (answer_watchdog.h) looks through it.
//
// The server runs a session's worker requests one at a time, in order, each within its own
// deadline (the request's, else the session's call timeout), and answers the others at once.
// So while requests wait, some message is due within the longest of their bounds (a
// request's deadline plus a margin), counted from the last message the server sent, or from
// the request that found none waiting. A request queued behind slow ones thus gets its whole
// bound once they have been answered, however long the queue. A call on the same-host
// channel is in the same queue: while requests through the broker wait, it counts among
// them, and its end as a message. The Python and Node clients keep the same rule
// (client/python/ffibox/_stream.py, client/node/lib/answer_watch.js).
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_DEADLINES_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_DEADLINES_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// The margin a request's answer may take beyond its deadline in the worker, by default.
inline constexpr absl::Duration kDefaultAnswerMargin = absl::Seconds(10);
// How long a server found overdue is given to be heard before it is taken for gone: answers
// that came while this process was stopped until just after a look was due (too little after
// it to be taken for a stop of the process) wait unread until the stream's reader runs again.
inline constexpr absl::Duration kOverdueConfirmation = absl::Milliseconds(200);

// The time on a monotonic clock (coarse: a few milliseconds), as an absl::Time to be compared
// only with others of this clock: a step of the wall clock must not shorten a wait, and time
// the machine spent suspended is nobody's silence.
absl::Time SteadyNow();
// The same in nanoseconds (absl::ToUnixNanos(SteadyNow())), for the hot path's stores.
int64_t SteadyNanos();

class AnswerDeadlines {
 public:
  // `margin`: how much longer than its deadline in the worker an answer may take (positive).
  explicit AnswerDeadlines(absl::Duration margin);

  // The session's call timeout as the server reported it (SessionOpened.call_timeout_ms):
  // the deadline of worker requests that name none. Zero until the session is open. Any
  // thread may set it while others use this object.
  void SetCallTimeout(absl::Duration call_timeout) {
    call_timeout_ns_.store(absl::ToInt64Nanoseconds(call_timeout), std::memory_order_relaxed);
  }

  // How long the server may take to answer `request`: its deadline in the worker plus the
  // margin; the margin alone for what the broker answers at once (open, ping, close, a
  // declaration, a callback's answer).
  absl::Duration BoundOf(const v1::Request& request) const;
  // The same for a call of `timeout` (zero: the session's) on the same-host channel.
  absl::Duration BoundOfCall(absl::Duration timeout) const;

  // What the server's silence means at `now`, when requests wait whose longest bound is
  // `longest` (zero: none waits) and the later of the server's last message and the start of
  // the wait was at `since`. A silence found as long as the bound is confirmed by a look
  // kOverdueConfirmation later that finds it still as long: only then is it overdue. One
  // thread looks at a time (the owner's lock).
  struct Look {
    bool overdue = false;    // nothing came within `bound`: the server is taken for gone
    absl::Duration silence;  // how long the server has been silent while requests waited
    absl::Duration bound;    // the longest bound of the requests waiting
    absl::Time look_again;   // no request can be overdue before then
  };
  Look LookAt(absl::Time now, absl::Time since, absl::Duration longest);

  absl::Duration margin() const { return margin_; }

 private:
  absl::Duration call_timeout() const {
    return absl::Nanoseconds(call_timeout_ns_.load(std::memory_order_relaxed));
  }

  const absl::Duration margin_;
  std::atomic<int64_t> call_timeout_ns_{0};
  // When a look first found the silence as long as the bound (InfiniteFuture: the last look
  // did not).
  absl::Time overdue_seen_ = absl::InfiniteFuture();
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_DEADLINES_H_

// The client's own deadline for a session stream's answers, so that a server that stops
// answering (stopped, wedged, on a host that went away without a reset) cannot leave a
// request waiting forever. Internal to the C++ client: SessionStream keeps one, under its
// lock, and AnswerWatchdog (answer_watchdog.h) looks at it.
//
// The server runs a session's worker requests one at a time, in order, each within its own
// deadline (the request's, else the session's call timeout), and answers the others at once.
// So while requests wait, some message is due within the longest of their bounds (a
// request's deadline plus a margin), counted from the last message the server sent, or from
// the request that found none waiting. A request queued behind slow ones thus gets its whole
// bound once they have been answered, however long the queue. The same rule keeps the Node
// client's deadlines (client/node/lib/answer_watch.js).
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_DEADLINES_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_DEADLINES_H_

#include <map>

#include "absl/time/time.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// The margin a request's answer may take beyond its deadline in the worker, by default.
inline constexpr absl::Duration kDefaultAnswerMargin = absl::Seconds(10);

class AnswerDeadlines {
 public:
  // `margin`: how much longer than its deadline in the worker an answer may take (positive).
  explicit AnswerDeadlines(absl::Duration margin);

  // The session's call timeout as the server reported it (SessionOpened.call_timeout_ms):
  // the deadline of worker requests that name none. Zero until the session is open.
  void SetCallTimeout(absl::Duration call_timeout) { call_timeout_ = call_timeout; }

  // How long the server may take to answer `request`: its deadline in the worker plus the
  // margin; the margin alone for what the broker answers at once (open, ping, a declaration).
  absl::Duration BoundOf(const v1::Request& request) const;

  // A request with `bound` (BoundOf) was sent at `now`.
  void Sent(absl::Duration bound, absl::Time now);
  // A request sent with `bound` was answered (or failed without an answer).
  void Answered(absl::Duration bound);
  // No request waits any more (the stream ended).
  void Clear();

  // What the server's silence means at `now`, its last message having come at `heard`
  // (InfinitePast: none yet).
  struct Look {
    bool overdue = false;    // nothing came within `bound`: the server is taken for gone
    absl::Duration silence;  // how long the server has been silent while requests waited
    absl::Duration bound;    // the longest bound of the requests waiting
    absl::Time look_again;   // no request can be overdue before then
  };
  Look LookAt(absl::Time now, absl::Time heard) const;

  // The client itself was held up until `now` (the process stopped, the machine suspended):
  // the silence so far is not the server's, and counts again from `now`.
  void Forgive(absl::Time now);

  absl::Duration margin() const { return margin_; }

 private:
  absl::Duration margin_;
  absl::Duration call_timeout_ = absl::ZeroDuration();
  // The bounds of the requests waiting, and how many have each; entries whose count fell to
  // zero stay while there are few (sequential calls would otherwise make and free one each).
  std::map<absl::Duration, int> bounds_;
  int waiting_ = 0;
  absl::Time quiet_since_ = absl::InfinitePast();  // when the latest wait for answers began
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_DEADLINES_H_

// SpinTurn: which one worker of ffiboxd may spin for its session's next request.
//
// A request marked next_follows (server/protocol/worker_protocol.proto) makes its worker spin
// after the answer, on a CPU, for the client's next request: 200 µs at first, up to 1 ms for a
// client whose pauses between calls show they fit (server/worker/broker_connection.h). One
// such worker takes one CPU for most of its session's round trips; two would take both CPUs
// of a small machine from the broker's threads and the clients. So only the session that
// holds the turn marks its requests. It keeps the turn until kSpinTurnLapse has passed since
// its latest request and since its worker's latest message (2 ms: the worker's spins end
// within 1 ms of a message it sent, and a client that waits for each answer sends its next
// within a gRPC round trip, 100 µs here for C++, 250 to 400 µs for Python); after that, or
// once it has ended, the next session to ask takes the turn. So the holder's worker has
// stopped spinning before another session's requests are marked, unless one of its calls ran
// longer than the lapse: the turn passed meanwhile, and that worker spins once after its
// answer beside the next holder's.
//
// Threads: thread-safe.
#ifndef FFIBOX_SERVER_BROKER_SPIN_TURN_H_
#define FFIBOX_SERVER_BROKER_SPIN_TURN_H_

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ffibox {

inline constexpr absl::Duration kSpinTurnLapse = absl::Milliseconds(2);

class SpinTurn {
 public:
  // Whether `session` may mark the request it sends at `now`: it holds the turn, or the turn
  // is free (never taken, released, or lapsed), and then it takes it.
  bool Take(const void* session, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // `session`'s worker sent a message at `now` (an answer, an invocation), after which it may
  // spin: if `session` holds the turn, it does not lapse before kSpinTurnLapse from then.
  void Answered(const void* session, absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);
  // `session` ends: the turn is free at once if it held it.
  void Release(const void* session) ABSL_LOCKS_EXCLUDED(mu_);

  // The process's turn, which every session of ffiboxd asks.
  static SpinTurn& OfProcess();

 private:
  absl::Mutex mu_;
  // Written under mu_; Answered, called for every reply of every session, reads it first
  // without the lock, so that only the holder's replies take it.
  std::atomic<const void*> holder_{nullptr};
  absl::Time lapses_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_SPIN_TURN_H_

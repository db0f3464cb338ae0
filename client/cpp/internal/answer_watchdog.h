// One thread per process ("ffibox-deadline") that looks at the open session streams' answer
// deadlines (answer_deadlines.h) and ends a stream whose server is overdue. Internal to the
// C++ client: each SessionStream is watched from its start until it is destroyed.
//
// A call costs no wakeup of it: it looks when some stream could be overdue, and otherwise
// once per margin while streams are open (no request is due sooner than its stream's margin
// after it was sent, or after the server's answer to the requests before it). Its times are
// SteadyNow's (answer_deadlines.h). When it wakes much later than it meant to, the process
// itself was held up (stopped): that silence is not the servers', and it counts again from
// then. A child of fork() has a watchdog of its own, which watches none of its parent's
// streams.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_WATCHDOG_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_WATCHDOG_H_

#include <sys/types.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ffibox {
namespace client_internal {

class AnswerWatchdog {
 public:
  // What the watchdog looks at.
  class Watched {
   public:
    virtual ~Watched() = default;
    // Ends the watched stream if its server is overdue at `now` (SteadyNow's; after forgiving
    // the silence so far when `held_up`), and returns when to look again (InfiniteFuture:
    // never).
    // Called on the watchdog's thread; it must not call Watch or Forget.
    virtual absl::Time LookForSilence(absl::Time now, bool held_up) = 0;
  };

  // The process's watchdog (never destroyed).
  static AnswerWatchdog& Global();

  // Looks at `watched` from now on; starts the watchdog's thread in this process at first.
  void Watch(Watched* watched) ABSL_LOCKS_EXCLUDED(mu_);
  // Stops looking at `watched`: once this returns, no LookForSilence of it runs.
  void Forget(Watched* watched) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  AnswerWatchdog() = default;
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  absl::flat_hash_set<Watched*> watched_ ABSL_GUARDED_BY(mu_);
  // The process whose thread runs Run (a child of fork() has none until it watches).
  pid_t thread_process_ ABSL_GUARDED_BY(mu_) = 0;
  // Set by Watch: look at every stream again now.
  bool look_now_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_ANSWER_WATCHDOG_H_

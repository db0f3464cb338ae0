#include "client/cpp/internal/answer_watchdog.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "client/cpp/internal/answer_deadlines.h"
#include "core/thread_name.h"

namespace ffibox {
namespace client_internal {
namespace {

// A wakeup this much later than asked for means the process was held up meanwhile.
constexpr absl::Duration kHeldUp = absl::Seconds(1);

}  // namespace

AnswerWatchdog& AnswerWatchdog::Global() {
  static AnswerWatchdog* const watchdog = [] {
    AnswerWatchdog* made = new AnswerWatchdog();
    // A child of fork() has copies of the parent's streams but not the watchdog's thread: it
    // watches none of them (they are the parent's), and starts a thread of its own when it
    // opens a stream. The lock is held across the fork, so the child's copy is not taken.
    pthread_atfork([] { Global().mu_.Lock(); }, [] { Global().mu_.Unlock(); },
                   [] {
                     AnswerWatchdog& self = Global();
                     self.watched_.clear();
                     self.thread_process_ = 0;
                     self.mu_.Unlock();
                   });
    return made;
  }();
  return *watchdog;
}

void AnswerWatchdog::Watch(Watched* watched) {
  absl::MutexLock lock(&mu_);
  watched_.insert(watched);
  look_now_ = true;
  if (thread_process_ != getpid()) {
    thread_process_ = getpid();
    std::thread thread([this] {
      NameThisThread("ffibox-deadline");
      Run();
    });
    thread.detach();  // the watchdog lives as long as the process
  }
}

void AnswerWatchdog::Forget(Watched* watched) {
  absl::MutexLock lock(&mu_);
  watched_.erase(watched);
}

void AnswerWatchdog::Run() {
  absl::MutexLock lock(&mu_);
  absl::Time meant = absl::InfiniteFuture();  // when this thread meant to wake
  for (;;) {
    const absl::Time now = SteadyNow();
    const bool held_up = meant != absl::InfiniteFuture() && now - meant > kHeldUp;
    look_now_ = false;
    absl::Time next = absl::InfiniteFuture();
    // Under the lock, so that Forget waits for a look at its stream to finish.
    for (Watched* watched : watched_) {
      next = std::min(next, watched->LookForSilence(now, held_up));
    }
    meant = next;
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return look_now_; };
    // SteadyNow's clock is not absl's: the wait is given as a duration.
    mu_.AwaitWithTimeout(absl::Condition(&woken), next - now);
  }
}

}  // namespace client_internal
}  // namespace ffibox

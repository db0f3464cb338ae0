#include "client/cpp/internal/answer_watchdog.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "client/cpp/internal/answer_deadlines.h"
#include "core/thread_name.h"

namespace ffibox {
namespace client_internal {
namespace {

// A wakeup this much later than asked for, on the monotonic clock and the wall clock alike,
// means the process was held up meanwhile. (absl waits on the wall clock: a wait it
// lengthened because the wall clock stepped back is not a stop.)
constexpr absl::Duration kHeldUp = absl::Seconds(1);

// The process's watchdog; a child of fork() gets a new one.
std::atomic<AnswerWatchdog*> g_watchdog{nullptr};

}  // namespace

AnswerWatchdog& AnswerWatchdog::Global() {
  static const bool made = [] {
    g_watchdog.store(new AnswerWatchdog());
    // A child of fork() has copies of the parent's streams but not the watchdog's thread,
    // and its copy of the watchdog's lock may list that thread as a waiter: it gets a
    // watchdog of its own, watching none of the parent's streams, with a thread of its own
    // once it opens a stream. The lock is held across the fork, so that no look is half
    // done in the copy (which is left as it is).
    pthread_atfork([] { g_watchdog.load()->mu_.Lock(); }, [] { g_watchdog.load()->mu_.Unlock(); },
                   [] { g_watchdog.store(new AnswerWatchdog()); });
    return true;
  }();
  (void)made;
  return *g_watchdog.load();
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
  // When this thread meant to wake, on both clocks.
  absl::Time meant = absl::InfiniteFuture();
  absl::Time meant_wall = absl::InfiniteFuture();
  for (;;) {
    const absl::Time now = SteadyNow();
    const bool held_up = meant != absl::InfiniteFuture() && now - meant > kHeldUp &&
                         absl::Now() - meant_wall > kHeldUp;
    look_now_ = false;
    absl::Time next = absl::InfiniteFuture();
    // Under the lock, so that Forget waits for a look at its stream to finish.
    for (Watched* watched : watched_) {
      next = std::min(next, watched->LookForSilence(now, held_up));
    }
    meant = next;
    meant_wall = absl::Now() + (next - now);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return look_now_; };
    // SteadyNow's clock is not absl's: the wait is given as a duration.
    mu_.AwaitWithTimeout(absl::Condition(&woken), next - now);
  }
}

}  // namespace client_internal
}  // namespace ffibox

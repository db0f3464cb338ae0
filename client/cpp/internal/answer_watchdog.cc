#include "client/cpp/internal/answer_watchdog.h"

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "core/thread_name.h"

namespace ffibox {
namespace client_internal {
namespace {

// A wakeup this much later than asked for means the process was held up meanwhile.
constexpr absl::Duration kHeldUp = absl::Seconds(1);

}  // namespace

AnswerWatchdog& AnswerWatchdog::Global() {
  static AnswerWatchdog* const watchdog = new AnswerWatchdog();
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
    const absl::Time now = absl::Now();
    const bool held_up = meant != absl::InfiniteFuture() && now - meant > kHeldUp;
    look_now_ = false;
    absl::Time next = absl::InfiniteFuture();
    // Under the lock, so that Forget waits for a look at its stream to finish.
    for (Watched* watched : watched_) {
      next = std::min(next, watched->LookForSilence(now, held_up));
    }
    meant = next;
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return look_now_; };
    mu_.AwaitWithDeadline(absl::Condition(&woken), next);
  }
}

}  // namespace client_internal
}  // namespace ffibox

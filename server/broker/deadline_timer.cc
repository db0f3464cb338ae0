#include "server/broker/deadline_timer.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "core/thread_name.h"

namespace ffibox {

DeadlineTimer::DeadlineTimer()
    : thread_([this] {
        NameThisThread("ffibox-timer");
        Run();
      }) {}

DeadlineTimer::~DeadlineTimer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  absl::MutexLock lock(&mu_);
  for (auto& [when, alarm] : queue_) alarm->entry_.reset();
  queue_.clear();
}

std::shared_ptr<DeadlineTimer::Alarm> DeadlineTimer::NewAlarm(std::function<void()> fire) {
  return std::make_shared<Alarm>(this, std::move(fire));
}

void DeadlineTimer::Alarm::Arm(absl::Time when) {
  absl::MutexLock lock(&timer_->mu_);
  if (disarmed_ || timer_->stopping_) return;
  if (entry_.has_value()) {
    if ((*entry_)->first <= when) return;
    timer_->queue_.erase(*entry_);
  }
  // The queue holds the alarm while it is armed, so a due alarm outlives its owner's
  // reference until its (cancelled) callback was looked at.
  const Queue::iterator entry = timer_->queue_.emplace(when, shared_from_this());
  entry_ = entry;
  if (entry == timer_->queue_.begin()) ++timer_->earliest_changes_;
}

void DeadlineTimer::Alarm::Cancel() {
  {
    absl::MutexLock lock(&timer_->mu_);
    disarmed_ = true;
    if (entry_.has_value()) {
      timer_->queue_.erase(*entry_);
      entry_.reset();
    }
  }
  absl::MutexLock lock(&fire_mu_);  // waits for a running callback
  fire_ = nullptr;
}

void DeadlineTimer::Alarm::Fire() {
  absl::MutexLock lock(&fire_mu_);
  if (fire_) fire_();
}

void DeadlineTimer::Run() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    const uint64_t seen = earliest_changes_;
    const absl::Time next = queue_.empty() ? absl::InfiniteFuture() : queue_.begin()->first;
    // Until the earliest entry is due, an earlier one is armed, or the timer stops.
    auto woken = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || earliest_changes_ != seen;
    };
    mu_.AwaitWithDeadline(absl::Condition(&woken), next);
    if (stopping_) return;
    std::vector<std::shared_ptr<Alarm>> due;
    const absl::Time now = absl::Now();
    while (!queue_.empty() && queue_.begin()->first <= now) {
      std::shared_ptr<Alarm> alarm = std::move(queue_.begin()->second);
      alarm->entry_.reset();
      queue_.erase(queue_.begin());
      due.push_back(std::move(alarm));
    }
    if (due.empty()) continue;
    mu_.Unlock();
    for (const std::shared_ptr<Alarm>& alarm : due) alarm->Fire();
    due.clear();  // an owner that let go meanwhile: the alarm goes here, outside the lock
    mu_.Lock();
  }
}

}  // namespace ffibox

// DeadlineTimer: one thread that wakes sessions' worker readers at request deadlines.
//
// A worker's reader thread sleeps until the worker writes or the earliest deadline of the
// requests it knows about passes. A request sent while the reader sleeps with a later
// deadline (or none: the session was idle) must reach it before its own deadline, so the
// request's thread used to wake the reader at once, which cost two context switches on every
// call after an idle moment: nearly every call of a sequential caller. Instead, the request's
// thread arms the session's alarm, and the timer wakes the reader only if that time comes
// (the reader then learns every deadline in force). An alarm already armed for an earlier
// time is not touched, so a run of calls with the same timeout arms it once per timeout
// period, not once per call.
//
// Threads: Arm and Cancel from any thread; an alarm's callback runs on the timer's thread,
// never after Cancel has returned. A callback may arm alarms (its own again included) but
// must not cancel any.
#ifndef FFIBOX_SERVER_BROKER_DEADLINE_TIMER_H_
#define FFIBOX_SERVER_BROKER_DEADLINE_TIMER_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ffibox {

class DeadlineTimer {
 public:
  class Alarm;

  // Starts the timer's thread.
  DeadlineTimer();
  // Stops the thread; alarms still armed never fire.
  ~DeadlineTimer();

  DeadlineTimer(const DeadlineTimer&) = delete;
  DeadlineTimer& operator=(const DeadlineTimer&) = delete;

  // An unarmed alarm that calls `fire` when a time it is armed for passes. Cancel the alarm
  // before what `fire` uses goes; the timer outlives every use of its alarms.
  std::shared_ptr<Alarm> NewAlarm(std::function<void()> fire);

 private:
  using Queue = std::multimap<absl::Time, std::shared_ptr<Alarm>>;

  void Run();

  absl::Mutex mu_;
  Queue queue_ ABSL_GUARDED_BY(mu_);  // one entry per armed alarm, earliest first
  uint64_t earliest_changes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class DeadlineTimer::Alarm : public std::enable_shared_from_this<Alarm> {
 public:
  Alarm(DeadlineTimer* timer, std::function<void()> fire) : timer_(timer), fire_(std::move(fire)) {}

  // Makes the alarm fire at `when`, unless it is armed for `when` or earlier already.
  void Arm(absl::Time when) ABSL_LOCKS_EXCLUDED(timer_->mu_);
  // Disarms the alarm for good; waits for its callback if it is running. Idempotent.
  void Cancel() ABSL_LOCKS_EXCLUDED(timer_->mu_, fire_mu_);

 private:
  friend class DeadlineTimer;

  // Runs the callback unless cancelled.
  void Fire() ABSL_LOCKS_EXCLUDED(fire_mu_);

  DeadlineTimer* const timer_;
  // The alarm's entry in the timer's queue, while armed.
  std::optional<Queue::iterator> entry_ ABSL_GUARDED_BY(timer_->mu_);
  bool disarmed_ ABSL_GUARDED_BY(timer_->mu_) = false;
  absl::Mutex fire_mu_;
  std::function<void()> fire_ ABSL_GUARDED_BY(fire_mu_);  // empty once cancelled
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_DEADLINE_TIMER_H_

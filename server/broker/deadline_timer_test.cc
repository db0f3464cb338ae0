#include "server/broker/deadline_timer.h"

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace {

// An alarm that records when it fired.
struct Recorder {
  explicit Recorder(DeadlineTimer& timer)
      : alarm(timer.NewAlarm([this] {
          last = absl::Now();  // published by the increment
          fired.fetch_add(1);
        })) {}
  ~Recorder() { alarm->Cancel(); }

  std::atomic<int> fired{0};
  absl::Time last;
  std::shared_ptr<DeadlineTimer::Alarm> alarm;
};

// Waits (up to 5 s: a loaded machine may wake the timer late) until `recorder` fired `times`.
bool FiredBy(const Recorder& recorder, int times) {
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (recorder.fired.load() < times && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  return recorder.fired.load() >= times;
}

TEST(DeadlineTimerTest, AnAlarmFiresOnceWhenItsTimeComes) {
  DeadlineTimer timer;
  Recorder recorder(timer);
  const absl::Time when = absl::Now() + absl::Milliseconds(100);
  recorder.alarm->Arm(when);
  absl::SleepFor(absl::Milliseconds(50));
  const int fired_early = recorder.fired.load();
  if (absl::Now() < when) {
    EXPECT_EQ(fired_early, 0);
  }
  ASSERT_TRUE(FiredBy(recorder, 1));
  EXPECT_GE(recorder.last, when);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(recorder.fired.load(), 1);
}

TEST(DeadlineTimerTest, ArmingForALaterTimeKeepsTheEarlierOne) {
  DeadlineTimer timer;
  Recorder recorder(timer);
  const absl::Time start = absl::Now();
  recorder.alarm->Arm(start + absl::Milliseconds(100));
  recorder.alarm->Arm(start + absl::Seconds(30));
  ASSERT_TRUE(FiredBy(recorder, 1));
  EXPECT_LT(recorder.last - start, absl::Seconds(5));
}

TEST(DeadlineTimerTest, ArmingForAnEarlierTimeMovesTheAlarmAndWakesTheTimer) {
  DeadlineTimer timer;
  Recorder late(timer);
  Recorder early(timer);
  const absl::Time start = absl::Now();
  late.alarm->Arm(start + absl::Seconds(30));  // the timer now sleeps for 30 s
  early.alarm->Arm(start + absl::Seconds(20));
  early.alarm->Arm(start + absl::Milliseconds(100));
  ASSERT_TRUE(FiredBy(early, 1));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(early.fired.load(), 1);  // once: its 20 s entry went when it moved
  EXPECT_LT(early.last - start, absl::Seconds(5));
  EXPECT_EQ(late.fired.load(), 0);
}

TEST(DeadlineTimerTest, AFiredAlarmCanBeArmedAgain) {
  DeadlineTimer timer;
  Recorder recorder(timer);
  for (int round = 1; round <= 3; ++round) {
    recorder.alarm->Arm(absl::Now() + absl::Milliseconds(20));
    ASSERT_TRUE(FiredBy(recorder, round));
    EXPECT_EQ(recorder.fired.load(), round);
  }
}

TEST(DeadlineTimerTest, ACallbackMayArmItsOwnAlarmAgain) {
  DeadlineTimer timer;
  std::atomic<int> fired{0};
  absl::Notification third;
  std::shared_ptr<DeadlineTimer::Alarm> alarm;
  alarm = timer.NewAlarm([&] {
    if (fired.fetch_add(1) + 1 == 3) {
      third.Notify();
      return;
    }
    alarm->Arm(absl::Now() + absl::Milliseconds(10));
  });
  alarm->Arm(absl::Now() + absl::Milliseconds(10));
  EXPECT_TRUE(third.WaitForNotificationWithTimeout(absl::Seconds(5)));
  absl::SleepFor(absl::Milliseconds(50));
  alarm->Cancel();
  EXPECT_EQ(fired.load(), 3);
}

TEST(DeadlineTimerTest, ACancelledAlarmNeverFires) {
  DeadlineTimer timer;
  Recorder recorder(timer);
  recorder.alarm->Arm(absl::Now() + absl::Milliseconds(50));
  recorder.alarm->Cancel();
  recorder.alarm->Arm(absl::Now() + absl::Milliseconds(50));  // disarmed for good
  absl::SleepFor(absl::Milliseconds(250));
  EXPECT_EQ(recorder.fired.load(), 0);
}

TEST(DeadlineTimerTest, CancelWaitsForARunningCallback) {
  DeadlineTimer timer;
  absl::Notification started;
  std::atomic<bool> finished{false};
  std::shared_ptr<DeadlineTimer::Alarm> alarm = timer.NewAlarm([&] {
    started.Notify();
    absl::SleepFor(absl::Milliseconds(300));
    finished.store(true);
  });
  alarm->Arm(absl::Now());
  ASSERT_TRUE(started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  alarm->Cancel();
  EXPECT_TRUE(finished.load());
}

TEST(DeadlineTimerTest, AnAlarmWhoseOwnerLetGoIsNotCalled) {
  DeadlineTimer timer;
  std::atomic<int> fired{0};
  {
    std::shared_ptr<DeadlineTimer::Alarm> alarm = timer.NewAlarm([&] { fired.fetch_add(1); });
    alarm->Arm(absl::Now() + absl::Milliseconds(50));
    alarm->Cancel();
  }
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(fired.load(), 0);
}

TEST(DeadlineTimerTest, ManyAlarmsEachFireAtTheirOwnTime) {
  DeadlineTimer timer;
  std::vector<std::unique_ptr<Recorder>> recorders;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 50; ++i) {
    recorders.push_back(std::make_unique<Recorder>(timer));
    // Armed in descending order: each one is the new earliest.
    recorders.back()->alarm->Arm(start + absl::Milliseconds(300 - 5 * i));
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(FiredBy(*recorders[i], 1)) << i;
    EXPECT_EQ(recorders[i]->fired.load(), 1) << i;
    EXPECT_GE(recorders[i]->last, start + absl::Milliseconds(300 - 5 * i)) << i;
  }
}

}  // namespace
}  // namespace ffibox

#include "client/cpp/internal/answer_watchdog.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>

#include "absl/synchronization/notification.h"
#include "core/thread_name.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

// Overdue once `due` has passed (or `forgiven` after a look that forgave the silence):
// counts its looks and is expired once.
class FakeStream : public AnswerWatchdog::Watched {
 public:
  explicit FakeStream(absl::Time due, absl::Duration forgiven = absl::Milliseconds(200))
      : due_(due), forgiven_(forgiven) {}
  absl::Time LookForSilence(absl::Time now, bool held_up) override {
    ++looks_;
    if (held_up) {
      ++held_up_looks_;
      due_ = now + forgiven_;
    }
    if (now < due_) return due_;
    if (!expired_.HasBeenNotified()) expired_.Notify();
    return absl::InfiniteFuture();
  }
  absl::Notification expired_;
  std::atomic<int> looks_{0};
  std::atomic<int> held_up_looks_{0};

 private:
  absl::Time due_;
  const absl::Duration forgiven_;
};

TEST(AnswerWatchdogTest, AStreamIsExpiredWhenItIsDueAndNotBefore) {
  const absl::Time start = absl::Now();
  FakeStream stream(start + absl::Milliseconds(200));
  AnswerWatchdog::Global().Watch(&stream);
  ASSERT_TRUE(stream.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(200));
  AnswerWatchdog::Global().Forget(&stream);
  EXPECT_EQ(stream.held_up_looks_.load(), 0);
  EXPECT_EQ(ThreadsNamed("ffibox-deadline"), 1);
}

TEST(AnswerWatchdogTest, AForgottenStreamIsNotLookedAtAgain) {
  FakeStream stream(absl::Now() + absl::Milliseconds(300));
  AnswerWatchdog::Global().Watch(&stream);
  AnswerWatchdog::Global().Forget(&stream);
  const int looks = stream.looks_.load();
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(stream.looks_.load(), looks);
  EXPECT_FALSE(stream.expired_.HasBeenNotified());
}

TEST(AnswerWatchdogTest, SeveralStreamsAreEachExpiredAtTheirOwnTime) {
  const absl::Time start = absl::Now();
  FakeStream late(start + absl::Milliseconds(600));
  FakeStream soon(start + absl::Milliseconds(100));
  AnswerWatchdog::Global().Watch(&late);
  AnswerWatchdog::Global().Watch(&soon);
  ASSERT_TRUE(soon.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(late.expired_.HasBeenNotified());
  ASSERT_TRUE(late.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(600));
  AnswerWatchdog::Global().Forget(&late);
  AnswerWatchdog::Global().Forget(&soon);
}

TEST(AnswerWatchdogTest, SilenceWhileTheProcessWasStoppedIsForgiven) {
  // Due 300 ms from now, but this process is stopped for 2 s meanwhile (a child wakes
  // it): that silence was not the server's, which gets its time again from the wakeup.
  FakeStream stream(absl::Now() + absl::Milliseconds(300));
  AnswerWatchdog::Global().Watch(&stream);
  const pid_t self = getpid();
  const pid_t waker = fork();
  ASSERT_GE(waker, 0);
  if (waker == 0) {
    usleep(2000 * 1000);
    kill(self, SIGCONT);
    _exit(0);
  }
  kill(self, SIGSTOP);
  const absl::Time resumed = absl::Now();
  int status = 0;
  ASSERT_EQ(waitpid(waker, &status, 0), waker);
  ASSERT_TRUE(stream.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(stream.held_up_looks_.load(), 1);
  EXPECT_GE(absl::Now() - resumed, absl::Milliseconds(150));
  AnswerWatchdog::Global().Forget(&stream);
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

#include "client/cpp/internal/answer_watchdog.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <string>

#include "absl/synchronization/notification.h"
#include "client/cpp/internal/answer_deadlines.h"
#include "core/thread_name.h"
#include "gtest/gtest.h"

namespace ffibox {
namespace client_internal {
namespace {

// Overdue once `due` has passed (or `forgiven` after a look that forgave the silence):
// counts its looks and is expired once. Times are SteadyNow's.
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

// The state letter of process `pid` (/proc/PID/stat), or 0.
char StateOf(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() ? line[close + 2] : 0;
}

TEST(AnswerWatchdogTest, AStreamIsExpiredWhenItIsDueAndNotBefore) {
  const absl::Time start = SteadyNow();
  FakeStream stream(start + absl::Milliseconds(200));
  AnswerWatchdog::Global().Watch(&stream);
  ASSERT_TRUE(stream.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  // SteadyNow is coarse: a few milliseconds either way.
  EXPECT_GE(SteadyNow() - start, absl::Milliseconds(190));
  AnswerWatchdog::Global().Forget(&stream);
  EXPECT_EQ(stream.held_up_looks_.load(), 0);
  EXPECT_EQ(ThreadsNamed("ffibox-deadline"), 1);
}

TEST(AnswerWatchdogTest, AForgottenStreamIsNotLookedAtAgain) {
  FakeStream stream(SteadyNow() + absl::Milliseconds(300));
  AnswerWatchdog::Global().Watch(&stream);
  AnswerWatchdog::Global().Forget(&stream);
  const int looks = stream.looks_.load();
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(stream.looks_.load(), looks);
  EXPECT_FALSE(stream.expired_.HasBeenNotified());
}

TEST(AnswerWatchdogTest, SeveralStreamsAreEachExpiredAtTheirOwnTime) {
  const absl::Time start = SteadyNow();
  FakeStream late(start + absl::Seconds(2));
  FakeStream soon(start + absl::Milliseconds(100));
  AnswerWatchdog::Global().Watch(&late);
  AnswerWatchdog::Global().Watch(&soon);
  ASSERT_TRUE(soon.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_FALSE(late.expired_.HasBeenNotified());
  ASSERT_TRUE(late.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(SteadyNow() - start, absl::Milliseconds(1990));
  AnswerWatchdog::Global().Forget(&late);
  AnswerWatchdog::Global().Forget(&soon);
}

TEST(AnswerWatchdogTest, SilenceWhileTheProcessWasStoppedIsForgiven) {
  // Due 500 ms after it is watched, but this process is stopped for 2 s once the watchdog
  // waits for it (a child made beforehand wakes it, so that neither a slow fork nor a
  // watchdog not yet scheduled lets the due time pass first): that silence was not the
  // server's, which gets its time again from the wakeup.
  const pid_t self = getpid();
  const pid_t waker = fork();
  ASSERT_GE(waker, 0);
  if (waker == 0) {
    while (StateOf(self) != 'T') usleep(10 * 1000);
    usleep(2000 * 1000);
    kill(self, SIGCONT);
    _exit(0);
  }
  FakeStream stream(SteadyNow() + absl::Milliseconds(500));
  AnswerWatchdog::Global().Watch(&stream);
  while (stream.looks_.load() == 0) usleep(100);
  if (stream.expired_.HasBeenNotified()) {  // due before the stop: the waker is not needed
    kill(waker, SIGKILL);
    waitpid(waker, nullptr, 0);
    AnswerWatchdog::Global().Forget(&stream);
    FAIL() << "the stream expired before the process stopped";
  }
  kill(self, SIGSTOP);
  const absl::Time resumed = SteadyNow();
  int status = 0;
  ASSERT_EQ(waitpid(waker, &status, 0), waker);
  ASSERT_TRUE(stream.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_GE(stream.held_up_looks_.load(), 1);
  EXPECT_GE(SteadyNow() - resumed, absl::Milliseconds(150));
  AnswerWatchdog::Global().Forget(&stream);
}

TEST(AnswerWatchdogTest, AChildOfForkWatchesNoneOfItsParentsStreams) {
  FakeStream parents(SteadyNow() + absl::Milliseconds(300));
  AnswerWatchdog::Global().Watch(&parents);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A stream of its own is watched by a thread of its own; the parent's copy is not.
    FakeStream own(SteadyNow() + absl::Milliseconds(100));
    AnswerWatchdog::Global().Watch(&own);
    const bool expired = own.expired_.WaitForNotificationWithTimeout(absl::Seconds(10));
    absl::SleepFor(absl::Milliseconds(500));
    _exit(expired && !parents.expired_.HasBeenNotified() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(parents.expired_.WaitForNotificationWithTimeout(absl::Seconds(10)));
  AnswerWatchdog::Global().Forget(&parents);
}

}  // namespace
}  // namespace client_internal
}  // namespace ffibox

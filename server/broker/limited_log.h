// Log lines ffiboxd writes a bounded number of a minute.
#ifndef FFIBOX_SERVER_BROKER_LIMITED_LOG_H_
#define FFIBOX_SERVER_BROKER_LIMITED_LOG_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ffibox {

// Log lines that a client or a library can make ffiboxd write as often as it likes (a
// request protobuf complains about, a limit the worker hits on every call), at most
// `per_minute` a minute; the count of lines dropped meanwhile is added to the next line let
// through. A line let through goes to stderr, or to `then` (not owned, outliving this), a
// budget shared with others: one session's lines within its own, all sessions' within the
// process's, so no session crowds out another's. Thread-safe.
class LimitedLog {
 public:
  explicit LimitedLog(int per_minute, LimitedLog* then = nullptr)
      : per_minute_(per_minute), then_(then) {}
  LimitedLog(const LimitedLog&) = delete;
  LimitedLog& operator=(const LimitedLog&) = delete;

  // Writes `line` (no newline) unless this minute's lines are spent; `always`: written
  // whatever the count (a fatal error's).
  void Write(absl::string_view line, bool always = false);

  // Write with `now` as the time (tests).
  void WriteAt(absl::Time now, absl::string_view line, bool always = false);

 private:
  const int per_minute_;
  LimitedLog* const then_;
  absl::Mutex mu_;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  int written_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LIMITED_LOG_H_

#include "server/broker/limited_log.h"

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"

namespace ffibox {

void LimitedLog::Write(absl::string_view line, bool always) { WriteAt(absl::Now(), line, always); }

void LimitedLog::WriteAt(absl::Time now, absl::string_view line, bool always) {
  uint64_t dropped_before = 0;
  {
    absl::MutexLock lock(&mu_);
    if (now - window_start_ >= absl::Minutes(1)) {
      window_start_ = now;
      written_ = 0;
    }
    if (!always && written_ >= per_minute_) {
      ++dropped_;
      return;
    }
    ++written_;
    dropped_before = dropped_;
    dropped_ = 0;
  }
  // Within a shared log, the count is of this log's own lines (the shared one adds its own).
  const std::string text =
      dropped_before == 0 ? std::string(line)
      : then_ != nullptr  ? absl::StrCat(line, " (", dropped_before, " more of its lines dropped)")
                          : absl::StrCat(line, " (", dropped_before, " earlier lines dropped)");
  if (then_ != nullptr) {
    then_->WriteAt(now, text, always);
  } else {
    std::fprintf(stderr, "%s\n", text.c_str());
  }
}

}  // namespace ffibox

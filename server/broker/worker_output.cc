#include "server/broker/worker_output.h"

#include <errno.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ffibox {

bool TokenBucket::Take(size_t bytes, absl::Time now) {
  if (last_refill_ != absl::InfinitePast() && now > last_refill_) {
    tokens_ = std::min(burst_, tokens_ + rate_ * absl::ToDoubleSeconds(now - last_refill_));
  }
  last_refill_ = now;
  if (tokens_ < static_cast<double>(bytes)) return false;
  tokens_ -= static_cast<double>(bytes);
  return true;
}

std::optional<std::string> OutputBudget::Drain(int fd, absl::Time now, bool* closed) {
  *closed = false;
  std::string chunk(kMaxOutputChunk, '\0');
  ssize_t n;
  do {
    n = read(fd, chunk.data(), chunk.size());
  } while (n < 0 && errno == EINTR);
  if (n == 0 || (n < 0 && errno != EAGAIN)) {
    *closed = true;
    return std::nullopt;
  }
  if (n < 0) return std::nullopt;
  chunk.resize(static_cast<size_t>(n));
  if (!bucket_.Take(chunk.size(), now)) {
    dropped_pending_ += chunk.size();
    dropped_total_ += chunk.size();
    return std::nullopt;
  }
  if (dropped_pending_ == 0) return chunk;
  std::string note = absl::StrCat("[ffibox: ", dropped_pending_,
                                  " bytes of worker output dropped: over the session's budget]\n");
  dropped_pending_ = 0;
  return note + chunk;
}

}  // namespace ffibox

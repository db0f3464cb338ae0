// Relaying what a worker's library prints: the broker drains the worker's stdout and
// stderr pipes and sends the bytes to the client as WORKER_OUTPUT session events.
//
// What a worker writes is untrusted and may be endless, so the relay is bounded: each read
// takes at most kMaxOutputChunk bytes, and a session may relay at most `bytes_per_second`
// on average with bursts up to `burst_bytes` (a token bucket shared by both streams).
// Output past the budget is read and dropped, so a chatty library never blocks on a full
// pipe; the next chunk that fits starts with a note saying how many bytes were dropped.
// Not thread-safe: one session's reader thread uses it.
#ifndef FFIBOX_SERVER_BROKER_WORKER_OUTPUT_H_
#define FFIBOX_SERVER_BROKER_WORKER_OUTPUT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/time/time.h"

namespace ffibox {

inline constexpr size_t kMaxOutputChunk = 64 << 10;

// `bytes_per_second` on average, with bursts up to `burst_bytes`.
class TokenBucket {
 public:
  TokenBucket(size_t bytes_per_second, size_t burst_bytes)
      : rate_(bytes_per_second), burst_(burst_bytes), tokens_(burst_bytes) {}

  // Takes `bytes` at `now` if the budget holds them (true), else takes nothing (false).
  bool Take(size_t bytes, absl::Time now);

 private:
  const double rate_;
  const double burst_;
  double tokens_;
  absl::Time last_refill_ = absl::InfinitePast();
};

class OutputBudget {
 public:
  OutputBudget(size_t bytes_per_second, size_t burst_bytes)
      : bucket_(bytes_per_second, burst_bytes) {}

  // Reads what `fd` (non-blocking) holds now, up to kMaxOutputChunk bytes, and returns the
  // bytes to relay (with a note first when output was dropped since the last relay), or
  // nullopt when there is nothing to relay. Sets `*closed` when the pipe reached its end.
  std::optional<std::string> Drain(int fd, absl::Time now, bool* closed);

  // Bytes dropped so far because the budget was spent.
  uint64_t dropped_total() const { return dropped_total_; }

 private:
  TokenBucket bucket_;
  uint64_t dropped_pending_ = 0;  // dropped since the last relayed chunk
  uint64_t dropped_total_ = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_OUTPUT_H_

// What the broker and a worker agree on about a client's same-host channel
// (worker_protocol.proto, LocalChannel): its size and the status words of a call in progress.
#ifndef FFIBOX_SERVER_PROTOCOL_LOCAL_CHANNEL_H_
#define FFIBOX_SERVER_PROTOCOL_LOCAL_CHANNEL_H_

#include <time.h>

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace ffibox {

// Each ring of a same-host channel (a larger call streams through it).
inline constexpr size_t kLocalChannelRingBytes = size_t{256} << 10;

// The status words (ShmChannel::StoreStatusWord) the worker keeps while it runs a call from
// the channel: when it started (LocalClockNanos, never 0) and the function's handle; 0 when
// no call runs. Written by the worker, so untrusted: the broker only uses them to kill it.
inline constexpr int kLocalBusySinceWord = 0;
inline constexpr int kLocalBusyFunctionWord = 1;

// How long the rest of a frame may take once its first bytes arrived, and how long a reply
// may wait for the client to make room, before the worker closes the channel.
inline constexpr absl::Duration kLocalFrameArrival = absl::Seconds(1);
inline constexpr absl::Duration kLocalReplyDeparture = absl::Seconds(10);

// The clock of the busy words, the same in every process of the host.
inline uint64_t LocalClockNanos() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace ffibox

#endif  // FFIBOX_SERVER_PROTOCOL_LOCAL_CHANNEL_H_

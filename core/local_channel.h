// What the broker, a worker and a client agree on about a same-host channel
// (worker_protocol.proto, LocalChannel): its size and the status words of a call in progress.
#ifndef FFIBOX_CORE_LOCAL_CHANNEL_H_
#define FFIBOX_CORE_LOCAL_CHANNEL_H_

#include <time.h>

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"
#include "core/shm_channel.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Each ring of a same-host channel (a larger call streams through it).
inline constexpr size_t kLocalChannelRingBytes = size_t{256} << 10;

// The shared area of a same-host channel (MemoryBlock.shared_offset): as large as the
// largest block a call may carry (`max_block_bytes`), at most a quarter of the session's
// memory cap (`memory_limit_bytes`, 0: none; both ends map the area, and the worker's
// mapping counts against that cap) and at most 1 GiB (kMaxShmSharedBytes), in whole 64 KiB
// units (kShmSharedAlignment). Sparse: it costs memory only once a call writes it, and the
// pages a call wrote stay until the channel closes (the next large call reuses them).
inline uint64_t LocalSharedBytes(uint64_t max_block_bytes, uint64_t memory_limit_bytes) {
  uint64_t bytes = max_block_bytes < kMaxShmSharedBytes ? max_block_bytes : kMaxShmSharedBytes;
  if (memory_limit_bytes != 0 && bytes > memory_limit_bytes / 4) bytes = memory_limit_bytes / 4;
  return bytes / kShmSharedAlignment * kShmSharedAlignment;
}

// The status words (ShmChannel::StoreStatusWord) the worker keeps while it runs a call from
// the channel: when it started (LocalClockNanos, never 0), the function's handle and the
// call's own timeout_ms (0: the session's); all 0 when no call runs. Written by the worker
// (and writable by the client), so untrusted: the broker only uses them to kill the worker.
inline constexpr int kLocalBusySinceWord = 0;
inline constexpr int kLocalBusyFunctionWord = 1;
inline constexpr int kLocalBusyTimeoutWord = 2;
// Set by the worker when it closes the channel itself (kLocalClosed*), so that a client that
// reads end of stream knows its worker was not lost.
inline constexpr int kLocalClosedWord = 3;
inline constexpr uint64_t kLocalClosedByWorker = 1;
// How many calls from the channel the worker ran from their arguments' bits, without the
// request's parse (a scalar call: core/scalar_wire.h, WorkerExecutor::CallScalar), counted
// by the worker. Untrusted like every word: a statistic for tests and benchmarks, never used
// to decide anything.
inline constexpr int kLocalScalarCallsWord = 4;

// How long a frame may go without progress once its first bytes arrived, and how long a
// reply may wait for the client to make room, before the worker closes the channel.
inline constexpr absl::Duration kLocalFrameArrival = absl::Seconds(1);
inline constexpr absl::Duration kLocalReplyDeparture = absl::Seconds(10);

// How long the worker may spin for a client's next call, or a callback's answer, before it
// sleeps (ShmChannel::SetLongestReadSpin; the spin adapts below it): long enough to catch the
// next call of a client that does some work between calls (the Python client's general path,
// a call that passes memory, about 90 µs; a Python callback's handler, 100-150 µs), as the
// broker's worker spins for a marked request (kFollowingSpin). The worker spins this long
// only while it fits its CPU budget (LongSpinFitsBudget, server/worker/broker_connection.h).
inline constexpr absl::Duration kLocalLongestSpin = absl::Microseconds(200);

// What a client may send on the channel, at the top level (LocalChannelOpened.
// memory_requests) and inside a callback invocation that came there (OpenLocalChannel.
// callbacks), besides its callback_return: the requests the worker answers alone, without
// the broker's state (loads, resolves, callbacks and allocations are the broker's).
inline bool AllowedInChannelInvocation(const v1::Request& request) {
  switch (request.op_case()) {
    case v1::Request::kCall:
    case v1::Request::kReadMemory:
    case v1::Request::kReadMemoryList:
    case v1::Request::kReadString:
    case v1::Request::kWriteMemory:
    case v1::Request::kGetLayout:
      return true;
    default:
      return false;
  }
}

// What a handler of an invocation that came on the channel sends through the broker instead,
// naming the invocation in Request.channel_invocation: the requests that change or read the
// broker's state (handles of libraries, functions and callbacks, allocations), and the
// memory and layout requests, which either way reach the same worker.
inline bool AllowedThroughBrokerInChannelInvocation(v1::Request::OpCase op) {
  switch (op) {
    case v1::Request::kLoadLibrary:
    case v1::Request::kResolveFunction:
    case v1::Request::kLookupSymbol:
    case v1::Request::kDefineCallback:
    case v1::Request::kFreeCallback:
    case v1::Request::kAllocMemory:
    case v1::Request::kFreeMemory:
    case v1::Request::kFillMemory:
    case v1::Request::kCopyMemory:
    case v1::Request::kReadMemory:
    case v1::Request::kReadMemoryList:
    case v1::Request::kWriteMemory:
    case v1::Request::kReadString:
    case v1::Request::kGetLayout:
      return true;
    default:
      return false;
  }
}

// The most invocations a client serves nested in one another on the channel (the server's
// --max_callback_depth is at most 1024, 64 by default): a worker that nests more is taken for
// a hostile one, and the channel is dropped, before the client's stack runs out.
inline constexpr size_t kMaxChannelInvocationDepth = 256;

// The clock of the busy words, the same in every process of the host.
inline uint64_t LocalClockNanos() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace ffibox

#endif  // FFIBOX_CORE_LOCAL_CHANNEL_H_

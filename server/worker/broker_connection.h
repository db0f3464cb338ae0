// The worker's end of its connection to the broker: requests come down, replies go up, one
// message per frame (core/framing.h) over the shared-memory channel the broker created
// (core/shm_channel.h, mapped from fd 6). With server/broker/worker_connection.h, the only code
// that reads or writes frames between the two.
//
// What arrives here is untrusted input (the executor validates each request); the broker
// sends only what its session checked, but the worker does not rely on that.
#ifndef FFIBOX_SERVER_WORKER_BROKER_CONNECTION_H_
#define FFIBOX_SERVER_WORKER_BROKER_CONNECTION_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/shm_channel.h"
#include "google/protobuf/arena.h"
#include "server/protocol/worker_protocol.pb.h"
#include "server/worker/inline_arena.h"

namespace ffibox {

// The most bytes of one request the worker accepts from the broker (bounded by the
// broker's own message limit; this is a backstop).
inline constexpr size_t kMaxWorkerRequestBytes = size_t{1} << 30;

// The spin of a wait for the broker's next frame after a request marked next_follows. What
// it waits for is a gRPC round trip away (the answer to the client, the client's next request
// or callback answer, the broker's checks): 80 to 120 µs on a VM of two vCPUs for a C++
// client, where a wait that sleeps adds the wakeup of an idle vCPU (10 to 40 µs) to it. A
// spin of 100 µs missed often enough to fall back to sleeping for good. The first wait spins
// kFollowingSpin whole; later ones grow up to kLongestFollowingSpin as the client's pauses
// show they fit (ShmChannel::SetLongestReadSpin): a Python client over gRPC sends its next
// call 250 to 400 µs after the answer, and a worker asleep by then made each of its calls
// wait for that wakeup, the broker's and the client's (400 µs a call against 150 µs).
inline constexpr absl::Duration kFollowingSpin = absl::Microseconds(200);
inline constexpr absl::Duration kLongestFollowingSpin = absl::Milliseconds(1);
// The spin stops being grown once the worker has used 1/kFollowingSpinBudgetShare of its CPU
// time limit (RLIMIT_CPU), so that it never eats the budget of the calls themselves.
inline constexpr uint64_t kFollowingSpinBudgetShare = 4;

// Whether the worker may still spin long for its next frame (kFollowingSpin, growing up to
// kLongestFollowingSpin, for the broker's; kLocalLongestSpin for a same-host client's). The spin is
// CPU time charged to the worker like any other (RLIMIT_CPU, the session's session_cpu_seconds), so
// long spins stop once the worker has used 1/kFollowingSpinBudgetShare of that budget: a session
// that calls back to back for hours keeps the rest for its calls.
bool LongSpinFitsBudget();

// A request from the broker with the arena it was parsed into: its messages (a batch's
// thousands of calls and values) live in a few arena blocks and go together with it. The
// arena starts in a block allocated with it, so a request of a single call costs one
// allocation.
class ReceivedRequest {
 public:
  // An empty request on a fresh arena.
  ReceivedRequest();

  internal::WorkerRequest& request() { return *request_; }
  const internal::WorkerRequest& request() const { return *request_; }

 private:
  // A single call's request with its arguments fits the first block.
  using Storage = InlineArena<2048>;

  std::unique_ptr<Storage> storage_;
  internal::WorkerRequest* request_;  // on storage_'s arena
};

class BrokerConnection {
 public:
  // Speaks over `channel` (the peer's end). `hangup_fd` (not owned; -1: none) is the
  // channel's socket, whose hangup means the broker has gone (looked at every
  // kHangupCheckInterval while waiting; the broker's own close is seen at once).
  BrokerConnection(std::unique_ptr<ShmChannel> channel, int hangup_fd);

  BrokerConnection(const BrokerConnection&) = delete;
  BrokerConnection& operator=(const BrokerConnection&) = delete;

  // Blocks for the next request. UNAVAILABLE at end of stream (the broker has gone),
  // RESOURCE_EXHAUSTED for a frame over kMaxWorkerRequestBytes, INVALID_ARGUMENT for a
  // frame that is not a WorkerRequest, DATA_LOSS for a channel found corrupt (a library of
  // this process can write to it). A request marked next_follows makes the waits for the
  // next ones spin longer (kFollowingSpin, growing up to kLongestFollowingSpin) while the
  // worker's CPU budget allows; one without it ends that. Called from one thread at a time.
  absl::StatusOr<ReceivedRequest> Receive();

  // Sends one reply, written whole, waiting while the broker makes no room for it;
  // thread-safe (replies from several threads never interleave). UNAVAILABLE when the broker
  // has gone, DATA_LOSS for a corrupt channel.
  absl::Status Send(const internal::WorkerReply& reply) ABSL_LOCKS_EXCLUDED(write_mu_);

 private:
  const std::unique_ptr<ShmChannel> channel_;
  std::string frame_;     // the last request's bytes (Receive: one thread at a time)
  absl::Mutex write_mu_;  // one frame on the channel at a time
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_BROKER_CONNECTION_H_

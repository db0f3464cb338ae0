// The broker's end of the broker <-> worker channel.
//
// All broker code talks to a worker through this one small interface, so the transport can
// become a shared-memory ring without touching supervision or sessions. Frames are opaque
// bytes here (serialized WorkerRequest / WorkerReply); whatever Receive returns came from a
// worker and must be distrusted by the caller.
#ifndef FFIBOX_SERVER_WORKER_CHANNEL_H_
#define FFIBOX_SERVER_WORKER_CHANNEL_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace ffibox {

class WorkerChannel {
 public:
  virtual ~WorkerChannel() = default;

  // Sends one frame. Thread-safe with respect to Receive (one sender at a time). Returns
  // UNAVAILABLE when the worker has gone.
  virtual absl::Status Send(absl::string_view frame) = 0;

  // Waits for the next whole frame until `deadline`. Returns DEADLINE_EXCEEDED when the
  // deadline passed, CANCELLED when Interrupt() was called, UNAVAILABLE at end of stream and
  // RESOURCE_EXHAUSTED for a frame over the size limit. Called from one thread only.
  virtual absl::StatusOr<std::string> Receive(absl::Time deadline) = 0;

  // Makes a blocked (or the next) Receive return CANCELLED. Thread-safe.
  virtual void Interrupt() = 0;

  // While Receive waits, it also watches `fd` (not owned): when `fd` is readable or hung
  // up, Receive calls `on_ready` with poll's revents on its own thread, and stops watching
  // `fd` once `on_ready` returns false. Call before the first Receive, from the thread that
  // will call Receive. The default watches nothing (channels without descriptors).
  virtual void Watch(int fd, std::function<bool(short revents)> on_ready) {
    (void)fd;
    (void)on_ready;
  }
};

// A channel over a connected stream socket (one end of a socketpair). Takes ownership of
// `fd`. Frames longer than `max_frame_bytes` are refused. A worker that stops in the middle
// of a frame for kFrameStallTimeout gets DATA_LOSS from Receive (the broker then kills it),
// and the bytes of unfinished frames all channels of the process hold together stay under
// the limit of SetBufferedFrameBytesLimit: past it a channel stops reading (the worker waits
// on its write) until others drain. Fails if the interrupt eventfd cannot be created.
absl::StatusOr<std::unique_ptr<WorkerChannel>> MakeSocketWorkerChannel(int fd,
                                                                       size_t max_frame_bytes);

// How long a worker may leave a frame unfinished without sending more of it.
inline constexpr absl::Duration kFrameStallTimeout = absl::Seconds(10);

// The most bytes of unfinished worker frames all channels of this process may hold at once
// (0: no limit, the default). Set once at startup.
void SetBufferedFrameBytesLimit(size_t bytes);

// The bytes of unfinished worker frames held now, across all channels.
size_t BufferedFrameBytes();

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_CHANNEL_H_

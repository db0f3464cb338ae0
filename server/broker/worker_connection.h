// The broker's end of its connection to one worker: requests go down, replies come up.
//
// All broker code talks to a worker through this one small class, so the transport can
// become a shared-memory ring without touching supervision or sessions; only connection
// classes (this one and the worker's server/worker/broker_connection.h) read or write
// frames. Receive checks each frame's envelope (ParseWorkerFrame); the content of a reply
// came from a worker and is still untrusted: the session checks it against what it asked
// (server/broker/worker_reply.h).
#ifndef FFIBOX_SERVER_BROKER_WORKER_CONNECTION_H_
#define FFIBOX_SERVER_BROKER_WORKER_CONNECTION_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

class WorkerConnection {
 public:
  virtual ~WorkerConnection() = default;

  // Sends one request. Thread-safe (one sender at a time). Returns UNAVAILABLE when the
  // worker has gone.
  absl::Status Send(const internal::WorkerRequest& request);
  // Sends `envelope` (whose `request` is unset) with `request` as its `request`, as Send
  // would, without copying `request` into it: a batch of thousands of calls is relayed at
  // the cost of encoding it once.
  absl::Status Send(const internal::WorkerRequest& envelope, const v1::Request& request);

  // Waits for the next whole frame until `deadline` and checks its envelope. Returns
  // DEADLINE_EXCEEDED when the deadline passed, CANCELLED when Interrupt() was called,
  // UNAVAILABLE at end of stream, RESOURCE_EXHAUSTED for a frame over the size limit,
  // DATA_LOSS for a frame the worker stopped sending, and INVALID_ARGUMENT for one that is
  // not a well-formed reply. Called from one thread only.
  absl::StatusOr<internal::WorkerReply> Receive(absl::Time deadline);

  // Makes a blocked (or the next) Receive return CANCELLED. Thread-safe.
  virtual void Interrupt() = 0;

  // While Receive waits, it also watches `fd` (not owned): when `fd` is readable or hung
  // up, Receive calls `on_ready` with poll's revents on its own thread, and stops watching
  // `fd` once `on_ready` returns false. Call before the first Receive, from the thread that
  // will call Receive or before that thread starts. The default watches nothing (connections
  // without descriptors).
  virtual void Watch(int fd, std::function<bool(short revents)> on_ready) {
    (void)fd;
    (void)on_ready;
  }

 protected:
  // The transport: one opaque frame each way, with Send's and Receive's contracts.
  virtual absl::Status SendFrame(absl::string_view frame) = 0;
  virtual absl::StatusOr<std::string> ReceiveFrame(absl::Time deadline) = 0;
};

// A connection over a connected stream socket (one end of a socketpair). Takes ownership
// of `fd`. Frames longer than `max_frame_bytes` are refused. A worker that stops in the middle
// of a frame for kFrameStallTimeout gets DATA_LOSS from Receive (the broker then kills it),
// and the bytes of unfinished frames all connections of the process hold together stay under
// the limit of SetBufferedFrameBytesLimit: past it a connection stops reading (the worker waits
// on its write) until others drain. Fails if the interrupt eventfd cannot be created.
absl::StatusOr<std::unique_ptr<WorkerConnection>> MakeSocketWorkerConnection(
    int fd, size_t max_frame_bytes);

// How long a worker may leave a frame unfinished without sending more of it.
inline constexpr absl::Duration kFrameStallTimeout = absl::Seconds(10);

// The most bytes of unfinished worker frames all connections of this process may hold at once
// (0: no limit, the default). Set once at startup.
void SetBufferedFrameBytesLimit(size_t bytes);

// The bytes of unfinished worker frames held now, across all connections.
size_t BufferedFrameBytes();

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_CONNECTION_H_

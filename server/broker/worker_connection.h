// The broker's end of its connection to one worker: requests go down, replies come up.
//
// All broker code talks to a worker through this one small class; only connection classes
// (this one and the worker's server/worker/broker_connection.h) read or write frames.
// Receive checks each frame's envelope (ParseWorkerFrame); the content of a reply came from a
// worker and is still untrusted: the session checks it against what it asked
// (server/broker/worker_reply.h).
#ifndef FFIBOX_SERVER_BROKER_WORKER_CONNECTION_H_
#define FFIBOX_SERVER_BROKER_WORKER_CONNECTION_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/encoding_limits.h"
#include "core/framing.h"
#include "core/shm_channel.h"
#include "google/protobuf/io/coded_stream.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

class WorkerConnection {
 public:
  virtual ~WorkerConnection() = default;

  // Sends one request, waiting while the worker does not make room for it. Thread-safe (one
  // sender at a time). Returns UNAVAILABLE when the worker has gone, DATA_LOSS when it
  // corrupted the channel.
  absl::Status Send(const internal::WorkerRequest& request);
  // Sends `envelope` (whose `request` is unset) with `request` as its `request`, as Send
  // would, without copying `request` into it: a batch of thousands of calls is relayed at
  // the cost of encoding it once. Either Send encodes straight into the channel, a piece at
  // a time: a large request costs the broker no second copy.
  absl::Status Send(const internal::WorkerRequest& envelope, const v1::Request& request);

  // Whether Send(`request`) or Send(`envelope`, `request`) would not wait now: the frame fits
  // in the room the worker left. The sending thread's. The default says no.
  bool SendFitsNow(const internal::WorkerRequest& request);
  bool SendFitsNow(const internal::WorkerRequest& envelope, const v1::Request& request);

  // Waits for the next whole frame until `deadline` and checks its envelope. Returns
  // DEADLINE_EXCEEDED when the deadline passed, CANCELLED when Interrupt() was called,
  // UNAVAILABLE at end of stream, RESOURCE_EXHAUSTED for a frame over the size limit,
  // DATA_LOSS for a frame the worker stopped sending or a channel it corrupted, and
  // INVALID_ARGUMENT for a frame that is not a well-formed reply, or one that holds more
  // than the reply limits allow (SetReplyLimits). Called from one thread only.
  absl::StatusOr<internal::WorkerReply> Receive(absl::Time deadline);
  // Receive on the reader thread, which holds `role`, the read side's lock: the wait
  // releases it while it sleeps, so that another thread may take it and read in its place
  // meanwhile (ReceiveInPlace).
  absl::StatusOr<internal::WorkerReply> Receive(absl::Time deadline, absl::Mutex* role);
  // Receive on a thread that took the role lock while the reader thread sleeps: it spins
  // until `until` (DEADLINE_EXCEEDED) and never sleeps, and leaves an Interrupt pending for
  // the reader (CANCELLED). Call between MuteSleepingReader and UnmuteSleepingReader.
  absl::StatusOr<internal::WorkerReply> ReceiveInPlace(absl::Time until);
  // While a thread reads in place of the sleeping reader, the worker's frames do not wake
  // the sleeper; afterwards the sleeper is woken at once if the worker sent more, or if
  // bytes read in place are left unparsed. Called with the role lock held. The default does
  // nothing.
  virtual void MuteSleepingReader() {}
  virtual void UnmuteSleepingReader() {}

  // What a frame larger than kShapeCheckedBytes may hold (core/encoding_limits.h), asked of
  // `limits` on Receive's thread when such a frame has arrived: what may answer the requests
  // the worker is running, and a callback invocation. Call before the reader thread's first
  // Receive (WorkerProcess::AwaitStart's, of the worker's small first frame, may come
  // before). Until then no repeated field may occur in such a frame.
  void SetReplyLimits(std::function<AnswerLimits()> limits) { reply_limits_ = std::move(limits); }

  // Makes a blocked (or the next) Receive return CANCELLED. Thread-safe.
  virtual void Interrupt() = 0;

  // While Receive waits, it also watches `fd` (not owned): when `fd` is readable or hung
  // up, Receive calls `on_ready` with poll's revents on its own thread, and stops watching
  // `fd` once `on_ready` returns false. Call before the reader thread's first Receive, from
  // the thread that will call Receive or before that thread starts. The default watches nothing
  // (connections without descriptors).
  virtual void Watch(int fd, std::function<bool(short revents)> on_ready) {
    (void)fd;
    (void)on_ready;
  }

 protected:
  // Writes one frame's bytes.
  using Serializer = absl::FunctionRef<void(google::protobuf::io::CodedOutputStream*)>;

  // Whether a frame of `length` payload bytes fits now (SendFitsNow).
  virtual bool FrameFitsNow(size_t length) {
    (void)length;
    return false;
  }

 private:
  // SendFrame, counted in RelayedBytes when it succeeds.
  absl::Status SendCounted(size_t length, Serializer serialize);

  std::function<AnswerLimits()> reply_limits_ = [] { return AnswerLimits(); };

 protected:
  // How ReceiveFrame waits: as Receive (`role` null), as Receive with a role lock, or as
  // ReceiveInPlace (`in_place`).
  struct Waiting {
    absl::Mutex* role = nullptr;
    bool in_place = false;
  };

  // The transport: one opaque frame each way, with Send's and Receive's contracts. A frame
  // sent is `length` bytes that `serialize` writes; a frame received comes in pieces
  // (core/framing.h), which the parse frees as it goes.
  virtual absl::Status SendFrame(size_t length, Serializer serialize) = 0;
  virtual absl::StatusOr<FramePayload> ReceiveFrame(absl::Time deadline, Waiting waiting) = 0;

 private:
  // Receive's parse of a frame received as `waiting` says.
  absl::StatusOr<internal::WorkerReply> ReceiveParsed(absl::Time deadline, Waiting waiting);
};

// A connection over a shared-memory channel (core/shm_channel.h, the creator's end; the worker
// attached the other) whose frames are core/framing.h's, and a stream socket `hangup_fd`
// whose other end only the worker holds: it carries nothing, and its hangup says the worker
// has gone (a waiting Send or Receive then ends with UNAVAILABLE once the worker's last bytes
// are read). Takes ownership of both. A thread of the connection watches the socket and the
// descriptors of Watch; their events reach Receive's thread through the channel's wake.
// Frames longer than `max_frame_bytes` are refused. A worker that stops in the middle of a
// frame for kFrameStallTimeout gets DATA_LOSS from Receive (the broker then kills it), as does
// one that corrupts the channel's positions, and the bytes of unfinished frames all
// connections of the process hold together stay under the limit of SetBufferedFrameBytesLimit,
// plus kUnbudgetedFrameBytes per connection: past the limit a connection reads only while it
// holds less than that (the worker then waits on its full ring until others drain), so
// replies and events smaller than that always complete.
// Fails if the connection's eventfd cannot be created.
absl::StatusOr<std::unique_ptr<WorkerConnection>> MakeShmWorkerConnection(
    std::unique_ptr<ShmChannel> channel, int hangup_fd, size_t max_frame_bytes);

// What each connection may hold of unfinished frames beyond SetBufferedFrameBytesLimit: more
// than the largest event (64 KiB) with its header, wherever it starts in a read.
inline constexpr size_t kUnbudgetedFrameBytes = 128 * 1024;

// How long a worker may leave a frame unfinished without sending more of it.
inline constexpr absl::Duration kFrameStallTimeout = absl::Seconds(10);

// The most bytes of unfinished worker frames all connections of this process may hold at once
// (0: no limit, the default). Set once at startup.
void SetBufferedFrameBytesLimit(size_t bytes);

// The bytes of unfinished worker frames held now, across all connections.
size_t BufferedFrameBytes();

// The bytes of the whole frames all connections of this process have sent to workers
// (requests, the clients' inside them) and received from them (replies, callback
// invocations, events), since the process started.
struct RelayedFrameBytes {
  uint64_t to_workers = 0;
  uint64_t from_workers = 0;
};
RelayedFrameBytes RelayedBytes();

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_CONNECTION_H_

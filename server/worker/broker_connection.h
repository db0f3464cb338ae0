// The worker's end of its connection to the broker (fd 3): requests come down, replies go
// up, one message per frame (core/framing.h). With server/broker/worker_connection.h, the
// only code that reads or writes frames between the two.
//
// What arrives here is untrusted input (the executor validates each request); the broker
// sends only what its session checked, but the worker does not rely on that.
#ifndef FFIBOX_SERVER_WORKER_BROKER_CONNECTION_H_
#define FFIBOX_SERVER_WORKER_BROKER_CONNECTION_H_

#include <cstddef>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/arena.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

// The most bytes of one request the worker accepts from the broker (bounded by the
// broker's own message limit; this is a backstop).
inline constexpr size_t kMaxWorkerRequestBytes = size_t{1} << 30;

// A request from the broker with the arena it was parsed into: its messages (a batch's
// thousands of calls and values) live in a few arena blocks and go together with it.
class ReceivedRequest {
 public:
  // An empty request on a fresh arena.
  ReceivedRequest();

  internal::WorkerRequest& request() { return *request_; }
  const internal::WorkerRequest& request() const { return *request_; }

 private:
  std::unique_ptr<google::protobuf::Arena> arena_;
  internal::WorkerRequest* request_;  // on arena_
};

class BrokerConnection {
 public:
  // Speaks over the connected socket `fd` (not owned).
  explicit BrokerConnection(int fd) : fd_(fd) {}

  BrokerConnection(const BrokerConnection&) = delete;
  BrokerConnection& operator=(const BrokerConnection&) = delete;

  // Blocks for the next request. UNAVAILABLE at end of stream (the broker has gone),
  // RESOURCE_EXHAUSTED for a frame over kMaxWorkerRequestBytes, INVALID_ARGUMENT for a
  // frame that is not a WorkerRequest. Called from one thread only.
  absl::StatusOr<ReceivedRequest> Receive();

  // Sends one reply, written whole; thread-safe (replies from several threads never
  // interleave). UNAVAILABLE when the broker has gone.
  absl::Status Send(const internal::WorkerReply& reply) ABSL_LOCKS_EXCLUDED(write_mu_);

 private:
  const int fd_;
  absl::Mutex write_mu_;  // one frame on the socket at a time
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_BROKER_CONNECTION_H_

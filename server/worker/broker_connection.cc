#include "server/worker/broker_connection.h"

#include <string>

#include "core/framing.h"

namespace ffibox {

absl::StatusOr<internal::WorkerRequest> BrokerConnection::Receive() {
  absl::StatusOr<std::string> frame = ReadFrame(fd_, kMaxWorkerRequestBytes);
  if (!frame.ok()) return frame.status();
  internal::WorkerRequest request;
  if (!request.ParseFromString(*frame)) {
    return absl::InvalidArgumentError("a frame from the broker is not a WorkerRequest");
  }
  return request;
}

absl::Status BrokerConnection::Send(const internal::WorkerReply& reply) {
  const std::string frame = reply.SerializeAsString();
  absl::MutexLock lock(&write_mu_);
  return WriteFrame(fd_, frame);
}

}  // namespace ffibox

#include "server/worker/broker_connection.h"

#include <memory>
#include <string>

#include "core/framing.h"

namespace ffibox {

ReceivedRequest::ReceivedRequest()
    : arena_(std::make_unique<google::protobuf::Arena>()),
      request_(google::protobuf::Arena::CreateMessage<internal::WorkerRequest>(arena_.get())) {}

absl::StatusOr<ReceivedRequest> BrokerConnection::Receive() {
  absl::StatusOr<std::string> frame = ReadFrame(fd_, kMaxWorkerRequestBytes);
  if (!frame.ok()) return frame.status();
  ReceivedRequest request;
  if (!request.request().ParseFromString(*frame)) {
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

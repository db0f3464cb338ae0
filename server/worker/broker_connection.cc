#include "server/worker/broker_connection.h"

#include <memory>
#include <string>
#include <utility>

#include "core/framing.h"

namespace ffibox {

ReceivedRequest::ReceivedRequest()
    : arena_(std::make_unique<google::protobuf::Arena>()),
      request_(google::protobuf::Arena::CreateMessage<internal::WorkerRequest>(arena_.get())) {}

BrokerConnection::BrokerConnection(std::unique_ptr<ShmChannel> channel, int hangup_fd)
    : channel_(std::move(channel)) {
  if (hangup_fd >= 0) channel_->WatchPeerHangup(hangup_fd);
}

absl::StatusOr<ReceivedRequest> BrokerConnection::Receive() {
  absl::StatusOr<std::string> frame =
      ReadFrame(*channel_, kMaxWorkerRequestBytes, absl::InfiniteFuture());
  if (!frame.ok()) return frame.status();
  ReceivedRequest request;
  if (!request.request().ParseFromString(*frame)) {
    return absl::InvalidArgumentError("a frame from the broker is not a WorkerRequest");
  }
  channel_->SetLongestReadSpin(
      request.request().next_follows() ? kFollowingSpin : ShmChannel::kDefaultLongestReadSpin);
  return request;
}

absl::Status BrokerConnection::Send(const internal::WorkerReply& reply) {
  const std::string frame = reply.SerializeAsString();
  absl::MutexLock lock(&write_mu_);
  return WriteFrame(*channel_, frame, absl::InfiniteFuture());
}

}  // namespace ffibox

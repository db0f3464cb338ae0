#include "server/worker/broker_connection.h"

#include <sys/resource.h>
#include <time.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "core/framing.h"

namespace ffibox {

bool LongSpinFitsBudget() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_CPU, &limit) != 0) return false;
  if (limit.rlim_cur == RLIM_INFINITY) return true;
  struct timespec used;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &used) != 0) return false;
  return static_cast<uint64_t>(used.tv_sec) < limit.rlim_cur / kFollowingSpinBudgetShare;
}

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
  const bool follows = request.request().next_follows() && LongSpinFitsBudget();
  if (follows) {
    channel_->SetLongestReadSpin(kLongestFollowingSpin, kFollowingSpin);
  } else {
    channel_->SetLongestReadSpin(ShmChannel::kDefaultLongestReadSpin);
  }
  return request;
}

absl::Status BrokerConnection::Send(const internal::WorkerReply& reply) {
  const std::string frame = reply.SerializeAsString();
  absl::MutexLock lock(&write_mu_);
  return WriteFrame(*channel_, frame, absl::InfiniteFuture());
}

}  // namespace ffibox

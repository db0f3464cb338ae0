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
    : storage_(new Storage),  // not value-initialized: its block is not zeroed
      request_(google::protobuf::Arena::CreateMessage<internal::WorkerRequest>(&storage_->arena)) {}

BrokerConnection::BrokerConnection(std::unique_ptr<ShmChannel> channel, int hangup_fd)
    : channel_(std::move(channel)) {
  if (hangup_fd >= 0) channel_->WatchPeerHangup(hangup_fd);
}

absl::StatusOr<ReceivedRequest> BrokerConnection::Receive() {
  absl::Status read =
      ReadFrameInto(*channel_, kMaxWorkerRequestBytes, absl::InfiniteFuture(), &frame_);
  if (!read.ok()) return read;
  ReceivedRequest request;
  const bool parsed = request.request().ParseFromString(frame_);
  // The request holds what it needs: a large frame's bytes go now, not with the next frame.
  if (frame_.capacity() > kLargeFrameBytes) std::string().swap(frame_);
  if (!parsed) {
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
  const size_t length = reply.ByteSizeLong();
  absl::MutexLock lock(&write_mu_);
  // Serialized into the ring as it goes (a small reply through a buffer on the stack).
  return WriteFrame(
      *channel_, length,
      [&reply](google::protobuf::io::CodedOutputStream* out) {
        reply.SerializeWithCachedSizes(out);
      },
      absl::InfiniteFuture());
}

}  // namespace ffibox

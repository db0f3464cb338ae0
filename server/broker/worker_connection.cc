#include "server/broker/worker_connection.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/framing.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/broker/worker_reply.h"

namespace ffibox {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// How long a connection waits before it looks at the budget again when it is spent.
constexpr absl::Duration kBudgetRetry = absl::Milliseconds(10);

std::atomic<size_t> buffered_limit{0};
std::atomic<size_t> buffered_bytes{0};

class SocketWorkerConnection : public WorkerConnection {
 public:
  SocketWorkerConnection(int fd, int event_fd, size_t max_frame_bytes)
      : fd_(fd), event_fd_(event_fd), decoder_(max_frame_bytes) {}

  ~SocketWorkerConnection() override {
    buffered_bytes.fetch_sub(held_);
    close(fd_);
    close(event_fd_);
  }

  absl::Status SendFrame(absl::string_view frame) override {
    // The fd stays in blocking mode (Receive polls and reads with MSG_DONTWAIT), so a large
    // frame blocks here until the worker drains it; a hung worker is killed by its deadline,
    // which ends the write with UNAVAILABLE.
    absl::MutexLock lock(&send_mu_);
    return WriteFrame(fd_, frame);
  }

  absl::StatusOr<std::string> ReceiveFrame(absl::Time deadline) override {
    for (;;) {
      absl::StatusOr<std::optional<std::string>> next = decoder_.Next();
      Account();
      if (!next.ok()) return next.status();
      if (next->has_value()) return std::move(**next);

      const absl::Time now = absl::Now();
      // Read only while the process-wide budget of unfinished frames has room: otherwise
      // the worker waits on its write, and this connection looks again shortly.
      const size_t limit = buffered_limit.load();
      const bool may_read = limit == 0 || buffered_bytes.load() + kReadChunk <= limit;
      absl::Time wake = deadline;
      if (decoder_.HasPartialFrame()) {
        // Waiting for the budget does not stop this clock: when unfinished frames fill the
        // budget, the ones that stop progressing are dropped, and the rest can go on.
        const absl::Time stalled = last_progress_ + kFrameStallTimeout;
        if (now >= stalled) {
          return absl::DataLossError(absl::StrCat(
              "the worker's reply stopped in the middle of a frame (", decoder_.Buffered(),
              " bytes of it received, nothing more for ", absl::FormatDuration(kFrameStallTimeout),
              may_read ? ")"
                       : "; the server's budget of unfinished replies, "
                         "limits.max_buffered_reply_bytes, was spent)"));
        }
        wake = std::min(wake, stalled);
      }
      if (!may_read) wake = std::min(wake, now + kBudgetRetry);
      int timeout_ms = -1;
      if (wake != absl::InfiniteFuture()) {
        if (deadline <= now) return absl::DeadlineExceededError("no reply before the deadline");
        absl::Duration left = wake - now;
        // Round up so we never wake before the deadline and spin. Clamp: a deadline beyond
        // INT_MAX ms must not wrap into a negative (infinite) poll timeout; waking early
        // merely loops.
        timeout_ms = static_cast<int>(
            std::min<int64_t>(absl::ToInt64Milliseconds(left + absl::Milliseconds(1)), INT_MAX));
      }
      struct pollfd fds[2 + kMaxWatches];
      fds[0] = {may_read ? fd_ : -1, POLLIN, 0};
      fds[1] = {event_fd_, POLLIN, 0};
      for (size_t i = 0; i < watches_.size(); ++i) fds[2 + i] = {watches_[i].fd, POLLIN, 0};
      int ready = poll(fds, 2 + watches_.size(), timeout_ms);
      if (ready < 0) {
        if (errno == EINTR) continue;
        return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
      }
      for (size_t i = watches_.size(); i-- > 0;) {
        const short revents = fds[2 + i].revents;
        if ((revents & (POLLIN | POLLHUP | POLLERR)) && !watches_[i].on_ready(revents)) {
          watches_.erase(watches_.begin() + static_cast<std::ptrdiff_t>(i));
        }
      }
      if (fds[1].revents & POLLIN) {
        uint64_t count;
        (void)!read(event_fd_, &count, sizeof(count));
        return absl::CancelledError("interrupted");
      }
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        char buffer[kReadChunk];
        ssize_t n = recv(fd_, buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EINTR || errno == EAGAIN) continue;
          return absl::UnavailableError(absl::StrCat("channel read failed: ", strerror(errno)));
        }
        if (n == 0) {
          return absl::UnavailableError(decoder_.HasPartialFrame()
                                            ? "channel closed in the middle of a frame"
                                            : "channel closed by peer");
        }
        decoder_.Append(buffer, static_cast<size_t>(n));
        last_progress_ = absl::Now();
        Account();
      }
    }
  }

  void Interrupt() override {
    uint64_t one = 1;
    (void)!write(event_fd_, &one, sizeof(one));
  }

  void Watch(int fd, std::function<bool(short revents)> on_ready) override {
    if (watches_.size() < kMaxWatches) watches_.push_back(WatchedFd{fd, std::move(on_ready)});
  }

 private:
  static constexpr size_t kMaxWatches = 4;
  struct WatchedFd {
    int fd;
    std::function<bool(short revents)> on_ready;
  };

  // Brings the process-wide count up to date with what the decoder holds now.
  void Account() {
    const size_t now_held = decoder_.Buffered();
    if (now_held >= held_) {
      buffered_bytes.fetch_add(now_held - held_);
    } else {
      buffered_bytes.fetch_sub(held_ - now_held);
    }
    held_ = now_held;
  }

  const int fd_;
  const int event_fd_;
  FrameDecoder decoder_;
  size_t held_ = 0;                         // this connection's share of buffered_bytes
  absl::Time last_progress_ = absl::Now();  // the last bytes of a frame arrived then
  absl::Mutex send_mu_;
  std::vector<WatchedFd> watches_;  // used by the Receive thread only
};

}  // namespace

void SetBufferedFrameBytesLimit(size_t bytes) { buffered_limit.store(bytes); }

size_t BufferedFrameBytes() { return buffered_bytes.load(); }

absl::Status WorkerConnection::Send(const internal::WorkerRequest& request) {
  return SendFrame(request.SerializeAsString());
}

absl::Status WorkerConnection::Send(const internal::WorkerRequest& envelope,
                                    const v1::Request& request) {
  // A message field may follow the other fields on the wire: the envelope's bytes, then
  // `request` encoded as field `request` (tag, length, bytes), decode as one WorkerRequest.
  std::string frame = envelope.SerializeAsString();
  const size_t size = request.ByteSizeLong();
  const size_t start = frame.size();
  frame.resize(start + 1 + google::protobuf::io::CodedOutputStream::VarintSize64(size) + size);
  auto* out = reinterpret_cast<uint8_t*>(&frame[start]);
  out = google::protobuf::io::CodedOutputStream::WriteTagToArray(
      google::protobuf::internal::WireFormatLite::MakeTag(
          internal::WorkerRequest::kRequestFieldNumber,
          google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED),
      out);
  out = google::protobuf::io::CodedOutputStream::WriteVarint64ToArray(size, out);
  request.SerializeWithCachedSizesToArray(out);
  return SendFrame(frame);
}

absl::StatusOr<internal::WorkerReply> WorkerConnection::Receive(absl::Time deadline) {
  absl::StatusOr<std::string> frame = ReceiveFrame(deadline);
  if (!frame.ok()) return frame.status();
  // The frame's bytes go when this returns: one copy fewer at the peak of a large reply.
  return ParseWorkerFrame(*frame);
}

absl::StatusOr<std::unique_ptr<WorkerConnection>> MakeSocketWorkerConnection(
    int fd, size_t max_frame_bytes) {
  int event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (event_fd < 0) {
    int saved = errno;
    close(fd);
    return absl::ResourceExhaustedError(absl::StrCat("eventfd: ", strerror(saved)));
  }
  return std::unique_ptr<WorkerConnection>(
      new SocketWorkerConnection(fd, event_fd, max_frame_bytes));
}

}  // namespace ffibox

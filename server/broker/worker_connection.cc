#include "server/broker/worker_connection.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/framing.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/wire_format_lite.h"
#include "server/broker/descriptor_watch.h"
#include "server/broker/worker_reply.h"

namespace ffibox {
namespace {

constexpr size_t kReadChunk = 64 * 1024;
// What each connection may hold of unfinished frames outside the process-wide budget
// (kUnbudgetedFrameBytes, worker_connection.h): a frame that small always completes.
static_assert(kUnbudgetedFrameBytes >= kReadChunk);
// How long a connection waits before it looks at the budget again when it is spent.
constexpr absl::Duration kBudgetRetry = absl::Milliseconds(10);

std::atomic<size_t> buffered_limit{0};
std::atomic<size_t> buffered_bytes{0};
// RelayedBytes(): counted once per whole frame, relaxed (a metric, read at scrape).
std::atomic<uint64_t> relayed_to_workers{0};
std::atomic<uint64_t> relayed_from_workers{0};

class ShmWorkerConnection : public WorkerConnection {
 public:
  ShmWorkerConnection(std::unique_ptr<ShmChannel> channel, int hangup_fd, int control_fd,
                      size_t max_frame_bytes)
      : channel_(std::move(channel)),
        hangup_fd_(hangup_fd),
        control_fd_(control_fd),
        decoder_(max_frame_bytes),
        watch_(std::make_unique<DescriptorWatch>(channel_.get(), hangup_fd, control_fd)) {}

  // Starts the thread that watches the worker's descriptors (DescriptorWatch::Start).
  absl::Status StartWatch() { return watch_->Start(); }

  ~ShmWorkerConnection() override {
    watch_.reset();
    buffered_bytes.fetch_sub(held_);
    channel_.reset();  // closes the channel: a worker still reading sees its end
    close(hangup_fd_);
    close(control_fd_);
  }

  absl::Status SendFrame(size_t length, Serializer serialize) override {
    // A large frame streams through the ring as the worker drains it; a hung worker is killed
    // by its deadline, whose hangup ends the write with UNAVAILABLE.
    absl::MutexLock lock(&send_mu_);
    return WriteFrame(*channel_, length, serialize, absl::InfiniteFuture());
  }

  bool FrameFitsNow(size_t length) override {
    absl::MutexLock lock(&send_mu_);
    return channel_->WritableNow() >= length + kFrameHeaderBytes;
  }

  absl::StatusOr<FramePayload> ReceiveFrame(absl::Time deadline, Waiting waiting) override {
    for (;;) {
      if (watch_->has_ready()) watch_->DispatchReady();
      // In place of the reader, an Interrupt is left for the reader to take.
      if (waiting.in_place ? interrupted_.load() : interrupted_.exchange(false)) {
        return absl::CancelledError("interrupted");
      }
      absl::StatusOr<std::optional<FramePayload>> next = decoder_.Next();
      Account();
      if (!next.ok()) return next.status();
      if (next->has_value()) {
        watch_->DispatchReadyNow();  // the worker's earlier output goes first
        return std::move(**next);
      }

      const absl::Time now = absl::Now();
      const size_t read_size = ReadSize();
      const bool may_read = read_size > 0;
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
      if (deadline <= now) return absl::DeadlineExceededError("no reply before the deadline");
      if (!may_read && waiting.in_place) return absl::DeadlineExceededError("no room to read");
      if (!may_read) {
        absl::SleepFor(std::min(wake, now + kBudgetRetry) - now);
        continue;
      }
      // The bytes are copied out of the shared memory into the decoder, which alone parses.
      absl::StatusOr<size_t> got = channel_->ReadAvailable(
          read_size,
          [this](const char* untrusted, size_t size) { decoder_.Append(untrusted, size); });
      if (!got.ok()) {
        if (!absl::IsUnavailable(got.status())) return got.status();  // a corrupt channel
        return absl::UnavailableError(decoder_.HasPartialFrame()
                                          ? "channel closed in the middle of a frame"
                                          : "channel closed by peer");
      }
      if (*got > 0) {
        last_progress_ = absl::Now();
        Account();
        continue;
      }
      absl::Status waited = waiting.in_place ? channel_->SpinReadable(wake)
                                             : channel_->WaitReadable(wake, waiting.role);
      if (waiting.in_place && !waited.ok()) return waited;
      // Woken by Interrupt, a watched descriptor or a deadline: the loop sees which.
      if (!waited.ok() && !absl::IsCancelled(waited) && !absl::IsDeadlineExceeded(waited)) {
        return waited;
      }
    }
  }

  void Interrupt() override {
    interrupted_.store(true);
    channel_->Interrupt();
  }

  void Watch(int fd, std::function<bool(short revents)> on_ready) override {
    watch_->Add(fd, std::move(on_ready));
  }

  void MuteSleepingReader() override { channel_->MuteSleepingReader(); }
  void UnmuteSleepingReader() override {
    channel_->UnmuteSleepingReader();
    // Bytes read in place but not taken (a frame behind the answer, or part of one) are for
    // the reader, which looks at the decoder once woken.
    if (decoder_.Buffered() > 0) channel_->Interrupt();
  }

 private:
  // Brings the process-wide count up to date with what the decoder holds now.
  // How many bytes this connection may read now. A chunk while the process-wide budget of
  // unfinished frames has room; without room, only up to kUnbudgetedFrameBytes held, so a
  // small reply or an event is never held up by others' large ones. 0: the worker waits on
  // its full ring, and this connection looks again shortly.
  size_t ReadSize() const {
    const size_t limit = buffered_limit.load();
    if (limit == 0 || buffered_bytes.load() + kReadChunk <= limit) return kReadChunk;
    if (held_ >= kUnbudgetedFrameBytes) return 0;
    return std::min(kReadChunk, kUnbudgetedFrameBytes - held_);
  }

  void Account() {
    const size_t now_held = decoder_.Buffered();
    if (now_held >= held_) {
      buffered_bytes.fetch_add(now_held - held_);
    } else {
      buffered_bytes.fetch_sub(held_ - now_held);
    }
    held_ = now_held;
  }

  std::unique_ptr<ShmChannel> channel_;
  const int hangup_fd_;
  const int control_fd_;
  FrameDecoder decoder_;
  size_t held_ = 0;                         // this connection's share of buffered_bytes
  absl::Time last_progress_ = absl::Now();  // the last bytes of a frame arrived then
  std::atomic<bool> interrupted_{false};
  absl::Mutex send_mu_;
  std::unique_ptr<DescriptorWatch> watch_;
};

}  // namespace

void SetBufferedFrameBytesLimit(size_t bytes) { buffered_limit.store(bytes); }

size_t BufferedFrameBytes() { return buffered_bytes.load(); }

RelayedFrameBytes RelayedBytes() {
  return {relayed_to_workers.load(std::memory_order_relaxed),
          relayed_from_workers.load(std::memory_order_relaxed)};
}

absl::Status WorkerConnection::Send(const internal::WorkerRequest& request) {
  return SendCounted(request.ByteSizeLong(),
                     [&request](google::protobuf::io::CodedOutputStream* out) {
                       request.SerializeWithCachedSizes(out);
                     });
}

absl::Status WorkerConnection::SendCounted(size_t length, Serializer serialize) {
  absl::Status sent = SendFrame(length, serialize);
  if (sent.ok()) relayed_to_workers.fetch_add(length, std::memory_order_relaxed);
  return sent;
}

namespace {

// A message field may follow the other fields on the wire: the envelope's bytes, then
// `request` encoded as field `request` (tag, length, bytes), decode as one WorkerRequest.
const uint32_t kRequestTag = google::protobuf::internal::WireFormatLite::MakeTag(
    internal::WorkerRequest::kRequestFieldNumber,
    google::protobuf::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED);

// The length of that frame, when `request` is `size` bytes (the envelope's size cached).
size_t EnvelopedLength(const internal::WorkerRequest& envelope, size_t size) {
  using google::protobuf::io::CodedOutputStream;
  return envelope.ByteSizeLong() + CodedOutputStream::VarintSize32(kRequestTag) +
         CodedOutputStream::VarintSize64(size) + size;
}

}  // namespace

bool WorkerConnection::SendFitsNow(const internal::WorkerRequest& request) {
  return FrameFitsNow(request.ByteSizeLong());
}

bool WorkerConnection::SendFitsNow(const internal::WorkerRequest& envelope,
                                   const v1::Request& request) {
  return FrameFitsNow(EnvelopedLength(envelope, request.ByteSizeLong()));
}

absl::Status WorkerConnection::Send(const internal::WorkerRequest& envelope,
                                    const v1::Request& request) {
  using google::protobuf::io::CodedOutputStream;
  const uint32_t tag = kRequestTag;
  const size_t size = request.ByteSizeLong();
  const size_t length = EnvelopedLength(envelope, size);
  return SendCounted(length, [&](CodedOutputStream* out) {
    envelope.SerializeWithCachedSizes(out);
    out->WriteTag(tag);
    out->WriteVarint64(size);
    request.SerializeWithCachedSizes(out);
  });
}

absl::StatusOr<internal::WorkerReply> WorkerConnection::Receive(absl::Time deadline) {
  return ReceiveParsed(deadline, Waiting());
}

absl::StatusOr<internal::WorkerReply> WorkerConnection::Receive(absl::Time deadline,
                                                                absl::Mutex* role) {
  return ReceiveParsed(deadline, Waiting{role, false});
}

absl::StatusOr<internal::WorkerReply> WorkerConnection::ReceiveInPlace(absl::Time until) {
  return ReceiveParsed(until, Waiting{nullptr, true});
}

absl::StatusOr<internal::WorkerReply> WorkerConnection::ReceiveParsed(absl::Time deadline,
                                                                      Waiting waiting) {
  absl::StatusOr<FramePayload> frame = ReceiveFrame(deadline, waiting);
  if (!frame.ok()) return frame.status();
  relayed_from_workers.fetch_add(frame->size(), std::memory_order_relaxed);
  // The frame's pieces go as the parse takes them: one copy fewer at the peak of a large
  // reply.
  return ParseWorkerFrame(*std::move(frame), reply_limits_);
}

absl::StatusOr<std::unique_ptr<WorkerConnection>> MakeShmWorkerConnection(
    std::unique_ptr<ShmChannel> channel, int hangup_fd, size_t max_frame_bytes) {
  int control_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (control_fd < 0) {
    int saved = errno;
    close(hangup_fd);
    return absl::ResourceExhaustedError(absl::StrCat("eventfd: ", strerror(saved)));
  }
  auto connection = std::make_unique<ShmWorkerConnection>(std::move(channel), hangup_fd, control_fd,
                                                          max_frame_bytes);
  if (absl::Status watching = connection->StartWatch(); !watching.ok()) return watching;
  return std::unique_ptr<WorkerConnection>(std::move(connection));
}

}  // namespace ffibox

#include "server/broker/client_stream.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "core/thread_name.h"
#include "server/broker/message_codec.h"

namespace ffibox {
namespace {

size_t CountedBytes(const grpc::ByteBuffer& request) {
  return std::max(request.Length(), ClientStream::kReadAheadMessageBytes);
}

}  // namespace

ClientStream::ClientStream(Stream* stream, std::function<void()> cancel, DeadlineTimer* timer,
                           absl::Duration read_ahead_after, absl::Duration grace)
    : stream_(stream),
      cancel_(std::move(cancel)),
      read_ahead_after_(read_ahead_after),
      grace_(grace) {
  if (timer != nullptr) watch_ = timer->NewAlarm([this] { Watch(); });
}

ClientStream::~ClientStream() {
  if (watch_ != nullptr) watch_->Cancel();
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    // A helper that waits for a request ends when the client closes its side (a client that
    // asked to close does once it has the answer), or when the grace is over.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !helper_reading_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&idle), grace_) && !cancelled_) {
      cancelled_ = true;
      cancel_();
    }
  }
  if (helper_.joinable()) helper_.join();
}

bool ClientStream::Read(grpc::ByteBuffer* request) {
  {
    absl::MutexLock lock(&mu_);
    // One Read of the stream at a time: a request the helper reads now comes first.
    stream_waiting_ = true;
    auto helper_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !ahead_.empty() || !helper_reading_;
    };
    mu_.Await(absl::Condition(&helper_done));
    stream_waiting_ = false;
    if (cancelled_) return false;
    if (!ahead_.empty()) {
      // No write waits any more: the stream's thread reads for itself once these are taken.
      if (!writing_since_.has_value()) read_ahead_ = false;
      ahead_bytes_ -= CountedBytes(ahead_.front());
      *request = std::move(ahead_.front());
      ahead_.pop_front();
      return true;
    }
    if (read_ended_) return false;
    read_ahead_ = false;
    stream_reading_ = true;
  }
  const bool got = stream_->Read(request);
  absl::MutexLock lock(&mu_);
  stream_reading_ = false;
  if (!got) {
    read_ended_ = true;
    ClosedLocked();
  }
  return got;
}

void ClientStream::Close() {
  absl::MutexLock lock(&mu_);
  ClosedLocked();
}

void ClientStream::ClosedLocked() {
  if (!closed_at_.has_value()) closed_at_ = absl::Now();
}

bool ClientStream::Send(v1::Response response) {
  // Encoded outside the lock; a large response's bytes stay where they are, and the
  // response lives until gRPC has sent them.
  grpc::ByteBuffer encoded = Encode(std::move(response));
  absl::MutexLock lock(&write_mu_);
  WriteHeld(grpc::WriteOptions().set_buffer_hint());
  Write(encoded, grpc::WriteOptions());
  return !broken_;
}

void ClientStream::SendWithNext(v1::Response response) {
  grpc::ByteBuffer encoded = Encode(std::move(response));
  absl::MutexLock lock(&write_mu_);
  WriteHeld(grpc::WriteOptions().set_buffer_hint());
  held_ = std::move(encoded);
}

void ClientStream::Flush() {
  absl::MutexLock lock(&write_mu_);
  WriteHeld(grpc::WriteOptions());
}

grpc::ByteBuffer ClientStream::Encode(v1::Response response) {
  return EncodeAliasing(std::make_shared<const v1::Response>(std::move(response)));
}

void ClientStream::WriteHeld(grpc::WriteOptions options) {
  if (!held_.has_value()) return;
  Write(*held_, options);
  held_.reset();
}

void ClientStream::Write(const grpc::ByteBuffer& encoded, grpc::WriteOptions options) {
  if (broken_) return;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    writing_since_ = now;
    // Armed at most once a period by the writes of a busy stream; the watch arms itself
    // again while a write waits.
    if (watch_ != nullptr && !watch_armed_) {
      watch_armed_ = true;
      watch_->Arm(now + read_ahead_after_);
    }
  }
  const bool written = stream_->Write(encoded, options);
  {
    absl::MutexLock lock(&mu_);
    writing_since_.reset();
  }
  if (!written) broken_ = true;
}

void ClientStream::Watch() {
  absl::MutexLock lock(&mu_);
  watch_armed_ = false;
  // No write waits: the next one arms the watch.
  if (!writing_since_.has_value() || stopping_ || cancelled_) return;
  const absl::Time now = absl::Now();
  absl::Time next = *writing_since_ + read_ahead_after_;
  if (now >= next) {
    ReadAheadLocked();
    next = now + read_ahead_after_;
  }
  if (closed_at_.has_value()) {
    const absl::Time due = std::max(*writing_since_, *closed_at_) + grace_;
    if (now >= due) {
      cancelled_ = true;
      cancel_();
      return;
    }
    next = std::min(next, due);
  }
  watch_armed_ = true;
  watch_->Arm(next);
}

void ClientStream::ReadAheadLocked() {
  // The stream's thread, reading, sees the client close itself (the waiting write is the
  // worker's reader thread's).
  if (stopping_ || closed_at_.has_value() || stream_reading_ || ahead_bytes_ >= kReadAheadBytes) {
    return;
  }
  if (!helper_.joinable()) {
    absl::StatusOr<std::thread> helper = StartThread("ffibox-ahead", [this] { HelperLoop(); });
    if (!helper.ok()) return;  // no reading ahead: the stream's own thread reads in turn
    helper_ = *std::move(helper);
  }
  read_ahead_ = true;
}

void ClientStream::HelperLoop() {
  mu_.Lock();
  auto wanted = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || read_ahead_; };
  for (;;) {
    mu_.Await(absl::Condition(&wanted));
    if (stopping_) break;
    helper_reading_ = true;
    mu_.Unlock();
    grpc::ByteBuffer request;
    const bool got = stream_->Read(&request);
    mu_.Lock();
    helper_reading_ = false;
    if (!got) {
      read_ended_ = true;
      read_ahead_ = false;
      ClosedLocked();
      continue;
    }
    ahead_bytes_ += CountedBytes(request);
    ahead_.push_back(std::move(request));
    // The stream's thread reads for itself again as soon as it asks.
    if (stream_waiting_ || ahead_bytes_ >= kReadAheadBytes) read_ahead_ = false;
  }
  mu_.Unlock();
}

}  // namespace ffibox

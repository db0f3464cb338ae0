// ClientStream: a session's gRPC stream, as the session reads and writes it.
//
// The stream's thread reads the client's requests and answers some of them; the worker's
// reader thread answers the others. A write waits while the client takes no responses
// (gRPC's flow control), and a stream thread held by one (its own, or waiting for the other
// thread's) reads nothing, so it would not see the client close its side: a client that sent
// requests, closed its side and stopped reading kept its session, worker and quota slot
// until it disconnected. So a watch looks at a write that waits:
//   - after kReadAheadAfter, a helper thread reads on for the stream's thread (until it holds
//     kReadAheadBytes of requests or more: the last one it reads may pass the bound by up to
//     gRPC's message limit; handed over in their order), and so sees the client close;
//   - once the client has closed its side (or the session ends), a write that still waits
//     kUnreadResponsesGrace later cancels the stream.
// A client that reads its responses, however slowly, is never cancelled for it while it keeps
// its side open.
//
// Threads: Read and Close from the stream's thread only; the ResponseSink methods from any.
#ifndef FFIBOX_SERVER_BROKER_CLIENT_STREAM_H_
#define FFIBOX_SERVER_BROKER_CLIENT_STREAM_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"
#include "proto/ffibox/v1/ffibox.pb.h"
#include "server/broker/deadline_timer.h"
#include "server/broker/session.h"

namespace ffibox {

class ClientStream final : public ResponseSink {
 public:
  using Stream = grpc::ServerReaderWriterInterface<grpc::ByteBuffer, grpc::ByteBuffer>;

  // How long a write waits before a helper reads on for the stream's thread.
  static constexpr absl::Duration kReadAheadAfter = absl::Seconds(1);
  // The helper reads no further once it holds this many bytes of requests (each counted as
  // at least kReadAheadMessageBytes); a client that sends more without taking its responses
  // keeps its session while it keeps its connection.
  static constexpr size_t kReadAheadBytes = size_t{1} << 20;
  static constexpr size_t kReadAheadMessageBytes = 64;
  // How long a write may wait once the client has closed its side or the session ended.
  static constexpr absl::Duration kUnreadResponsesGrace = absl::Seconds(5);

  // `cancel` cancels the stream (its waiting Read and Write return false). `timer` (null:
  // no watch, a write waits as long as gRPC lets it) outlives this. Tests shorten the times.
  ClientStream(Stream* stream, std::function<void()> cancel, DeadlineTimer* timer,
               absl::Duration read_ahead_after = kReadAheadAfter,
               absl::Duration grace = kUnreadResponsesGrace);
  // Stops the watch and waits for the helper: if it still waits for a request when the
  // grace is over (the session ended and the client keeps its side open), cancels the stream.
  ~ClientStream() override;

  ClientStream(const ClientStream&) = delete;
  ClientStream& operator=(const ClientStream&) = delete;

  // The next request; false once the client has closed its side, the stream broke or the
  // watch cancelled it (requests read ahead are dropped then: nobody takes their answers).
  bool Read(grpc::ByteBuffer* request) ABSL_LOCKS_EXCLUDED(mu_);
  // The session ends: what is still being written has kUnreadResponsesGrace from now.
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

  // ResponseSink.
  bool Send(v1::Response response) override ABSL_LOCKS_EXCLUDED(write_mu_, mu_);
  void SendWithNext(v1::Response response) override ABSL_LOCKS_EXCLUDED(write_mu_, mu_);
  void Flush() override ABSL_LOCKS_EXCLUDED(write_mu_, mu_);

 private:
  static grpc::ByteBuffer Encode(v1::Response response);

  // With the buffer hint, gRPC completes the write at once and sends its bytes with the
  // next write that has none (a message of a few bytes: far below its write buffer).
  void WriteHeld(grpc::WriteOptions options) ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  void Write(const grpc::ByteBuffer& encoded, grpc::WriteOptions options)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);

  // The watch's alarm: reads ahead, cancels, or looks again later.
  void Watch() ABSL_LOCKS_EXCLUDED(mu_);
  void ReadAheadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HelperLoop() ABSL_LOCKS_EXCLUDED(mu_);
  void ClosedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Stream* const stream_;
  const std::function<void()> cancel_;
  const absl::Duration read_ahead_after_;
  const absl::Duration grace_;
  std::shared_ptr<DeadlineTimer::Alarm> watch_;  // null without a timer

  // Serialises writes; held while one waits.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  bool broken_ ABSL_GUARDED_BY(write_mu_) = false;
  std::optional<grpc::ByteBuffer> held_ ABSL_GUARDED_BY(write_mu_);  // by SendWithNext

  absl::Mutex mu_;
  std::optional<absl::Time> writing_since_ ABSL_GUARDED_BY(mu_);  // a write waits since then
  bool watch_armed_ ABSL_GUARDED_BY(mu_) = false;
  // When the client closed its side (as read by either thread) or the session ended.
  std::optional<absl::Time> closed_at_ ABSL_GUARDED_BY(mu_);
  bool read_ended_ ABSL_GUARDED_BY(mu_) = false;  // a Read returned false
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  // Requests the helper read, oldest first, and their bytes as counted against the bound.
  std::deque<grpc::ByteBuffer> ahead_ ABSL_GUARDED_BY(mu_);
  size_t ahead_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool stream_reading_ ABSL_GUARDED_BY(mu_) = false;  // the stream's thread is in Read
  bool stream_waiting_ ABSL_GUARDED_BY(mu_) = false;  // ... and waits for the helper
  bool read_ahead_ ABSL_GUARDED_BY(mu_) = false;      // the helper is to read on
  bool helper_reading_ ABSL_GUARDED_BY(mu_) = false;  // the helper is in stream_->Read
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread helper_;  // started by the watch, under mu_; joined by the destructor
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_CLIENT_STREAM_H_

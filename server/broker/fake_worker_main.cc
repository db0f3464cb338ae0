// A stand-in for ffibox-worker in session tests: speaks the channel protocol over the channel
// (core/shm_channel.h) mapped from fd 6, with fd 3 as its hangup socket, and misbehaves on
// request. It answers load_library by the path it is given:
//   "fork-and-hold"   forks a process that keeps the channel open (and lives 5 s), then answers
//   "garbage"         answers with bytes that are no WorkerReply
//   "corrupt-channel" overwrites the channel's positions in the shared memory with garbage,
//                     as a library of the real worker could, then tries to answer
//   "hang"            never answers
//   "invoke"          invokes callback 1 (invocation 77, one int argument), answers the
//                     requests sent inside invocation 77, and answers the load once the
//                     callback_return for 77 arrives
//   "invoke-unknown"  invokes callback 999, which the broker never defined
//   "missing"         answers with LIBRARY_LOAD_FAILED
//   anything else     answers with success
// define_callback is answered with the broker's handle at address 0x1000.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>

#include "core/framing.h"
#include "core/shm_channel.h"
#include "server/protocol/worker_protocol.pb.h"

namespace {

constexpr int kChannelHangupFd = 3;
constexpr int kChannelMemoryFd = 6;
constexpr size_t kMaxRequestBytes = 1 << 20;

ffibox::ShmChannel* channel = nullptr;

bool WriteReply(absl::string_view bytes) {
  return ffibox::WriteFrame(*channel, bytes, absl::InfiniteFuture()).ok();
}

absl::StatusOr<std::string> ReadRequest() {
  return ffibox::ReadFrame(*channel, kMaxRequestBytes, absl::InfiniteFuture());
}

// What a hostile library can do to the channel: its positions (after the 16-byte header, in
// the first page) all become 0xff bytes.
void CorruptChannel() {
  void* shared = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, kChannelMemoryFd, 0);
  if (shared == MAP_FAILED) return;
  memset(static_cast<char*>(shared) + 16, 0xff, 4096 - 16);
}

bool Answer(const ffibox::internal::WorkerRequest& request) {
  ffibox::internal::WorkerReply reply;
  reply.mutable_response()->set_id(request.id());
  if (request.request().has_load_library() &&
      request.request().load_library().path() == "missing") {
    ffibox::v1::Error* error = reply.mutable_response()->mutable_error();
    error->set_code(ffibox::v1::LIBRARY_LOAD_FAILED);
    error->set_message("missing: cannot open shared object file");
  } else if (request.request().has_load_library()) {
    reply.mutable_response()->mutable_library()->set_library(request.handle());
  } else if (request.request().has_define_callback()) {
    reply.mutable_response()->mutable_callback()->set_callback(request.handle());
    reply.mutable_response()->mutable_callback()->mutable_address()->set_address(0x1000);
  } else {
    reply.mutable_response()->mutable_error()->set_code(ffibox::v1::UNIMPLEMENTED);
  }
  return WriteReply(reply.SerializeAsString());
}

// Sends an invoke of `callback` as invocation 77 and serves it until its callback_return.
bool Invoke(uint64_t callback) {
  ffibox::internal::WorkerReply invoke;
  invoke.mutable_invoke()->set_invocation(77);
  invoke.mutable_invoke()->set_callback(callback);
  invoke.mutable_invoke()->add_args()->set_int_value(5);
  if (!WriteReply(invoke.SerializeAsString())) return false;
  for (;;) {
    absl::StatusOr<std::string> frame = ReadRequest();
    if (!frame.ok()) return false;
    ffibox::internal::WorkerRequest request;
    if (!request.ParseFromString(*frame)) return false;
    if (request.request().has_callback_return()) return true;
    if (!Answer(request)) return false;
  }
}

}  // namespace

int main() {
  signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<std::unique_ptr<ffibox::ShmChannel>> attached =
      ffibox::ShmChannel::Attach(kChannelMemoryFd);
  if (!attached.ok()) return 125;
  channel = attached->get();
  channel->WatchPeerHangup(kChannelHangupFd);
  ffibox::internal::WorkerReply started;  // as ffibox-worker says it runs, first
  started.set_started(true);
  if (!WriteReply(started.SerializeAsString())) return 0;
  for (;;) {
    absl::StatusOr<std::string> frame = ReadRequest();
    if (!frame.ok()) return 0;
    ffibox::internal::WorkerRequest request;
    if (!request.ParseFromString(*frame)) return 2;
    if (request.has_begin()) continue;  // the first request; not answered
    const std::string& path = request.request().load_library().path();
    if (path == "hang") {
      for (;;) pause();
    }
    if (path == "garbage") {
      (void)WriteReply("\xff\xff\xff\xff garbage");
      continue;
    }
    if (path == "corrupt-channel") CorruptChannel();
    if (path == "fork-and-hold" && fork() == 0) {
      alarm(5);
      for (;;) pause();
    }
    if ((path == "invoke" && !Invoke(1)) || (path == "invoke-unknown" && !Invoke(999))) return 0;
    if (!Answer(request)) return 0;
  }
}

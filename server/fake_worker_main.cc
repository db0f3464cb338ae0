// A stand-in for ffibox-worker in session tests: speaks the channel protocol on fd 3 and
// misbehaves on request. It answers load_library by the path it is given:
//   "fork-and-hold"  forks a process that keeps the channel open (and lives 5 s), then answers
//   "garbage"        answers with bytes that are no WorkerReply
//   "hang"           never answers
//   anything else    answers with success
#include <signal.h>
#include <unistd.h>

#include <string>

#include "core/framing.h"
#include "server/worker_protocol.pb.h"

int main() {
  constexpr int kChannelFd = 3;
  signal(SIGPIPE, SIG_IGN);
  for (;;) {
    absl::StatusOr<std::string> frame = ffibox::ReadFrame(kChannelFd, 1 << 20);
    if (!frame.ok()) return 0;
    ffibox::internal::WorkerRequest request;
    if (!request.ParseFromString(*frame)) return 2;
    const std::string& path = request.request().load_library().path();
    if (path == "hang") {
      for (;;) pause();
    }
    if (path == "garbage") {
      (void)ffibox::WriteFrame(kChannelFd, "\xff\xff\xff\xff garbage");
      continue;
    }
    if (path == "fork-and-hold" && fork() == 0) {
      alarm(5);
      for (;;) pause();
    }
    ffibox::internal::WorkerReply reply;
    reply.mutable_response()->set_id(request.id());
    if (request.request().has_load_library()) {
      reply.mutable_response()->mutable_library()->set_library(request.handle());
    } else {
      reply.mutable_response()->mutable_error()->set_code(ffibox::v1::UNIMPLEMENTED);
    }
    if (!ffibox::WriteFrame(kChannelFd, reply.SerializeAsString()).ok()) return 0;
  }
}

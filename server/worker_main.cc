// ffibox-worker: the process that loads untrusted libraries and runs their code. Started by
// ffiboxd (fork + exec) with its channel on fd 3; serves requests one at a time until the
// channel closes. Anything here may be corrupted by the library it runs: the broker trusts
// nothing this process sends.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "core/framing.h"
#include "server/crash_report.h"
#include "server/worker_executor.h"
#include "server/worker_protocol.pb.h"

namespace {

constexpr int kChannelFd = 3;
// Requests are bounded by the broker's message limit; this is a backstop.
constexpr size_t kMaxRequestBytes = size_t{1} << 30;

uint64_t GenerationFromArgs(int argc, char** argv) {
  constexpr absl::string_view kFlag = "--generation=";
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    uint64_t generation = 0;
    if (absl::StartsWith(arg, kFlag) && absl::SimpleAtoi(arg.substr(kFlag.size()), &generation)) {
      return generation;
    }
  }
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  ffibox::InstallCrashReporter();
  ffibox::WorkerExecutor executor(GenerationFromArgs(argc, argv));
  for (;;) {
    absl::StatusOr<std::string> frame = ffibox::ReadFrame(kChannelFd, kMaxRequestBytes);
    if (!frame.ok()) return 0;  // the broker closed the channel: the session is over
    ffibox::internal::WorkerRequest request;
    if (!request.ParseFromString(*frame)) return 2;
    ffibox::internal::WorkerReply reply;
    *reply.mutable_response() = executor.Execute(request);
    if (!ffibox::WriteFrame(kChannelFd, reply.SerializeAsString()).ok()) return 0;
  }
}

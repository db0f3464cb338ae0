// ffiboxd: the ffibox broker. Serves the ffibox.v1.Ffibox gRPC service, runs each session's
// native code in its own ffibox-worker process, and never loads a user library itself.
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/default_address.h"
#include "grpcpp/grpcpp.h"
#include "server/listen_address.h"
#include "server/service.h"

ABSL_FLAG(std::string, listen, "",
          "address to listen on: unix:/ABSOLUTE/PATH (default: $FFIBOX_ADDRESS, else an "
          "owner-only socket, see docs/configuration.md)");
ABSL_FLAG(std::string, worker, "", "path of the ffibox-worker binary (default: next to ffiboxd)");
ABSL_FLAG(int64_t, call_timeout_ms, 30000, "default per-call deadline in milliseconds");
ABSL_FLAG(int64_t, max_call_timeout_ms, 24LL * 3600 * 1000,
          "largest deadline a client may ask for, in milliseconds");
ABSL_FLAG(int64_t, max_message_bytes, 16 << 20,
          "largest request a session accepts; larger requests get RESOURCE_EXHAUSTED");

ABSL_FLAG(int64_t, max_callbacks, 4096,
          "most callbacks a session may have defined at once; more get RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_callback_depth, 64,
          "most callback invocations nested in one another (native code calls the client, "
          "which calls native code, ...); deeper requests get RESOURCE_EXHAUSTED");

namespace {

std::string WorkerNextToSelf() {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "ffibox-worker";
  std::string path(self, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/') + 1) + "ffibox-worker";
}

int Fail(const std::string& message) {
  fprintf(stderr, "ffiboxd: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("ffiboxd [--listen=unix:/path] [flags]: the ffibox broker");
  absl::ParseCommandLine(argc, argv);

  // Block the shutdown signals in every thread; one thread waits for them.
  sigset_t shutdown_signals;
  sigemptyset(&shutdown_signals);
  sigaddset(&shutdown_signals, SIGINT);
  sigaddset(&shutdown_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &shutdown_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string address = absl::GetFlag(FLAGS_listen);
  if (address.empty()) address = ffibox::DefaultAddress();
  ffibox::SessionConfig config;
  config.worker_path = absl::GetFlag(FLAGS_worker);
  if (config.worker_path.empty()) config.worker_path = WorkerNextToSelf();
  if (access(config.worker_path.c_str(), X_OK) != 0) {
    return Fail(absl::StrCat("worker binary ", config.worker_path,
                             " is not executable; pass --worker=PATH"));
  }
  int64_t timeout_ms = absl::GetFlag(FLAGS_call_timeout_ms);
  int64_t max_timeout_ms = absl::GetFlag(FLAGS_max_call_timeout_ms);
  int64_t max_message = absl::GetFlag(FLAGS_max_message_bytes);
  if (timeout_ms <= 0 || max_timeout_ms < timeout_ms) {
    return Fail("--call_timeout_ms must be positive and at most --max_call_timeout_ms");
  }
  if (max_message < 1024 || max_message > (512LL << 20)) {
    return Fail("--max_message_bytes must be between 1024 and 536870912");
  }
  int64_t max_callbacks = absl::GetFlag(FLAGS_max_callbacks);
  int64_t max_callback_depth = absl::GetFlag(FLAGS_max_callback_depth);
  if (max_callbacks < 1 || max_callbacks > (1 << 24)) {
    return Fail("--max_callbacks must be between 1 and 16777216");
  }
  if (max_callback_depth < 1 || max_callback_depth > 1024) {
    return Fail("--max_callback_depth must be between 1 and 1024");
  }
  config.max_callbacks = static_cast<size_t>(max_callbacks);
  config.max_callback_depth = static_cast<int>(max_callback_depth);
  config.default_call_timeout = absl::Milliseconds(timeout_ms);
  config.max_call_timeout = absl::Milliseconds(max_timeout_ms);
  config.max_message_bytes = static_cast<size_t>(max_message);

  absl::Status prepared = ffibox::PrepareUnixListenAddress(address);
  if (!prepared.ok()) return Fail(std::string(prepared.message()));

  ffibox::FfiboxService service(config);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  // gRPC's own cap sits well above the session limit, so an oversized request still arrives
  // and gets a typed RESOURCE_EXHAUSTED answer instead of ending the stream.
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<int64_t>(4 * max_message, INT_MAX)));
  builder.SetMaxSendMessageSize(-1);
  mode_t old_umask = umask(077);  // the socket file is created 0600
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  umask(old_umask);
  if (server == nullptr) return Fail(absl::StrCat("cannot listen on ", address));
  if (absl::StartsWith(address, "unix:")) chmod(address.substr(5).c_str(), 0600);

  printf("ffiboxd listening on %s\n", address.c_str());
  printf(
      "try (the CLI is bazel-bin/client/cli/ffibox): ffibox --address=%s call libm.so.6 "
      "'double cos(double)' 0.5\n",
      address.c_str());
  fflush(stdout);

  std::thread waiter([&] {
    int signal_number = 0;
    sigwait(&shutdown_signals, &signal_number);
    fprintf(stderr, "ffiboxd: signal %d, shutting down\n", signal_number);
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  server->Wait();
  waiter.join();
  if (address.rfind("unix:", 0) == 0) unlink(address.substr(5).c_str());
  return 0;
}

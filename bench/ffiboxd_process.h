// A real ffiboxd run as a child process of a benchmark, on a private unix socket.
//
// `FfiboxdProcess::Start` spawns the ffiboxd binary with
// `--listen=unix:<fresh 0700 dir>/ffiboxd.sock` and waits until it prints
// "ffiboxd listening on"; destroying the object stops the server (SIGTERM, then SIGKILL),
// reaps it and removes the directory. Used by bench/call_bench.cc.
#ifndef FFIBOX_BENCH_FFIBOXD_PROCESS_H_
#define FFIBOX_BENCH_FFIBOXD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ffibox {
namespace bench {

class FfiboxdProcess {
 public:
  // Starts `binary` (its ffibox-worker is found next to it) and waits up to
  // `startup_timeout` for its "listening" line. NOT_FOUND if `binary` is not executable,
  // INTERNAL if it exits or prints something else first, DEADLINE_EXCEEDED on timeout.
  // `extra_flags` follow --listen on ffiboxd's command line.
  static absl::StatusOr<std::unique_ptr<FfiboxdProcess>> Start(
      const std::string& binary, const std::vector<std::string>& extra_flags = {},
      absl::Duration startup_timeout = absl::Seconds(10));

  FfiboxdProcess(const FfiboxdProcess&) = delete;
  FfiboxdProcess& operator=(const FfiboxdProcess&) = delete;
  // Stops and reaps the server and removes its directory.
  ~FfiboxdProcess();

  // The gRPC target: `unix:<dir>/ffiboxd.sock`.
  const std::string& address() const { return address_; }

 private:
  FfiboxdProcess(pid_t pid, std::string directory, std::string address)
      : pid_(pid), directory_(std::move(directory)), address_(std::move(address)) {}

  pid_t pid_;
  std::string directory_;
  std::string address_;
};

}  // namespace bench
}  // namespace ffibox

#endif  // FFIBOX_BENCH_FFIBOXD_PROCESS_H_

// ffiboxd's unix sockets, accepted by ffiboxd itself and handed to gRPC one connection at a
// time (grpc::AddInsecureChannelFromFd).
//
// gRPC 1.51's own listener gives a socket up for good the first time accept4 fails with
// EMFILE, so one local peer that exhausts ffiboxd's descriptors would end the service for
// everyone. Here running out of descriptors only sheds connections: a connection accepted
// into the reserve kept for worker starts (server/broker/worker_process.h) is closed at once, and
// when accept itself fails for lack of descriptors a spare one is given up to accept and
// close the waiting peer, so it sees a prompt close instead of a hang. Accepting resumes as
// soon as descriptors are free. The server's peer string for these connections is "fd:N";
// the door treats them as unix-socket connections (server/broker/service.cc).
#ifndef FFIBOX_SERVER_BROKER_UNIX_ACCEPTOR_H_
#define FFIBOX_SERVER_BROKER_UNIX_ACCEPTOR_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {

// Binds and listens on the socket file `path`, made mode 0600 (its directory was prepared by
// PrepareUnixListenAddress); returns the listening descriptor. FAILED_PRECONDITION naming the
// path when that fails.
absl::StatusOr<int> ListenOnUnixSocket(const std::string& path);

class UnixAcceptor {
 public:
  // Binds and listens on the socket file `path` (mode 0600; its directory was prepared by
  // PrepareUnixListenAddress). FAILED_PRECONDITION naming the path when that fails.
  static absl::StatusOr<std::unique_ptr<UnixAcceptor>> Listen(const std::string& path);

  // Stops accepting (Stop) and removes the socket file.
  ~UnixAcceptor();

  UnixAcceptor(const UnixAcceptor&) = delete;
  UnixAcceptor& operator=(const UnixAcceptor&) = delete;

  // Starts the accepting thread; every connection goes to `server`, which must outlive
  // Stop().
  void Start(grpc::Server* server);

  // Stops accepting and joins the thread. Idempotent.
  void Stop();

 private:
  UnixAcceptor(std::string path, int listen_fd, int spare_fd)
      : path_(std::move(path)), listen_fd_(listen_fd), spare_fd_(spare_fd) {}

  void AcceptLoop(grpc::Server* server);

  const std::string path_;
  const int listen_fd_;
  int spare_fd_;  // a descriptor held back to shed a peer when accept runs out
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_UNIX_ACCEPTOR_H_

// ffiboxd's unix sockets and its plaintext health port, accepted by ffiboxd itself and handed
// to gRPC one connection at a time (grpc::AddInsecureChannelFromFd).
//
// gRPC 1.51's own listener gives a socket up for good the first time accept4 fails with
// EMFILE, so one peer that exhausts ffiboxd's descriptors would end the listener for
// everyone. Here running out of descriptors only sheds connections: a connection accepted
// into the descriptors a listener keeps free (at least the reserve for worker starts,
// server/broker/worker_process.h) is closed at once, and when accept itself fails for lack of
// descriptors a spare one is given up to accept and close the waiting peer, so it sees a
// prompt close instead of a hang. Accepting resumes as soon as descriptors are free.
//
// A connection handed over this way skips gRPC's handshake manager and with it the handshake
// deadline (GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS): gRPC would keep a peer that never sends a
// byte for as long as it likes. On a TCP listener the acceptor therefore keeps each new
// connection until the peer has sent the HTTP/2 preface and SETTINGS
// (server/broker/client_preface.h), closes it when that has not come within the handshake
// timeout, and holds at most kMaxWaitingConnections so, the oldest closed beyond that.
//
// The server's peer string for these connections is "fd:N", which the door takes for a
// unix-socket connection (server/broker/service.cc): a TCP acceptor must only ever hand its
// connections to a server without ffibox.v1.Ffibox (the health-only server).
#ifndef FFIBOX_SERVER_BROKER_CONNECTION_ACCEPTOR_H_
#define FFIBOX_SERVER_BROKER_CONNECTION_ACCEPTOR_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {

// Connections that have not yet sent their HTTP/2 preface, held at once per listener.
inline constexpr size_t kMaxWaitingConnections = 128;

class ConnectionAcceptor {
 public:
  // Binds and listens on the socket file `path` (mode 0600; its directory was prepared by
  // PrepareUnixListenAddress); a connection is handed over once it sent the HTTP/2 preface
  // and SETTINGS, closed if it has not within `handshake_timeout` (InfiniteDuration: handed
  // over as soon as it is accepted), and shed in the worker-start reserve.
  // FAILED_PRECONDITION naming the path when that fails.
  static absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ListenUnix(
      const std::string& path, absl::Duration handshake_timeout);

  // Binds and listens on `address` (HOST:PORT, see ListenOnTcp); a connection is handed over
  // once it sent the HTTP/2 preface and SETTINGS, closed if it has not within
  // `handshake_timeout`, and shed when it lands in the last `descriptors_kept_free`
  // descriptors (at least the worker-start reserve). UNAVAILABLE naming the address when
  // nothing binds.
  static absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ListenTcp(
      absl::string_view address, absl::Duration handshake_timeout, size_t descriptors_kept_free);

  // Stops accepting (Stop), closes the connections still waiting and the listening sockets,
  // and removes a unix socket's file.
  ~ConnectionAcceptor();

  ConnectionAcceptor(const ConnectionAcceptor&) = delete;
  ConnectionAcceptor& operator=(const ConnectionAcceptor&) = delete;

  // The TCP port listened on (the one picked, for port 0); 0 for a unix socket.
  int port() const { return port_; }

  // Starts the accepting thread; every connection goes to `server`, which must outlive
  // Stop().
  void Start(grpc::Server* server);

  // Stops accepting and joins the thread. Idempotent.
  void Stop();

 private:
  using Clock = std::chrono::steady_clock;

  // A TCP connection accepted whose HTTP/2 preface has not all arrived.
  struct Waiting {
    int fd;
    uint32_t serial;  // in its epoll events: never 0
    Clock::time_point deadline;
  };

  // Takes `listen_fds` (closed on failure too) and makes the descriptors the loop needs.
  static absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> Create(
      std::string path, std::vector<int> listen_fds, int port, absl::Duration handshake_timeout,
      size_t descriptors_kept_free);
  ConnectionAcceptor(std::string path, std::vector<int> listen_fds, int port,
                     absl::Duration handshake_timeout, size_t descriptors_kept_free);

  void AcceptLoop(grpc::Server* server);
  // Accepts what waits on `listen_fd` until it would block.
  void AcceptFrom(int listen_fd, grpc::Server* server);
  // Reads ahead on waiting connection `fd` (registered with `serial`; an event of a connection
  // closed since is ignored), which epoll reported with `events`: hands it over once its
  // preface is complete, closes it when its peer closed or sent something else.
  void CheckWaiting(int fd, uint32_t serial, uint32_t events, grpc::Server* server);
  // Closes the waiting connections whose deadline has passed; the milliseconds until the
  // next one's (-1: none waits).
  int CloseExpired();
  void CloseWaiting(std::deque<Waiting>::iterator waiting);
  bool IsListenFd(int fd) const;

  const std::string path_;  // the unix socket's file; empty for TCP
  const std::vector<int> listen_fds_;
  const int port_;
  const bool tcp_;
  const std::chrono::milliseconds handshake_timeout_;
  const size_t descriptors_kept_free_;
  int spare_fd_;  // a descriptor held back to shed a peer when accept runs out
  int epoll_fd_;
  int wake_fd_;                  // an eventfd: Stop wakes the loop with it
  std::deque<Waiting> waiting_;  // oldest first; only the accepting thread touches it
  std::vector<char> peeked_;     // the accepting thread's read-ahead buffer
  uint32_t next_serial_ = 1;     // of the next waiting connection; the accepting thread's
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_CONNECTION_ACCEPTOR_H_

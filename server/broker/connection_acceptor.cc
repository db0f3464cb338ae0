#include "server/broker/connection_acceptor.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/thread_name.h"
#include "grpcpp/server_posix.h"
#include "server/broker/client_preface.h"
#include "server/broker/listen_socket.h"
#include "server/broker/worker_process.h"

namespace ffibox {
namespace {

// Whether descriptor `fd` lies in the last `kept_free` descriptors under the limit:
// descriptors are handed out lowest first, so a number that high means that few are left.
bool InKeptFree(int fd, size_t kept_free) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return false;
  return static_cast<rlim_t>(fd) + kept_free >= limit.rlim_cur;
}

bool WouldBlock() { return errno == EAGAIN || errno == EWOULDBLOCK; }

// Connections accepted from one listener before the loop looks at its other events again (a
// level-triggered listener reports the rest): a flood of connects cannot keep waiting
// connections from being read or closed at their deadline.
constexpr int kAcceptsPerWake = 64;

// What an epoll event carries: the descriptor and, for a waiting connection, the serial it
// was registered with (0 for the listeners and the wake descriptor), so that an event of a
// connection closed earlier in the same round is not taken for one of a later connection
// that got its descriptor number.
uint64_t EventData(int fd, uint32_t serial) {
  return uint64_t{serial} << 32 | static_cast<uint32_t>(fd);
}
int EventFd(uint64_t data) { return static_cast<int>(static_cast<uint32_t>(data)); }
uint32_t EventSerial(uint64_t data) { return static_cast<uint32_t>(data >> 32); }

// The handshake deadline as the TLS listeners have it (at least 100 ms).
std::chrono::milliseconds HandshakeTimeout(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return std::chrono::milliseconds(-1);
  return std::chrono::milliseconds(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(timeout), 100, INT_MAX));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ConnectionAcceptor::ListenUnix(
    const std::string& path, absl::Duration handshake_timeout) {
  absl::StatusOr<int> fd = ListenOnUnixSocket(path);
  if (!fd.ok()) return fd.status();
  return Create(path, {*fd}, 0, handshake_timeout, kDescriptorReserve);
}

absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ConnectionAcceptor::ListenTcp(
    absl::string_view address, absl::Duration handshake_timeout, size_t descriptors_kept_free) {
  absl::StatusOr<TcpListenSockets> sockets = ListenOnTcp(address);
  if (!sockets.ok()) return sockets.status();
  return Create("", std::move(sockets->fds), sockets->port, handshake_timeout,
                std::max(descriptors_kept_free, kDescriptorReserve));
}

absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> ConnectionAcceptor::Create(
    std::string path, std::vector<int> listen_fds, int port, absl::Duration handshake_timeout,
    size_t descriptors_kept_free) {
  std::unique_ptr<ConnectionAcceptor> acceptor(new ConnectionAcceptor(
      std::move(path), std::move(listen_fds), port, handshake_timeout, descriptors_kept_free));
  if (acceptor->spare_fd_ < 0 || acceptor->epoll_fd_ < 0 || acceptor->wake_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot set up an accepting thread: ", strerror(errno)));
  }
  for (int fd : acceptor->listen_fds_) {
    // Level-triggered: what is left in the backlog after a shed is seen again.
    struct epoll_event event = {};
    event.events = EPOLLIN;
    event.data.u64 = EventData(fd, 0);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0 ||
        epoll_ctl(acceptor->epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot set up an accepting thread: ", strerror(errno)));
    }
  }
  struct epoll_event wake = {};
  wake.events = EPOLLIN;
  wake.data.u64 = EventData(acceptor->wake_fd_, 0);
  if (epoll_ctl(acceptor->epoll_fd_, EPOLL_CTL_ADD, acceptor->wake_fd_, &wake) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot set up an accepting thread: ", strerror(errno)));
  }
  return acceptor;
}

ConnectionAcceptor::ConnectionAcceptor(std::string path, std::vector<int> listen_fds, int port,
                                       absl::Duration handshake_timeout,
                                       size_t descriptors_kept_free)
    : path_(std::move(path)),
      listen_fds_(std::move(listen_fds)),
      port_(port),
      tcp_(path_.empty()),
      handshake_timeout_(HandshakeTimeout(handshake_timeout)),
      descriptors_kept_free_(descriptors_kept_free),
      spare_fd_(open("/dev/null", O_RDONLY | O_CLOEXEC)),
      epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

ConnectionAcceptor::~ConnectionAcceptor() {
  Stop();
  while (!waiting_.empty()) CloseWaiting(waiting_.begin());
  for (int fd : listen_fds_) close(fd);
  for (int fd : {spare_fd_, epoll_fd_, wake_fd_}) {
    if (fd >= 0) close(fd);
  }
  if (!path_.empty()) unlink(path_.c_str());
}

void ConnectionAcceptor::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] {
    NameThisThread("ffibox-accept");
    AcceptLoop(server);
  });
}

void ConnectionAcceptor::Stop() {
  if (stopping_.exchange(true)) return;
  const uint64_t one = 1;
  if (write(wake_fd_, &one, sizeof(one)) < 0) {
    // The counter cannot overflow with one write; the loop also checks stopping_.
  }
  if (thread_.joinable()) thread_.join();
}

bool ConnectionAcceptor::IsListenFd(int fd) const {
  return std::find(listen_fds_.begin(), listen_fds_.end(), fd) != listen_fds_.end();
}

void ConnectionAcceptor::AcceptLoop(grpc::Server* server) {
  constexpr int kEventsAtOnce = 32;
  struct epoll_event events[kEventsAtOnce];
  while (!stopping_.load()) {
    const int ready = epoll_wait(epoll_fd_, events, kEventsAtOnce, CloseExpired());
    if (ready < 0 && errno != EINTR) absl::SleepFor(absl::Milliseconds(10));
    for (int i = 0; i < ready && !stopping_.load(); ++i) {
      const int fd = EventFd(events[i].data.u64);
      const uint32_t serial = EventSerial(events[i].data.u64);
      if (serial == 0 && fd == wake_fd_) continue;  // Stop: stopping_ is set
      if (serial == 0 && IsListenFd(fd)) {
        AcceptFrom(fd, server);
      } else {
        CheckWaiting(fd, serial, events[i].events, server);
      }
    }
  }
}

void ConnectionAcceptor::AcceptFrom(int listen_fd, grpc::Server* server) {
  for (int accepted = 0; accepted < kAcceptsPerWake && !stopping_.load(); ++accepted) {
    // gRPC polls its endpoints edge-triggered: the descriptor must not block.
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      if (WouldBlock()) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Give up the spare to accept and close the waiting peer, then take it back.
        if (spare_fd_ >= 0) close(spare_fd_);
        const int shed = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (shed >= 0) close(shed);
        spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
      }
      absl::SleepFor(absl::Milliseconds(10));
      return;
    }
    if (InKeptFree(fd, descriptors_kept_free_)) {
      close(fd);  // shed: those descriptors are for worker starts and other listeners
      continue;
    }
    if (handshake_timeout_.count() < 0) {
      grpc::AddInsecureChannelFromFd(server, fd);
      continue;
    }
    if (tcp_) {
      const int on = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));  // as gRPC's listener does
    }
    // Edge-triggered: a preface that is still partial is looked at again only when more of
    // it arrives (adding a descriptor that is readable already reports it at once).
    struct epoll_event event = {};
    if (waiting_.size() >= kMaxWaitingConnections) CloseWaiting(waiting_.begin());
    uint32_t serial = next_serial_++;
    if (serial == 0) serial = next_serial_++;  // 0 marks the listeners (after 2^32 connections)
    event.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
    event.data.u64 = EventData(fd, serial);
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
      close(fd);
      continue;
    }
    waiting_.push_back({fd, serial, Clock::now() + handshake_timeout_});
  }
}

void ConnectionAcceptor::CheckWaiting(int fd, uint32_t serial, uint32_t events,
                                      grpc::Server* server) {
  const auto waiting = std::find_if(
      waiting_.begin(), waiting_.end(),
      [fd, serial](const Waiting& entry) { return entry.fd == fd && entry.serial == serial; });
  if (waiting == waiting_.end()) return;  // closed earlier in this round of events
  peeked_.resize(kMaxClientPrefaceBytes);
  const ssize_t got = recv(fd, peeked_.data(), peeked_.size(), MSG_PEEK);
  if (got < 0 && (WouldBlock() || errno == EINTR)) return;
  const ClientPreface preface =
      got > 0 ? CheckClientPreface(absl::string_view(peeked_.data(), static_cast<size_t>(got)))
              : ClientPreface::kNotHttp2;  // the peer closed, or the connection failed
  // A partial preface from a peer that stopped sending (or whose connection failed) will
  // not be completed.
  const bool ended = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
  if (preface == ClientPreface::kIncomplete && !ended) return;
  if (preface != ClientPreface::kComplete) {
    CloseWaiting(waiting);
    return;
  }
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  waiting_.erase(waiting);
  grpc::AddInsecureChannelFromFd(server, fd);
}

int ConnectionAcceptor::CloseExpired() {
  const Clock::time_point now = Clock::now();
  while (!waiting_.empty() && waiting_.front().deadline <= now) CloseWaiting(waiting_.begin());
  if (waiting_.empty()) return -1;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(waiting_.front().deadline - now).count();
  return static_cast<int>(std::max<int64_t>(left, 1));
}

void ConnectionAcceptor::CloseWaiting(std::deque<Waiting>::iterator waiting) {
  close(waiting->fd);  // its epoll registration goes with it
  waiting_.erase(waiting);
}

}  // namespace ffibox

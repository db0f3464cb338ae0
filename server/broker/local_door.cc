#include "server/broker/local_door.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/descriptor_passing.h"
#include "core/thread_name.h"
#include "server/broker/listen_socket.h"

namespace ffibox {
namespace {

// Waits until `fd` is readable or `until`; false on timeout or error.
bool WaitReadable(int fd, absl::Time until) {
  for (;;) {
    const int64_t left = absl::ToInt64Milliseconds(until - absl::Now());
    if (left <= 0) return false;
    struct pollfd ready = {fd, POLLIN, 0};
    const int polled = poll(&ready, 1, static_cast<int>(left));
    if (polled > 0) return true;
    if (polled < 0 && errno != EINTR) return false;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalChannelDoor>> LocalChannelDoor::Open(
    const std::string& path, absl::Duration token_lifetime) {
  unlink(path.c_str());  // a stale socket of an earlier ffiboxd in its own directory
  absl::StatusOr<int> listen_fd = ListenOnUnixSocket(path);
  if (!listen_fd.ok()) return listen_fd.status();
  const int stop_fd = eventfd(0, EFD_CLOEXEC);
  if (stop_fd < 0) {
    close(*listen_fd);
    unlink(path.c_str());
    return absl::ResourceExhaustedError("eventfd for the same-host door");
  }
  std::unique_ptr<LocalChannelDoor> door(
      new LocalChannelDoor(path, *listen_fd, stop_fd, token_lifetime));
  door->thread_ = std::thread([raw = door.get()] {
    NameThisThread("ffibox-door");
    raw->Serve();
  });
  return door;
}

LocalChannelDoor::~LocalChannelDoor() {
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof(one));
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(stop_fd_);
  unlink(path_.c_str());
  absl::MutexLock lock(&mu_);
  for (auto& [token, waiting] : waiting_) close(waiting.fd);
}

absl::StatusOr<std::string> LocalChannelDoor::Register(const std::string& session, int memfd) {
  std::string token(kLocalDoorTokenBytes, '\0');
  size_t filled = 0;
  while (filled < token.size()) {
    const ssize_t got = getrandom(token.data() + filled, token.size() - filled, 0);
    if (got > 0) filled += static_cast<size_t>(got);
    // getrandom on Linux >= 3.17 never fails for 16 bytes once the pool is ready.
  }
  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  Expire(now, session);
  if (waiting_.size() >= kLocalDoorMaxWaiting) {
    close(memfd);
    return absl::ResourceExhaustedError(absl::StrCat(
        kLocalDoorMaxWaiting, " same-host channels wait to be fetched; try again shortly"));
  }
  waiting_[token] = Waiting{memfd, now + token_lifetime_, session};
  return token;
}

void LocalChannelDoor::Forget(const std::string& session) {
  absl::MutexLock lock(&mu_);
  Expire(absl::Now(), session);
}

void LocalChannelDoor::Expire(absl::Time now, const std::string& session) {
  std::vector<std::string> expired;
  for (const auto& [token, waiting] : waiting_) {
    if (waiting.expires <= now || waiting.session == session) expired.push_back(token);
  }
  for (const std::string& token : expired) {
    close(waiting_[token].fd);
    waiting_.erase(token);
  }
}

void LocalChannelDoor::Serve() {
  // Expired channels are closed within a quarter of a token's lifetime of their expiry,
  // whether or not anyone uses the door, and however often peers connect.
  const absl::Duration sweep_every = std::max(token_lifetime_ / 4, absl::Milliseconds(1));
  absl::Time next_sweep = absl::Now() + sweep_every;
  for (;;) {
    const absl::Time now = absl::Now();
    if (now >= next_sweep) {
      absl::MutexLock lock(&mu_);
      Expire(now, std::string());
      next_sweep = now + sweep_every;
    }
    struct pollfd ready[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    // At least a millisecond: the sweep above leaves next_sweep ahead of now.
    const int wait_ms = static_cast<int>(
        absl::ToInt64Milliseconds(absl::Ceil(next_sweep - now, absl::Milliseconds(1))));
    const int polled = poll(ready, 2, wait_ms);
    if (polled < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (polled == 0) continue;
    if (ready[1].revents != 0) return;
    if ((ready[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors: let the others go first rather than spin.
      if (errno == EMFILE || errno == ENFILE) absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    Answer(fd);
    close(fd);
  }
}

void LocalChannelDoor::Answer(int fd) {
  // The socket file is owner-only; the peer's credentials are checked as well.
  struct ucred peer = {};
  socklen_t peer_size = sizeof(peer);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_size) != 0 ||
      (peer.uid != 0 && peer.uid != geteuid())) {
    return;
  }
  std::string token(kLocalDoorTokenBytes, '\0');
  size_t got = 0;
  const absl::Time until = absl::Now() + kLocalDoorReadTimeout;
  while (got < token.size()) {
    if (!WaitReadable(fd, until)) return;
    const ssize_t read = recv(fd, token.data() + got, token.size() - got, MSG_DONTWAIT);
    if (read == 0) return;
    if (read < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    got += static_cast<size_t>(read);
  }
  int memfd = -1;
  {
    absl::MutexLock lock(&mu_);
    Expire(absl::Now(), std::string());
    auto waiting = waiting_.find(token);
    if (waiting == waiting_.end()) return;
    memfd = waiting->second.fd;
    waiting_.erase(waiting);
  }
  (void)SendDescriptor(fd, memfd, 0);
  close(memfd);
}

}  // namespace ffibox

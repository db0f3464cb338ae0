#include "server/broker/local_door.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/descriptor_passing.h"
#include "core/thread_name.h"
#include "server/broker/listen_socket.h"

namespace ffibox {

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
  absl::StatusOr<std::thread> thread =
      StartThread("ffibox-door", [raw = door.get()] { raw->Serve(); });
  if (!thread.ok()) return thread.status();  // the door closes its descriptors as it goes
  door->thread_ = *std::move(thread);
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
  // Connections are served together, each as its bytes come: peers that send nothing delay
  // no one (each is closed at its own deadline, or as the oldest when
  // kLocalDoorMaxPending wait).
  std::deque<Pending> pending;
  std::vector<struct pollfd> ready;
  for (;;) {
    absl::Time now = absl::Now();
    if (now >= next_sweep) {
      absl::MutexLock lock(&mu_);
      Expire(now, std::string());
      next_sweep = now + sweep_every;
    }
    absl::Time wake = next_sweep;
    ready.assign({{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}});
    for (const Pending& peer : pending) {
      ready.push_back({peer.fd, POLLIN, 0});
      wake = std::min(wake, peer.until);
    }
    // At least a millisecond: the sweep above leaves next_sweep ahead of now.
    const int wait_ms = static_cast<int>(std::max<int64_t>(
        1, absl::ToInt64Milliseconds(absl::Ceil(wake - now, absl::Milliseconds(1)))));
    const int polled = poll(ready.data(), ready.size(), wait_ms);
    if (polled < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (ready[1].revents != 0) break;
    now = absl::Now();
    // The connections already waiting first (indices in `ready` follow `pending`).
    std::deque<Pending> still;
    for (size_t i = 0; i < pending.size(); ++i) {
      Pending& peer = pending[i];
      if (ready[i + 2].revents != 0 && Read(peer)) {
        if (peer.token.size() == kLocalDoorTokenBytes) Hand(peer.fd, peer.token);
        close(peer.fd);
      } else if (now >= peer.until) {
        close(peer.fd);
      } else {
        still.push_back(std::move(peer));
      }
    }
    pending = std::move(still);
    if ((ready[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      // Out of descriptors: let the others go first rather than spin.
      if (errno == EMFILE || errno == ENFILE) absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    if (!Admitted(fd)) {
      close(fd);
      continue;
    }
    if (pending.size() >= kLocalDoorMaxPending) {
      close(pending.front().fd);
      pending.pop_front();
    }
    pending.push_back(Pending{fd, now + kLocalDoorReadTimeout, std::string()});
  }
  for (const Pending& peer : pending) close(peer.fd);
}

bool LocalChannelDoor::Admitted(int fd) {
  // The socket file is owner-only; the peer's credentials are checked as well.
  struct ucred peer = {};
  socklen_t peer_size = sizeof(peer);
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_size) == 0 &&
         (peer.uid == 0 || peer.uid == geteuid());
}

bool LocalChannelDoor::Read(Pending& peer) {
  char bytes[kLocalDoorTokenBytes];
  const ssize_t read = recv(peer.fd, bytes, kLocalDoorTokenBytes - peer.token.size(), MSG_DONTWAIT);
  if (read < 0) return errno != EAGAIN && errno != EINTR;
  if (read == 0) return true;  // gone before the whole token: done, nothing handed
  peer.token.append(bytes, static_cast<size_t>(read));
  return peer.token.size() == kLocalDoorTokenBytes;
}

void LocalChannelDoor::Hand(int fd, const std::string& token) {
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

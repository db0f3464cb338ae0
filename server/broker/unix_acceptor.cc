#include "server/broker/unix_acceptor.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/thread_name.h"
#include "grpcpp/server_posix.h"
#include "server/broker/worker_process.h"

namespace ffibox {
namespace {

// Whether descriptor `fd` lies in the reserve ffiboxd keeps for worker starts: descriptors
// are handed out lowest first, so a number that high means that few are left.
bool InReserve(int fd) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return false;
  return static_cast<rlim_t>(fd) + kDescriptorReserve >= limit.rlim_cur;
}

}  // namespace

absl::StatusOr<int> ListenOnUnixSocket(const std::string& path) {
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path too long: ", path));
  }
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::FailedPreconditionError(absl::StrCat("socket: ", strerror(errno)));
  // No umask change here (it is process-wide, and the pool's launcher may be cloning a
  // worker right now): the directory is owner-only, and the file is made 0600 at once.
  int bound = bind(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address));
  int bind_errno = errno;
  if (bound == 0) chmod(path.c_str(), 0600);
  if (bound != 0 || listen(fd, SOMAXCONN) != 0) {
    int error = bound != 0 ? bind_errno : errno;
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on ", path, ": ", strerror(error)));
  }
  return fd;
}

absl::StatusOr<std::unique_ptr<UnixAcceptor>> UnixAcceptor::Listen(const std::string& path) {
  absl::StatusOr<int> fd = ListenOnUnixSocket(path);
  if (!fd.ok()) return fd.status();
  int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  return std::unique_ptr<UnixAcceptor>(new UnixAcceptor(path, *fd, spare));
}

UnixAcceptor::~UnixAcceptor() {
  Stop();
  close(listen_fd_);
  if (spare_fd_ >= 0) close(spare_fd_);
  unlink(path_.c_str());
}

void UnixAcceptor::Start(grpc::Server* server) {
  thread_ = std::thread([this, server] {
    NameThisThread("ffibox-accept");
    AcceptLoop(server);
  });
}

void UnixAcceptor::Stop() {
  if (stopping_.exchange(true)) return;
  shutdown(listen_fd_, SHUT_RDWR);  // wakes a blocked accept4
  if (thread_.joinable()) thread_.join();
}

void UnixAcceptor::AcceptLoop(grpc::Server* server) {
  while (!stopping_.load()) {
    // gRPC polls its endpoints edge-triggered: the descriptor must not block.
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      if (stopping_.load() || InReserve(fd)) {
        close(fd);  // shed: the reserve is for worker starts
        continue;
      }
      grpc::AddInsecureChannelFromFd(server, fd);
      continue;
    }
    if (stopping_.load()) break;
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      // Give up the spare to accept and close the waiting peer, then take it back.
      if (spare_fd_ >= 0) close(spare_fd_);
      int shed = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (shed >= 0) close(shed);
      spare_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
}

}  // namespace ffibox

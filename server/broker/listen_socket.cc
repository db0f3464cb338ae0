#include "server/broker/listen_socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <optional>

#include "absl/strings/str_cat.h"
#include "core/host_port.h"

namespace ffibox {
namespace {

// A socket of `family` listening on `address`, or -1 with errno set. `dual_stack`: an IPv6
// socket that takes IPv4 connections too.
int ListenOn(const struct sockaddr* address, socklen_t length, bool dual_stack) {
  int fd = socket(address->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  const int on = 1;
  const int v6only = dual_stack ? 0 : 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
      (address->sa_family == AF_INET6 &&
       setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) != 0) ||
      bind(fd, address, length) != 0 || listen(fd, SOMAXCONN) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

// The port `fd` is bound to, or 0.
int BoundPort(int fd) {
  struct sockaddr_storage bound = {};
  socklen_t length = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&bound), &length) != 0) return 0;
  if (bound.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const struct sockaddr_in6*>(&bound)->sin6_port);
  }
  return ntohs(reinterpret_cast<const struct sockaddr_in*>(&bound)->sin_port);
}

void SetPort(struct sockaddr* address, int port) {
  if (address->sa_family == AF_INET6) {
    reinterpret_cast<struct sockaddr_in6*>(address)->sin6_port = htons(port);
  } else {
    reinterpret_cast<struct sockaddr_in*>(address)->sin_port = htons(port);
  }
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

absl::StatusOr<TcpListenSockets> ListenOnTcp(absl::string_view address) {
  const auto cannot = [address](absl::string_view why) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", why));
  };
  const std::optional<HostPort> split = SplitHostPort(address);
  if (!split.has_value()) return cannot("not a HOST:PORT");
  std::string host(split->host);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  TcpListenSockets sockets;
  sockets.port = split->port;
  if (host == "0.0.0.0" || host == "::") {
    // Every address of the host, IPv4 and IPv6 on one socket where the host has IPv6.
    struct sockaddr_in6 any6 = {};
    any6.sin6_family = AF_INET6;
    any6.sin6_addr = in6addr_any;
    any6.sin6_port = htons(sockets.port);
    int fd = ListenOn(reinterpret_cast<struct sockaddr*>(&any6), sizeof(any6), true);
    if (fd < 0 && (errno == EAFNOSUPPORT || errno == EADDRNOTAVAIL)) {
      struct sockaddr_in any4 = {};
      any4.sin_family = AF_INET;
      any4.sin_addr.s_addr = htonl(INADDR_ANY);
      any4.sin_port = htons(sockets.port);
      fd = ListenOn(reinterpret_cast<struct sockaddr*>(&any4), sizeof(any4), false);
    }
    if (fd < 0) return cannot(strerror(errno));
    sockets.fds.push_back(fd);
    sockets.port = BoundPort(fd);
    return sockets;
  }
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  struct addrinfo* resolved = nullptr;
  const std::string port = absl::StrCat(split->port);
  const int lookup = getaddrinfo(host.c_str(), port.c_str(), &hints, &resolved);
  if (lookup != 0) return cannot(gai_strerror(lookup));
  std::string last_error = "no address";
  for (const struct addrinfo* entry = resolved; entry != nullptr; entry = entry->ai_next) {
    if (entry->ai_family != AF_INET && entry->ai_family != AF_INET6) continue;
    // With port 0, the addresses after the first take the port the first was given.
    struct sockaddr_storage bind_address = {};
    memcpy(&bind_address, entry->ai_addr, entry->ai_addrlen);
    SetPort(reinterpret_cast<struct sockaddr*>(&bind_address), sockets.port);
    const int fd =
        ListenOn(reinterpret_cast<struct sockaddr*>(&bind_address), entry->ai_addrlen, false);
    if (fd < 0) {
      last_error = strerror(errno);
      continue;
    }
    sockets.fds.push_back(fd);
    sockets.port = BoundPort(fd);
  }
  freeaddrinfo(resolved);
  if (sockets.fds.empty()) return cannot(last_error);
  return sockets;
}

}  // namespace ffibox

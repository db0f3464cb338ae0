#include "client/cpp/unix_server_check.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

namespace ffibox {
namespace {

constexpr absl::string_view kUnixScheme = "unix:";
constexpr absl::string_view kUnixAbstractScheme = "unix-abstract:";
// How often a socket that is not there yet is looked for again.
constexpr absl::Duration kRetryInterval = absl::Milliseconds(20);

// The socket a unix address names, as gRPC reads it.
struct UnixSocketAddress {
  std::string path;  // a file path, or the name of an abstract socket
  bool abstract = false;
};

// Who may serve this process: "you (uid N) or root", or "you (root)" for root.
std::string YouOrRoot(uid_t me) {
  if (me == 0) return "you (root)";
  return absl::StrCat("you (uid ", me, ") or root");
}

bool IsYouOrRoot(uid_t owner, uid_t me) { return owner == me || owner == 0; }

absl::Status Refuse(const std::string& address, absl::string_view why) {
  return absl::PermissionDeniedError(absl::StrCat("refusing ", address, ": ", why));
}

absl::Status NotListening(const std::string& address, absl::string_view why) {
  return absl::UnavailableError(absl::StrCat("no ffiboxd at ", address, ": ", why));
}

std::string ModeText(mode_t mode) { return absl::StrFormat("%04o", mode & 07777); }

// The directory holding the socket file `path` ("." for a relative name without one).
std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The directory may hold only sockets this user or root put there.
absl::Status CheckDirectory(const std::string& address, const std::string& directory, uid_t me) {
  struct stat st;
  if (lstat(directory.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return NotListening(address, absl::StrCat("directory ", directory, " does not exist"));
    }
    return Refuse(address,
                  absl::StrCat("cannot inspect directory ", directory, ": ", strerror(errno)));
  }
  if (S_ISLNK(st.st_mode)) {
    return Refuse(address, absl::StrCat("directory ", directory,
                                        " is a symbolic link; name the real directory"));
  }
  if (!S_ISDIR(st.st_mode)) {
    return Refuse(address, absl::StrCat(directory, " is not a directory"));
  }
  if (!IsYouOrRoot(st.st_uid, me)) {
    return Refuse(address, absl::StrCat("directory ", directory, " is owned by uid ", st.st_uid,
                                        ", not by ", YouOrRoot(me)));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return Refuse(address, absl::StrCat("directory ", directory,
                                        " is writable by other users (mode ", ModeText(st.st_mode),
                                        "), so anyone could have put the socket there"));
  }
  return absl::OkStatus();
}

absl::Status CheckSocketFile(const std::string& address, const std::string& path, uid_t me) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return NotListening(address, absl::StrCat(path, " does not exist"));
    return Refuse(address, absl::StrCat("cannot inspect ", path, ": ", strerror(errno)));
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Refuse(address, absl::StrCat(path, " is not a socket"));
  }
  if (!IsYouOrRoot(st.st_uid, me)) {
    return Refuse(address, absl::StrCat("socket ", path, " is owned by uid ", st.st_uid,
                                        ", not by ", YouOrRoot(me)));
  }
  return absl::OkStatus();
}

// Connects without sending anything and checks who called listen() on the socket: the
// kernel records that process's credentials when it listens and hands them to connecting
// peers (SO_PEERCRED), whether or not it ever accepts.
absl::Status CheckListener(const std::string& address, const UnixSocketAddress& socket_address,
                           uid_t me, absl::Duration timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  socklen_t length;
  if (socket_address.abstract) {
    if (socket_address.path.size() + 1 > sizeof(addr.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("abstract socket name too long: ", address));
    }
    memcpy(addr.sun_path + 1, socket_address.path.data(), socket_address.path.size());
    length = offsetof(sockaddr_un, sun_path) + 1 + socket_address.path.size();
  } else {
    if (socket_address.path.size() + 1 > sizeof(addr.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("unix socket path too long: ", address));
    }
    memcpy(addr.sun_path, socket_address.path.data(), socket_address.path.size());
    length = sizeof(addr);
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot make a unix socket: ", strerror(errno)));
  }
  // A unix-socket connect waits for room in the listener's backlog up to SO_SNDTIMEO.
  const absl::Duration wait = std::max(timeout, absl::Milliseconds(1));
  timeval send_timeout = absl::ToTimeval(wait);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), length) != 0) {
    const int error = errno;
    close(fd);
    return NotListening(address, absl::StrCat("cannot connect: ", strerror(error)));
  }
  ucred peer{};
  socklen_t peer_size = sizeof(peer);
  const bool have_peer = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_size) == 0;
  const int error = errno;
  close(fd);
  const std::string where = socket_address.abstract
                                ? absl::StrCat("abstract socket @", socket_address.path)
                                : socket_address.path;
  if (!have_peer) {
    return Refuse(address,
                  absl::StrCat("cannot tell which user listens on ", where, ": ", strerror(error)));
  }
  if (!IsYouOrRoot(peer.uid, me)) {
    return Refuse(address, absl::StrCat("the process listening on ", where, " (pid ", peer.pid,
                                        ") runs as uid ", peer.uid, ", not as ", YouOrRoot(me)));
  }
  return absl::OkStatus();
}

absl::Status CheckOnce(const std::string& address, const UnixSocketAddress& socket_address,
                       uid_t me, absl::Duration timeout) {
  if (!socket_address.abstract) {
    if (absl::Status directory = CheckDirectory(address, DirectoryOf(socket_address.path), me);
        !directory.ok()) {
      return directory;
    }
    if (absl::Status file = CheckSocketFile(address, socket_address.path, me); !file.ok()) {
      return file;
    }
  }
  return CheckListener(address, socket_address, me, timeout);
}

}  // namespace

absl::Status CheckUnixServer(const std::string& address, absl::Duration timeout) {
  UnixSocketAddress socket_address;
  if (absl::StartsWith(address, kUnixAbstractScheme)) {
    socket_address.path = address.substr(kUnixAbstractScheme.size());
    socket_address.abstract = true;
  } else if (absl::StartsWith(address, kUnixScheme)) {
    socket_address.path = address.substr(kUnixScheme.size());
    // gRPC reads unix:///PATH as a URI with an empty authority.
    if (absl::StartsWith(socket_address.path, "///")) {
      socket_address.path = socket_address.path.substr(2);
    } else if (absl::StartsWith(socket_address.path, "//")) {
      return absl::InvalidArgumentError(
          absl::StrCat("unix address with a host: ", address, "; write unix:/PATH"));
    }
  } else {
    return absl::OkStatus();
  }
  // gRPC percent-decodes the path and cuts it at '?' and '#'; the check must look at the
  // same file gRPC will connect to, so such addresses are not accepted.
  if (socket_address.path.empty() ||
      socket_address.path.find_first_of("%?#") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported unix socket address (empty, or with '%', '?' or '#'): ", address));
  }

  const uid_t me = geteuid();
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    absl::Status status = CheckOnce(address, socket_address, me, deadline - absl::Now());
    if (!absl::IsUnavailable(status) || absl::Now() + kRetryInterval >= deadline) {
      return status;
    }
    absl::SleepFor(kRetryInterval);
  }
}

}  // namespace ffibox

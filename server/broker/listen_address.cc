#include "server/broker/listen_address.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/host_port.h"

namespace ffibox {
namespace {

bool SomeoneListens(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return connected;
}

}  // namespace

absl::Status PrepareUnixListenAddress(const std::string& address) {
  if (!absl::StartsWith(address, "unix:")) return absl::OkStatus();
  std::string path = address.substr(5);
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket address must be absolute: ", address));
  }
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("unix socket path too long: ", path));
  }
  std::string dir = path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create socket directory ", dir, ": ", strerror(errno)));
  }
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(dir, " is not a directory"));
  }
  if (st.st_uid != geteuid()) {
    return absl::FailedPreconditionError(
        absl::StrCat("socket directory ", dir, " belongs to uid ", st.st_uid,
                     ", not to this user (uid ", geteuid(), "); choose another --listen path"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("socket directory ", dir, " is accessible to other users (mode ",
                     absl::StrFormat("%04o", st.st_mode & 07777),
                     "); run chmod 700 on it or choose another --listen path"));
  }
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket"));
    }
    if (SomeoneListens(path)) {
      return absl::FailedPreconditionError(
          absl::StrCat("another server is already listening on ", path));
    }
    unlink(path.c_str());
  }
  return absl::OkStatus();
}

absl::Status ValidateTcpListenAddress(absl::string_view address) {
  const auto invalid = [address] {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address,
                     "\" is not a TCP HOST:PORT (\"127.0.0.1:7000\", \"[::1]:7000\", "
                     "\"ffibox.example:7000\"; port 0 to 65535)"));
  };
  const std::optional<HostPort> split = SplitHostPort(address);
  if (!split.has_value()) return invalid();
  const absl::string_view host = split->host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    const absl::string_view inner = host.substr(1, host.size() - 2);
    const bool ipv6 = std::all_of(inner.begin(), inner.end(), [](char c) {
      return absl::ascii_isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
    });
    return ipv6 ? absl::OkStatus() : invalid();
  }
  const bool name = std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
  });
  return name ? absl::OkStatus() : invalid();
}

}  // namespace ffibox

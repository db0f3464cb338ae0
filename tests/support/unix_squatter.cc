// A unix-socket listener that stands where a client expects ffiboxd, for tests of whom the
// clients agree to talk to. It never answers; it only reports what reaches it.
//
//   unix_squatter --socket=PATH [--uid=N] [--bind_first]
//
// A PATH that starts with '@' names an abstract socket (the rest is its name).
// With --uid it switches to uid and gid N (it must start as root): before binding, so the
// socket file is N's, or with --bind_first after binding and before listening, so the file is
// the starting user's but the listening process (what SO_PEERCRED reports) is N. It prints
// "listening" once ready, then for each connection (one at a time) "accepted", "received N"
// for each read of N bytes and "closed" when the peer closes it, flushing every line, until
// it is killed.
#include <errno.h>
#include <grp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"

ABSL_FLAG(std::string, socket, "", "path of the socket to create and listen on");
ABSL_FLAG(int, uid, -1, "uid (and gid) to run as; -1: stay as started");
ABSL_FLAG(bool, bind_first, false, "bind the socket before switching to --uid");

namespace {

bool SwitchTo(int uid) {
  if (uid < 0) return true;
  if (setgroups(0, nullptr) != 0 || setresgid(uid, uid, uid) != 0 ||
      setresuid(uid, uid, uid) != 0) {
    std::fprintf(stderr, "unix_squatter: cannot switch to uid %d: %s\n", uid, strerror(errno));
    return false;
  }
  return true;
}

int Run() {
  const std::string path = absl::GetFlag(FLAGS_socket);
  const int uid = absl::GetFlag(FLAGS_uid);
  const bool bind_first = absl::GetFlag(FLAGS_bind_first);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    std::fprintf(stderr, "unix_squatter: --socket must be a path of at most %zu bytes\n",
                 sizeof(address.sun_path) - 1);
    return 2;
  }
  memcpy(address.sun_path, path.data(), path.size());
  socklen_t length = sizeof(address);
  if (path[0] == '@') {
    address.sun_path[0] = '\0';
    length = offsetof(sockaddr_un, sun_path) + path.size();
  }
  if (!bind_first && !SwitchTo(uid)) return 1;
  const int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0 || bind(listener, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    std::fprintf(stderr, "unix_squatter: cannot bind %s: %s\n", path.c_str(), strerror(errno));
    return 1;
  }
  if (bind_first && !SwitchTo(uid)) return 1;
  if (listen(listener, 16) != 0) {
    std::fprintf(stderr, "unix_squatter: cannot listen: %s\n", strerror(errno));
    return 1;
  }
  std::printf("listening\n");
  std::fflush(stdout);
  for (;;) {
    const int connection = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    std::printf("accepted\n");
    std::fflush(stdout);
    char buffer[4096];
    ssize_t n;
    while ((n = read(connection, buffer, sizeof(buffer))) > 0) {
      std::printf("received %zd\n", n);
      std::fflush(stdout);
    }
    close(connection);
    std::printf("closed\n");
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return Run();
}

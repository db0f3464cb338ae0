#include "client/cpp/default_address.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace ffibox {
namespace {

TEST(DefaultAddressTest, EnvironmentOverrides) {
  setenv("FFIBOX_ADDRESS", "localhost:7777", 1);
  EXPECT_EQ(DefaultAddress(), "localhost:7777");
  unsetenv("FFIBOX_ADDRESS");
}

// DefaultAddress() as user `uid` with XDG_RUNTIME_DIR `runtime` (null: unset): in this
// process when it is that user, else in a child that becomes it (which needs root).
std::string DefaultAddressAs(uid_t uid, const char* runtime) {
  if (runtime != nullptr) {
    setenv("XDG_RUNTIME_DIR", runtime, 1);
  } else {
    unsetenv("XDG_RUNTIME_DIR");
  }
  if (geteuid() == uid) return DefaultAddress();
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    if (setresuid(uid, uid, uid) != 0) _exit(1);
    const std::string address = DefaultAddress();
    _exit(write(fds[1], address.data(), address.size()) == static_cast<ssize_t>(address.size())
              ? 0
              : 1);
  }
  close(fds[1]);
  std::string address;
  char buffer[256];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof(buffer))) > 0;) address.append(buffer, n);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return "the child failed";
  return address;
}

// Root gets the system socket; any other user one of its own, under its XDG_RUNTIME_DIR
// when that is an absolute path, else under /tmp/ffibox-UID. Run as root (as scripts/test.sh
// does), both are checked: the user's as nobody.
TEST(DefaultAddressTest, RootGetsTheSystemSocketAndUsersAnOwnerOnlyOne) {
  unsetenv("FFIBOX_ADDRESS");
  const uid_t user = geteuid() == 0 ? 65534 : geteuid();
  const std::string own = "unix:/tmp/ffibox-" + std::to_string(user) + "/ffiboxd.sock";
  EXPECT_EQ(DefaultAddressAs(user, "/run/user/4242"), "unix:/run/user/4242/ffibox/ffiboxd.sock");
  EXPECT_EQ(DefaultAddressAs(user, "relative/dir"), own);
  EXPECT_EQ(DefaultAddressAs(user, nullptr), own);
  if (geteuid() == 0) {
    EXPECT_EQ(DefaultAddressAs(0, "/run/user/4242"), "unix:/run/ffibox/ffiboxd.sock");
  }
  unsetenv("XDG_RUNTIME_DIR");
}

}  // namespace
}  // namespace ffibox

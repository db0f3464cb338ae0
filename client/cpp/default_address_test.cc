#include "client/cpp/default_address.h"

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

TEST(DefaultAddressTest, UsersGetAnOwnerOnlyUnixSocket) {
  unsetenv("FFIBOX_ADDRESS");
  setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
  const std::string address = DefaultAddress();
  if (geteuid() == 0) {
    EXPECT_EQ(address, "unix:/run/ffibox/ffiboxd.sock");
  } else {
    EXPECT_EQ(address, "unix:/run/user/4242/ffibox/ffiboxd.sock");
    unsetenv("XDG_RUNTIME_DIR");
    EXPECT_EQ(DefaultAddress(), "unix:/tmp/ffibox-" + std::to_string(geteuid()) + "/ffiboxd.sock");
  }
}

}  // namespace
}  // namespace ffibox

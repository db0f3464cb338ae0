#include "server/broker/listen_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

// Whether a TCP connection to `host` (an IPv4 or IPv6 literal) on `port` is accepted.
bool Connects(int family, const char* host, int port) {
  struct sockaddr_storage address = {};
  socklen_t length;
  if (family == AF_INET6) {
    auto* v6 = reinterpret_cast<struct sockaddr_in6*>(&address);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    inet_pton(AF_INET6, host, &v6->sin6_addr);
    length = sizeof(*v6);
  } else {
    auto* v4 = reinterpret_cast<struct sockaddr_in*>(&address);
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    inet_pton(AF_INET, host, &v4->sin_addr);
    length = sizeof(*v4);
  }
  const int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const bool connected =
      fd >= 0 && connect(fd, reinterpret_cast<struct sockaddr*>(&address), length) == 0;
  if (fd >= 0) close(fd);
  return connected;
}

bool HostHasIpv6Loopback() {
  const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_in6 loopback = {};
  loopback.sin6_family = AF_INET6;
  loopback.sin6_addr = in6addr_loopback;
  const bool bound = bind(fd, reinterpret_cast<struct sockaddr*>(&loopback), sizeof(loopback)) == 0;
  close(fd);
  return bound;
}

void CloseAll(const TcpListenSockets& sockets) {
  for (int fd : sockets.fds) close(fd);
}

TEST(ListenOnTcpTest, PortZeroPicksAFreePortAndReportsIt) {
  ASSERT_OK_AND_ASSIGN(TcpListenSockets sockets, ListenOnTcp("127.0.0.1:0"));
  EXPECT_EQ(sockets.fds.size(), 1u);
  EXPECT_NE(sockets.port, 0);
  EXPECT_TRUE(Connects(AF_INET, "127.0.0.1", sockets.port));
  CloseAll(sockets);
}

TEST(ListenOnTcpTest, LocalhostIsEveryAddressItNamesOnOnePort) {
  ASSERT_OK_AND_ASSIGN(TcpListenSockets sockets, ListenOnTcp("localhost:0"));
  EXPECT_GE(sockets.fds.size(), 1u);
  EXPECT_TRUE(Connects(AF_INET, "127.0.0.1", sockets.port));
  if (HostHasIpv6Loopback() && sockets.fds.size() > 1) {
    EXPECT_TRUE(Connects(AF_INET6, "::1", sockets.port));
  }
  CloseAll(sockets);
}

TEST(ListenOnTcpTest, AnIpv6LiteralInBracketsIsBound) {
  if (!HostHasIpv6Loopback()) GTEST_SKIP() << "no IPv6 loopback on this host";
  ASSERT_OK_AND_ASSIGN(TcpListenSockets sockets, ListenOnTcp("[::1]:0"));
  EXPECT_TRUE(Connects(AF_INET6, "::1", sockets.port));
  CloseAll(sockets);
}

TEST(ListenOnTcpTest, TheWildcardTakesIpv4AndIpv6) {
  ASSERT_OK_AND_ASSIGN(TcpListenSockets sockets, ListenOnTcp("0.0.0.0:0"));
  EXPECT_EQ(sockets.fds.size(), 1u);
  EXPECT_TRUE(Connects(AF_INET, "127.0.0.1", sockets.port));
  if (HostHasIpv6Loopback()) {
    EXPECT_TRUE(Connects(AF_INET6, "::1", sockets.port));
  }
  CloseAll(sockets);
}

TEST(ListenOnTcpTest, APortSomeoneListensOnIsRefused) {
  ASSERT_OK_AND_ASSIGN(TcpListenSockets first, ListenOnTcp("127.0.0.1:0"));
  const std::string again = absl::StrCat("127.0.0.1:", first.port);
  const absl::StatusOr<TcpListenSockets> second = ListenOnTcp(again);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(second.status().message().find(again), std::string::npos) << second.status();
  CloseAll(first);
  // SO_REUSEADDR: the port is free again the moment its listener closed.
  ASSERT_OK_AND_ASSIGN(TcpListenSockets third, ListenOnTcp(again));
  CloseAll(third);
}

TEST(ListenOnTcpTest, ANameThatDoesNotResolveIsUnavailable) {
  EXPECT_EQ(ListenOnTcp("no-such-host.invalid:0").status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ffibox

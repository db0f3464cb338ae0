// Client::Connect's refusals that happen before anything is sent.
#include "client/cpp/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

constexpr char kToken[] = "client-test-token-0123456789abcdef";

// A loopback TCP listener that only counts who connects to it.
class CountingListener {
 public:
  CountingListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&address), length) == 0 && listen(fd_, 8) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port_ = ntohs(address.sin_port);
    }
  }
  ~CountingListener() { close(fd_); }

  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int port() const { return port_; }

  // Whether a connection is waiting to be accepted within `timeout_ms`.
  bool SomeoneConnected(int timeout_ms) const {
    pollfd waiting{fd_, POLLIN, 0};
    return poll(&waiting, 1, timeout_ms) == 1;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

TEST(ClientConnect, TokenToTcpTargetWithoutTlsIsRefusedBeforeAnythingIsSent) {
  CountingListener listener;
  ASSERT_NE(listener.port(), 0);
  ConnectOptions options;
  options.bearer_token = kToken;
  options.connect_timeout = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(listener.address(), options);
  EXPECT_THAT(client.status(), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(client.status().message(), testing::HasSubstr("only over TLS"));
  EXPECT_THAT(client.status().message(), testing::Not(testing::HasSubstr(kToken)));
  EXPECT_FALSE(listener.SomeoneConnected(500));
}

TEST(ClientConnect, TokenWithTlsGetsAsFarAsTheHandshake) {
  CountingListener listener;
  ASSERT_NE(listener.port(), 0);
  ConnectOptions options;
  options.bearer_token = kToken;
  options.tls = true;
  options.connect_timeout = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(listener.address(), options);
  // The listener never answers the handshake.
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable) << client.status();
  EXPECT_TRUE(listener.SomeoneConnected(0));
}

TEST(ClientConnect, ANoServerIsUnavailableNotABug) {
  ConnectOptions options;
  options.connect_timeout = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect("unix:/nonexistent/ffiboxd.sock", options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(ErrorOf(client.status()).code(), v1::UNAVAILABLE) << client.status();
  EXPECT_EQ(ErrorOf(absl::OkStatus()).code(), v1::ERROR_CODE_UNSPECIFIED);
  EXPECT_EQ(ErrorOf(absl::InternalError("x")).code(), v1::INTERNAL);
}

TEST(ClientConnect, TlsToUnixSocketIsRefused) {
  // ffiboxd's unix sockets are plaintext: a TLS handshake there could only time out.
  ConnectOptions options;
  options.tls = true;
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect("unix:/nonexistent/ffiboxd.sock", options);
  EXPECT_THAT(client.status(), StatusIs(v1::INVALID_ARGUMENT));
  EXPECT_THAT(client.status().message(), testing::HasSubstr("TLS is for TCP targets"));
}

}  // namespace
}  // namespace ffibox

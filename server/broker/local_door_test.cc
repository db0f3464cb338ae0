#include "server/broker/local_door.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "core/descriptor_passing.h"
#include "gtest/gtest.h"
#include "tests/support/status_matchers.h"

namespace ffibox {
namespace {

// A pipe whose write end is registered at the door in place of a memfd: its read end sees
// end of file once the door has closed what it held.
struct Pipe {
  Pipe() { EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0); }
  ~Pipe() {
    for (int fd : fds) {
      if (fd >= 0) close(fd);
    }
  }
  // The write end, handed over (the door owns it from here).
  int Give() { return std::exchange(fds[1], -1); }
  // Whether every write end is closed, waiting up to `wait`.
  bool Closed(absl::Duration wait) const {
    struct pollfd ready = {fds[0], POLLIN, 0};
    return poll(&ready, 1, static_cast<int>(absl::ToInt64Milliseconds(wait))) == 1 &&
           (ready.revents & POLLHUP) != 0;
  }
  int fds[2] = {-1, -1};
};

class LocalDoorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/ffibox-door-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    door_.reset();
    rmdir(dir_.c_str());
  }
  void OpenDoor(absl::Duration token_lifetime) {
    absl::StatusOr<std::unique_ptr<LocalChannelDoor>> door =
        LocalChannelDoor::Open(dir_ + "/door", token_lifetime);
    ASSERT_OK(door);
    door_ = *std::move(door);
  }
  // A connection to the door (-1 if there is none).
  int Connect() {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, door_->path().c_str(), sizeof(address.sun_path) - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
      close(fd);
      return -1;
    }
    // A client that waits longer than this for its channel fails (the door's own limit
    // for a peer is kLocalDoorReadTimeout).
    const struct timeval wait = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
    return fd;
  }
  // What the door hands a client presenting `token`: a descriptor, or an error.
  absl::StatusOr<TaggedDescriptor> Fetch(const std::string& token) {
    const int fd = Connect();
    if (fd < 0 || write(fd, token.data(), token.size()) != static_cast<ssize_t>(token.size())) {
      close(fd);
      return absl::UnavailableError("cannot reach the door");
    }
    absl::StatusOr<TaggedDescriptor> received = ReceiveDescriptor(fd);
    close(fd);
    return received;
  }

  std::string dir_;
  std::unique_ptr<LocalChannelDoor> door_;
};

TEST_F(LocalDoorTest, AChannelIsHandedOverOnceToTheClientWithItsToken) {
  ASSERT_NO_FATAL_FAILURE(OpenDoor(kLocalDoorTokenLifetime));
  Pipe channel;
  absl::StatusOr<std::string> token = door_->Register("session-1", channel.Give());
  ASSERT_OK(token);
  EXPECT_FALSE(Fetch(std::string(kLocalDoorTokenBytes, 'x')).ok()) << "an unknown token";
  absl::StatusOr<TaggedDescriptor> fetched = Fetch(*token);
  ASSERT_OK(fetched);
  EXPECT_FALSE(channel.Closed(absl::ZeroDuration())) << "the client holds the channel";
  close(fetched->fd);
  EXPECT_TRUE(channel.Closed(absl::Seconds(5))) << "the door kept a copy";
  EXPECT_FALSE(Fetch(*token).ok()) << "a token is good once";
}

// A channel nobody fetches is closed once its token expires, whether or not anyone uses the
// door meanwhile: it holds no memory past its lifetime.
TEST_F(LocalDoorTest, AChannelNobodyFetchesIsClosedWhenItsTokenExpires) {
  ASSERT_NO_FATAL_FAILURE(OpenDoor(absl::Seconds(1)));
  Pipe channel;
  absl::StatusOr<std::string> token = door_->Register("session-1", channel.Give());
  ASSERT_OK(token);
  EXPECT_FALSE(channel.Closed(absl::Milliseconds(50)));
  EXPECT_TRUE(channel.Closed(absl::Seconds(5))) << "the expired channel is still held";
  EXPECT_FALSE(Fetch(*token).ok());
}

// Peers that connect without presenting a token, more often than the door looks, do not put
// off the closing of expired channels.
TEST_F(LocalDoorTest, PeersWithoutATokenDoNotDelayTheClosingOfExpiredChannels) {
  ASSERT_NO_FATAL_FAILURE(OpenDoor(absl::Seconds(1)));
  Pipe channel;
  ASSERT_OK(door_->Register("session-1", channel.Give()));
  bool closed = false;
  // A connection every quarter second or so (each waits out the door's 200 ms for a token),
  // for up to 5 s.
  for (int i = 0; i < 20 && !closed; ++i) {
    EXPECT_FALSE(Fetch("").ok());
    closed = channel.Closed(absl::Milliseconds(50));
  }
  EXPECT_TRUE(closed) << "the expired channel is still held";
}

// When a session ends, what it registered and its client did not fetch is closed at once;
// other sessions' channels stay.
TEST_F(LocalDoorTest, ForgettingASessionClosesItsUnfetchedChannelOnly) {
  ASSERT_NO_FATAL_FAILURE(OpenDoor(absl::Minutes(10)));
  Pipe mine;
  Pipe other;
  absl::StatusOr<std::string> my_token = door_->Register("session-1", mine.Give());
  ASSERT_OK(my_token);
  absl::StatusOr<std::string> other_token = door_->Register("session-2", other.Give());
  ASSERT_OK(other_token);
  door_->Forget("session-1");
  EXPECT_TRUE(mine.Closed(absl::Seconds(5)));
  EXPECT_FALSE(Fetch(*my_token).ok());
  EXPECT_FALSE(other.Closed(absl::ZeroDuration()));
  absl::StatusOr<TaggedDescriptor> fetched = Fetch(*other_token);
  ASSERT_OK(fetched);
  close(fetched->fd);
}

// Peers that connect and send nothing (a same-user process holding connections open) delay
// no client: each waited out its 200 ms in turn, and eighty of them made every token
// expire before its client was served.
TEST_F(LocalDoorTest, SilentPeersDelayNoClient) {
  ASSERT_NO_FATAL_FAILURE(OpenDoor(absl::Seconds(2)));
  std::vector<int> silent;
  for (size_t i = 0; i < kLocalDoorMaxPending + 100; ++i) {
    const int fd = Connect();
    ASSERT_GE(fd, 0);
    silent.push_back(fd);
  }
  for (int round = 0; round < 3; ++round) {
    Pipe channel;
    absl::StatusOr<std::string> token = door_->Register("session-1", channel.Give());
    ASSERT_OK(token);
    absl::StatusOr<TaggedDescriptor> fetched = Fetch(*token);
    ASSERT_TRUE(fetched.ok()) << "round " << round << ": " << fetched.status();
    close(fetched->fd);
  }
  for (int fd : silent) close(fd);
}

}  // namespace
}  // namespace ffibox

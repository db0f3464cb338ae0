// The door of same-host channels: a unix socket beside ffiboxd's unix listener (the same
// owner-only mode) where a client fetches the memfd of the channel its session opened
// (ffibox.v1.OpenLocalChannel), because descriptors cannot travel over gRPC.
//
// The session registers the memfd and tells its client the token; the client connects,
// writes the token's 16 bytes and receives the memfd with SCM_RIGHTS (core/descriptor_passing.h,
// tag 0), then the door closes the connection. A token is good once and for
// kLocalDoorTokenLifetime. The door's thread serves its connections together, each as its
// bytes come: a peer that is not root or ffiboxd's own user, or that does not send a known
// token within kLocalDoorReadTimeout, is closed without a descriptor, and peers that send
// nothing delay no other. What is not fetched is closed once
// its token expires (the door's thread looks every quarter of a token's lifetime) or when its
// session ends (Forget), so that an unfetched channel holds no memory past its session.
#ifndef FFIBOX_SERVER_BROKER_LOCAL_DOOR_H_
#define FFIBOX_SERVER_BROKER_LOCAL_DOOR_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace ffibox {

inline constexpr absl::Duration kLocalDoorTokenLifetime = absl::Seconds(10);
inline constexpr absl::Duration kLocalDoorReadTimeout = absl::Milliseconds(200);
inline constexpr size_t kLocalDoorTokenBytes = 16;
// The most channels waiting to be fetched (one per session at most): a registration past it
// is refused.
inline constexpr size_t kLocalDoorMaxWaiting = 1024;
// The most connections that have not sent their whole token yet: a connection past it
// closes the oldest of them.
inline constexpr size_t kLocalDoorMaxPending = 128;

class LocalChannelDoor {
 public:
  // Listens on the socket file `path` (mode 0600) and starts the door's thread. Tokens are
  // good for `token_lifetime`.
  static absl::StatusOr<std::unique_ptr<LocalChannelDoor>> Open(
      const std::string& path, absl::Duration token_lifetime = kLocalDoorTokenLifetime);

  // Stops the thread, closes what waits and removes the socket file.
  ~LocalChannelDoor();

  LocalChannelDoor(const LocalChannelDoor&) = delete;
  LocalChannelDoor& operator=(const LocalChannelDoor&) = delete;

  const std::string& path() const { return path_; }

  // Keeps `memfd` (owned from now on) for the one client that presents the returned token,
  // in place of what session `session` registered before and its client did not fetch.
  // RESOURCE_EXHAUSTED (the memfd closed) when kLocalDoorMaxWaiting channels wait.
  absl::StatusOr<std::string> Register(const std::string& session, int memfd);

  // Closes what session `session` registered and its client did not fetch (the session
  // ended).
  void Forget(const std::string& session);

 private:
  struct Waiting {
    int fd;
    absl::Time expires;
    std::string session;
  };

  LocalChannelDoor(std::string path, int listen_fd, int stop_fd, absl::Duration token_lifetime)
      : path_(std::move(path)),
        listen_fd_(listen_fd),
        stop_fd_(stop_fd),
        token_lifetime_(token_lifetime) {}

  // A connection accepted and not answered yet: the token's bytes so far.
  struct Pending {
    int fd;
    absl::Time until;
    std::string token;
  };

  void Serve();
  // Whether the peer of accepted connection `fd` is root or ffiboxd's own user.
  static bool Admitted(int fd);
  // Reads what `peer` sent of its token; true when done with it (the whole token came, or
  // the peer went or failed), false to wait for more.
  static bool Read(Pending& peer);
  // Passes what `token` names (if anything) to the peer on connection `fd`.
  void Hand(int fd, const std::string& token);
  // Closes and forgets what expired, or what `session` registered.
  void Expire(absl::Time now, const std::string& session) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const int listen_fd_;
  const int stop_fd_;  // an eventfd: written to stop the thread
  const absl::Duration token_lifetime_;
  std::thread thread_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Waiting> waiting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LOCAL_DOOR_H_

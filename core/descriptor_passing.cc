#include "core/descriptor_passing.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ffibox {

absl::Status SendDescriptor(int socket_fd, int fd, uint64_t tag) {
  struct iovec data = {&tag, sizeof(tag)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  struct msghdr message = {};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  struct cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  for (;;) {
    // Never blocks: a peer that does not read its descriptors makes the send fail.
    ssize_t sent = sendmsg(socket_fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent == static_cast<ssize_t>(sizeof(tag))) return absl::OkStatus();
    if (sent < 0 && errno == EINTR) continue;
    return absl::UnavailableError(
        absl::StrCat("passing a descriptor: ", sent < 0 ? strerror(errno) : "short write"));
  }
}

absl::StatusOr<TaggedDescriptor> ReceiveDescriptor(int socket_fd) {
  uint64_t tag = 0;
  struct iovec data = {&tag, sizeof(tag)};
  alignas(struct cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  struct msghdr message = {};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  ssize_t got;
  do {
    got = recvmsg(socket_fd, &message, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  } while (got < 0 && errno == EINTR);
  if (got == 0) return absl::UnavailableError("the descriptor socket was closed");
  if (got < 0) {
    return absl::UnavailableError(absl::StrCat("receiving a descriptor: ", strerror(errno)));
  }
  // Collect every descriptor that arrived, so none leaks whatever the message held.
  int received[8];
  int count = 0;
  for (struct cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n && count < 8; ++i) {
      std::memcpy(&received[count++], CMSG_DATA(header) + i * sizeof(int), sizeof(int));
    }
  }
  const bool truncated = (message.msg_flags & MSG_CTRUNC) != 0;
  if (truncated && count == 0) {
    // The kernel drops descriptors a process has no room for.
    return absl::ResourceExhaustedError(
        "the descriptor sent was dropped: this process has no room for more open files (its "
        "RLIMIT_NOFILE)");
  }
  if (got != static_cast<ssize_t>(sizeof(tag)) || count != 1 || truncated) {
    for (int i = 0; i < count; ++i) close(received[i]);
    return absl::DataLossError(
        absl::StrCat("a descriptor message held ", count, " descriptors and ", got, " bytes"));
  }
  return TaggedDescriptor{tag, received[0]};
}

}  // namespace ffibox

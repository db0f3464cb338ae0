#include "server/worker/own_descriptors.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/protocol/crash_report.h"

namespace ffibox {
namespace {

// The lowest number a moved descriptor may take: above the channel's memfd (fd 6), which the
// worker has closed by then but the launcher's convention names.
constexpr int kLowestMovedNumber = 7;

// The soft RLIMIT_NOFILE, at most kOwnDescriptorsCeiling; 0 when it cannot be read.
int Window() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  return static_cast<int>(std::min<rlim_t>(limit.rlim_cur, kOwnDescriptorsCeiling));
}

}  // namespace

absl::StatusOr<OwnDescriptors> MoveOwnDescriptorsUp(const OwnDescriptors& from) {
  const int top = Window();
  if (top < kLowestMovedNumber + 3) return from;
  const std::array<int, 3> sources = {from.hangup, from.crash, from.descriptors};
  const std::array<int, 3> targets = {top - 3, top - 2, top - 1};
  std::array<int, 3> moved = {-1, -1, -1};
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i] < 0) continue;
    if (dup3(sources[i], targets[i], O_CLOEXEC) < 0) {
      const int error = errno;
      for (int done : moved) {
        if (done >= 0) close(done);
      }
      return absl::InternalError(absl::StrCat("cannot move descriptor ", sources[i], " to ",
                                              targets[i], ": ", strerror(error)));
    }
    moved[i] = targets[i];
  }
  if (moved[1] >= 0) SetCrashReportFd(moved[1]);
  for (int source : sources) {
    if (source >= 0) close(source);
  }
  return OwnDescriptors{moved[0], moved[1], moved[2]};
}

int MoveKeptDescriptorUp(int fd) {
  const int window = Window();
  if (window / 2 <= fd) return fd;
  // F_DUPFD takes the lowest free number from there: it never replaces a descriptor a
  // library's thread opened meanwhile.
  const int moved = fcntl(fd, F_DUPFD_CLOEXEC, window / 2);
  if (moved < 0) return fd;
  close(fd);
  return moved;
}

}  // namespace ffibox

// Where the worker keeps its own descriptors. The launcher hands them over as fds 3, 4 and 5
// (server/jail/spawn.h: the channel's hangup socket, the crash pipe, the descriptor socket);
// the worker moves them, in that order, to the top three numbers of its open-files window
// before it serves, so that 3, 4 and 5 are the library's like every other low number. A
// caller's descriptor number handed to a library by mistake (descriptors are the worker's,
// docs/python.md) then fails with EBADF at once, as other numbers do, instead of reading the
// hangup socket until the call's deadline or writing into the crash pipe. A library that
// looks for them finds them all the same: this is about mistakes, not attacks (everything
// the worker sends stays untrusted). The files it loads libraries from, which it keeps open,
// go to the upper half of the window for the same reason (MoveKeptDescriptorUp).
#ifndef FFIBOX_SERVER_WORKER_OWN_DESCRIPTORS_H_
#define FFIBOX_SERVER_WORKER_OWN_DESCRIPTORS_H_

#include "absl/status/statusor.h"

namespace ffibox {

struct OwnDescriptors {
  int hangup = -1;       // the channel's hangup socket
  int crash = -1;        // the crash-report pipe
  int descriptors = -1;  // the socket library descriptors arrive on; -1 when absent
};

// The highest number MoveOwnDescriptorsUp uses is one below the soft RLIMIT_NOFILE, or below
// this when the limit is higher (a descriptor's number sizes the process's descriptor table).
inline constexpr int kOwnDescriptorsCeiling = 1024;

// Moves `from`'s descriptors to the three numbers below the soft RLIMIT_NOFILE (at most
// kOwnDescriptorsCeiling), hangup lowest, and closes the originals; an absent one (-1) stays
// absent, its number unused. Returns where they are now. A window too small to hold them
// above fd 6 leaves them where they are. The crash reporter writes to the moved pipe
// (SetCrashReportFd) before the original closes. Fails, having closed nothing, when a move
// fails. Call before any other thread runs.
absl::StatusOr<OwnDescriptors> MoveOwnDescriptorsUp(const OwnDescriptors& from);

// Moves `fd`, a descriptor the worker keeps for its life (a file it loaded a library from),
// to the lowest free number in the upper half of the open-files window (at most
// kOwnDescriptorsCeiling), so that the low numbers stay free for the library. Returns the
// new number, having closed `fd`; returns `fd` itself when the upper half is full.
int MoveKeptDescriptorUp(int fd);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_OWN_DESCRIPTORS_H_

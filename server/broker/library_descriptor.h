// Opening a library the broker admitted, for the worker: the worker loads the descriptor
// (dlopen of /proc/self/fd/N), so it loads exactly the file the allowlist checked, from
// anywhere the broker may read (a build directory, /tmp), without that directory being in
// the jail's view.
#ifndef FFIBOX_SERVER_BROKER_LIBRARY_DESCRIPTOR_H_
#define FFIBOX_SERVER_BROKER_LIBRARY_DESCRIPTOR_H_

#include <unistd.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace ffibox {

// A library descriptor held for one load, closed once it has been passed to the worker.
struct LibraryFd {
  LibraryFd() = default;
  LibraryFd(const LibraryFd&) = delete;
  LibraryFd& operator=(const LibraryFd&) = delete;
  ~LibraryFd() {
    if (fd >= 0) close(fd);
  }
  int fd = -1;
};

// Opens the regular file at `path` (absolute, resolved and admitted) read-only, following no
// symbolic link anywhere on the way (so a directory swapped for a link after the path was
// admitted is refused, not followed out of the allowed roots), and never opening anything
// but a regular file (not a device, not a FIFO). A file of one of the kernel's
// pseudo-filesystems is refused in every case. When the worker runs as another host user
// (`worker_is_other`: nobody, or a subordinate uid), a root broker refuses a file not
// readable by others (PERMISSION_DENIED), so that no client obtains through a worker what
// only root may read, and so a file in a directory others may not search, unless
// `client_reads_as_broker` (the client is ffiboxd's own user or root, who may read it
// anyway); an unprivileged broker (whose rights are its user's, the client's own) hands such
// a file as a copy. So does it any file the worker could change through the descriptor:
// one its host uid `worker_uid` owns, or that group or others may write. A copy is a sealed
// memfd of at most kMaxLibraryCopyBytes. RESOURCE_EXHAUSTED when out of descriptors or
// memory; NOT_FOUND, INVALID_ARGUMENT or PERMISSION_DENIED otherwise.
// A memfd named `name`, sealed against writes and resizing, holding the `size` bytes of the
// file open for reading at `fd` (`path` names it in errors).
absl::StatusOr<int> CopyIntoSealedMemfd(int fd, off_t size, const std::string& path,
                                        const char* name);

inline constexpr uint64_t kMaxLibraryCopyBytes = uint64_t{1} << 30;
absl::StatusOr<int> OpenLibraryForWorker(const std::string& path, uid_t worker_uid,
                                         bool worker_is_other, bool client_reads_as_broker = false);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LIBRARY_DESCRIPTOR_H_

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

// Opens the regular file `path` (absolute, already admitted) read-only, without following a
// final symlink and without blocking on a FIFO. When the worker runs as another host user
// (`worker_is_other`: nobody, or a subordinate uid) and the file is not readable by others,
// the worker could not reopen it through /proc/self/fd: an unprivileged broker (whose
// rights are its user's, the client's own) copies it into a sealed memfd of at most
// kMaxLibraryCopyBytes; a root broker refuses it (PERMISSION_DENIED), so that no client
// obtains through a worker what only root may read; so does it a file in a directory
// others may not search, unless `client_reads_as_broker` (the client is ffiboxd's own user
// or root, who may read it anyway). A file of one of the kernel's pseudo-filesystems is
// refused in every case. RESOURCE_EXHAUSTED when out of descriptors or memory; NOT_FOUND or
// PERMISSION_DENIED otherwise.
inline constexpr uint64_t kMaxLibraryCopyBytes = uint64_t{1} << 30;
absl::StatusOr<int> OpenLibraryForWorker(const std::string& path, bool worker_is_other,
                                         bool client_reads_as_broker = false);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LIBRARY_DESCRIPTOR_H_

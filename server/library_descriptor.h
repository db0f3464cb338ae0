// Opening a library the broker admitted, for the worker: the worker loads the descriptor
// (dlopen of /proc/self/fd/N), so it loads exactly the file the allowlist checked, from
// anywhere the broker may read (a build directory, /tmp), without that directory being in
// the jail's view.
#ifndef FFIBOX_SERVER_LIBRARY_DESCRIPTOR_H_
#define FFIBOX_SERVER_LIBRARY_DESCRIPTOR_H_

#include <unistd.h>

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

// Opens the regular file `path` (absolute, already admitted) read-only. When
// `worker_is_other` (the worker runs as another host user: nobody, or a subordinate uid)
// and the file is not readable by others, the worker could not reopen it through /proc/self/fd, so
// the contents are copied into a sealed memfd instead. RESOURCE_EXHAUSTED when out of descriptors
// or memory; LIBRARY_LOAD_FAILED-worthy NOT_FOUND / PERMISSION_DENIED otherwise.
absl::StatusOr<int> OpenLibraryForWorker(const std::string& path, bool worker_is_other);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_LIBRARY_DESCRIPTOR_H_

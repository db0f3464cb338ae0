// Opening a library the broker admitted, for the worker: the worker loads the descriptor
// (dlopen of /proc/self/fd/N), so it loads exactly the file the allowlist checked, from
// anywhere the broker may read (a build directory, /tmp), without that directory being in
// the jail's view.
#ifndef FFIBOX_SERVER_BROKER_LIBRARY_DESCRIPTOR_H_
#define FFIBOX_SERVER_BROKER_LIBRARY_DESCRIPTOR_H_

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

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

// The mode of an executable copy (CopyIntoSealedMemfd).
inline constexpr mode_t kExecutableCopyMode = 0555;

// A memfd named `name`, sealed against writes and resizing, holding the `size` bytes of the
// file open for reading at `fd` (`path` names it in errors). `executable`: mode
// kExecutableCopyMode, made
// executable where the kernel makes memfds unexecutable by default, and sealed against
// losing its execute bits where the kernel can seal them.
absl::StatusOr<int> CopyIntoSealedMemfd(int fd, off_t size, const std::string& path,
                                        const char* name, bool executable);

// The most bytes of library copies one session holds (LibraryCopies), and so the largest
// library that goes as a copy.
inline constexpr uint64_t kMaxLibraryCopyBytes = uint64_t{1} << 30;

// The copies of libraries one session's workers were handed, by file: loading a file again
// hands the same copy, so the loader sees the same file (one instance of the library, as a
// second dlopen of a path gives) and a replay after a restart copies nothing; together they
// take at most kMaxLibraryCopyBytes. Thread-safe.
class LibraryCopies {
 public:
  LibraryCopies() = default;
  LibraryCopies(const LibraryCopies&) = delete;
  LibraryCopies& operator=(const LibraryCopies&) = delete;
  ~LibraryCopies();

  // A new descriptor of the copy of the file open for reading at `fd` (fstat'ed as `st`),
  // made now unless it was made before. RESOURCE_EXHAUSTED past the budget.
  absl::StatusOr<int> CopyOf(int fd, const struct stat& st, const std::string& path);

 private:
  struct Key {
    dev_t device;
    ino_t inode;
    off_t size;
    int64_t modified_ns;
    int64_t changed_ns;
    bool operator<(const Key& other) const;
  };
  absl::Mutex mu_;
  std::map<Key, int> copies_ ABSL_GUARDED_BY(mu_);
  uint64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
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
// a file as a copy. So does it any file a jailed worker could change through the
// descriptor: one its host uid `jailed_worker_uid` owns, or that group or others may write
// (nullopt: the worker is not jailed, and may open the file itself). Copies come from
// `copies`, the session's. RESOURCE_EXHAUSTED
// when out of descriptors, memory or copy budget; NOT_FOUND, INVALID_ARGUMENT or
// PERMISSION_DENIED otherwise.
absl::StatusOr<int> OpenLibraryForWorker(const std::string& path, LibraryCopies* copies,
                                         std::optional<uid_t> jailed_worker_uid,
                                         bool worker_is_other, bool client_reads_as_broker = false);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_LIBRARY_DESCRIPTOR_H_

#include "server/broker/library_descriptor.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace ffibox {
namespace {

absl::Status OpenError(const std::string& what, int error) {
  std::string message = absl::StrCat(what, ": ", strerror(error));
  if (error == EMFILE || error == ENFILE || error == ENOMEM || error == ENOSPC) {
    return absl::ResourceExhaustedError(message);
  }
  if (error == ENOENT || error == ENOTDIR) return absl::NotFoundError(message);
  return absl::PermissionDeniedError(message);
}

// A sealed memfd holding the whole of `fd` (size `size`).
absl::StatusOr<int> CopyIntoMemfd(int fd, off_t size, const std::string& path) {
  int copy = memfd_create("ffibox-library", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0) return OpenError("memfd_create", errno);
  off_t offset = 0;
  while (offset < size) {
    ssize_t n = sendfile(copy, fd, &offset, static_cast<size_t>(size - offset));
    if (n <= 0) {
      int error = n < 0 ? errno : EIO;
      close(copy);
      return OpenError(absl::StrCat("copying ", path), error);
    }
  }
  if (fcntl(copy, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    int error = errno;
    close(copy);
    return OpenError("sealing the library copy", error);
  }
  return copy;
}

}  // namespace

absl::StatusOr<int> OpenLibraryForWorker(const std::string& path, bool worker_is_other) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return OpenError(path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::PermissionDeniedError(absl::StrCat(path, " is not a regular file"));
  }
  if (!worker_is_other || (st.st_mode & S_IROTH) != 0) return fd;
  if (geteuid() == 0) {
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat(path,
                     " is not readable by others: a root ffiboxd hands its workers only what any "
                     "user may read"));
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxLibraryCopyBytes) {
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat(path, " is larger than ", kMaxLibraryCopyBytes, " bytes"));
  }
  absl::StatusOr<int> copy = CopyIntoMemfd(fd, st.st_size, path);
  close(fd);
  return copy;
}

}  // namespace ffibox

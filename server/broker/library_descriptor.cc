#include "server/broker/library_descriptor.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
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

// Pseudo-filesystems <linux/magic.h> does not name.
constexpr decltype(statfs::f_type) kConfigfsMagic = 0x62656570;
constexpr decltype(statfs::f_type) kFuseControlMagic = 0x65735543;
constexpr decltype(statfs::f_type) kMqueueMagic = 0x19800202;

// Whether every directory above `path` (absolute, resolved) lets others search it: a root
// ffiboxd opens what the worker's uid could not reach, so a file readable by others in a
// directory closed to them is refused as a file only root may read is.
absl::Status ReachableByOthers(const std::string& path) {
  std::string directory = path;
  for (size_t slash = directory.rfind('/'); slash != std::string::npos && slash > 0;
       slash = directory.rfind('/')) {
    directory.resize(slash);
    struct stat st;
    if (stat(directory.c_str(), &st) != 0) return OpenError(directory, errno);
    if (!S_ISDIR(st.st_mode) || (st.st_mode & S_IXOTH) == 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          path, " is in ", directory,
          ", which others may not search: a root ffiboxd hands its workers only what any "
          "user may read"));
    }
  }
  return absl::OkStatus();
}

// The name of the kernel's pseudo-filesystem of type `magic`, or nullptr. Their files are
// not libraries, and some are checked when they are opened, not by their mode
// (/proc/<pid>/maps is 0444, yet only the process's tracers may open it): a descriptor
// ffiboxd opened there would hand a worker what its own open would be refused.
const char* PseudoFilesystem(decltype(statfs::f_type) magic) {
  switch (magic) {
    case PROC_SUPER_MAGIC:
      return "proc";
    case SYSFS_MAGIC:
      return "sysfs";
    case DEBUGFS_MAGIC:
      return "debugfs";
    case TRACEFS_MAGIC:
      return "tracefs";
    case SECURITYFS_MAGIC:
      return "securityfs";
    case BPF_FS_MAGIC:
      return "bpf";
    case CGROUP_SUPER_MAGIC:
      return "cgroup";
    case CGROUP2_SUPER_MAGIC:
      return "cgroup2";
    case EFIVARFS_MAGIC:
      return "efivarfs";
    case PSTOREFS_MAGIC:
      return "pstore";
    case SELINUX_MAGIC:
      return "selinuxfs";
    case SMACK_MAGIC:
      return "smackfs";
    case BINFMTFS_MAGIC:
      return "binfmt_misc";
    case AAFS_MAGIC:
      return "apparmorfs";
    case RDTGROUP_SUPER_MAGIC:
      return "resctrl";
    case NSFS_MAGIC:
      return "nsfs";
    case kConfigfsMagic:
      return "configfs";
    case kFuseControlMagic:
      return "fusectl";
    case kMqueueMagic:
      return "mqueue";
    default:
      return nullptr;
  }
}

}  // namespace

absl::StatusOr<int> OpenLibraryForWorker(const std::string& path, bool worker_is_other,
                                         bool client_reads_as_broker) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return OpenError(path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::PermissionDeniedError(absl::StrCat(path, " is not a regular file"));
  }
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0) {
    const int error = errno;
    close(fd);
    return OpenError(absl::StrCat("the filesystem of ", path), error);
  }
  if (const char* pseudo = PseudoFilesystem(fs.f_type); pseudo != nullptr) {
    close(fd);
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is a file of the kernel's ", pseudo,
                     " filesystem, not a library: ffiboxd hands its workers none"));
  }
  if (worker_is_other && geteuid() == 0 && !client_reads_as_broker && (st.st_mode & S_IROTH) != 0) {
    if (absl::Status reachable = ReachableByOthers(path); !reachable.ok()) {
      close(fd);
      return reachable;
    }
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

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

#include <string>
#include <tuple>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

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

// Pseudo-filesystems <linux/magic.h> does not name.
constexpr decltype(statfs::f_type) kConfigfsMagic = 0x62656570;
constexpr decltype(statfs::f_type) kFuseControlMagic = 0x65735543;
constexpr decltype(statfs::f_type) kMqueueMagic = 0x19800202;

// Opens the file at `path` one component at a time from "/", following no symbolic link
// anywhere on the way (a component swapped for one since the path was admitted fails), so
// that what is opened is the file at that path, inside the roots the path was checked
// against. With `searchable_by_others`, every directory on the way must let others search
// it (looked at on the directory opened, not looked up again): a root ffiboxd opens what the
// worker's uid could not reach, so a file readable by others in a directory closed to them
// is refused as a file only root may read is. The file is opened O_PATH first and opened for
// reading only once it is a regular file (opening a device has effects), through that
// descriptor (the same file, whatever has been put at its name since). Fills `st`.
absl::StatusOr<int> OpenWithoutLinks(const std::string& path, bool searchable_by_others,
                                     struct stat* st) {
  const std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  if (path.empty() || path[0] != '/' || parts.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not an absolute path of a file"));
  }
  int directory = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (directory < 0) return OpenError("/", errno);
  absl::Cleanup close_directory = [&directory] { close(directory); };
  std::string reached;
  for (size_t i = 0;; ++i) {
    struct stat dir_st;
    if (fstat(directory, &dir_st) != 0) return OpenError(reached.empty() ? "/" : reached, errno);
    if (searchable_by_others && (dir_st.st_mode & S_IXOTH) == 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          path, " is in ", reached.empty() ? "/" : reached,
          ", which others may not search: a root ffiboxd hands its workers only what any "
          "user may read"));
    }
    const std::string& part = parts[i];
    if (part == "." || part == "..") {
      return absl::InvalidArgumentError(absl::StrCat(path, " is not a resolved path"));
    }
    absl::StrAppend(&reached, "/", part);
    if (i + 1 == parts.size()) break;
    const int next = openat(directory, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      const int error = errno;
      if (error == ENOTDIR || error == ELOOP) {
        return absl::PermissionDeniedError(absl::StrCat(
            path, ": ", reached,
            " is not a directory (a symbolic link?): ffiboxd follows none when it opens a "
            "library it admitted"));
      }
      return OpenError(reached, error);
    }
    close(directory);
    directory = next;
  }
  const int found = openat(directory, parts.back().c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (found < 0) return OpenError(path, errno);
  absl::Cleanup close_found = [found] { close(found); };
  if (fstat(found, st) != 0 || !S_ISREG(st->st_mode)) {
    return absl::PermissionDeniedError(absl::StrCat(path, " is not a regular file"));
  }
  // The file looked at, opened again through its descriptor: not by name, where another
  // file (a FIFO) may have been put since.
  const int fd = open(absl::StrCat("/proc/self/fd/", found).c_str(),
                      O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return OpenError(path, errno);
  return fd;
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

absl::StatusOr<int> CopyIntoSealedMemfd(int fd, off_t size, const std::string& path,
                                        const char* name, bool executable) {
  // Linux 6.3's MFD_EXEC and F_SEAL_EXEC, which Debian 12's headers do not have: a kernel
  // with vm.memfd_noexec set makes a memfd without MFD_EXEC unexecutable; a kernel before
  // 6.3 refuses both (EINVAL), and its memfds are executable.
  // A library's copy asks for MFD_NOEXEC_SEAL, which vm.memfd_noexec 2 requires (the
  // loader maps it executable all the same: the mode's execute bits are execve's).
  constexpr unsigned kMfdNoexecSeal = 0x0008U;
  constexpr unsigned kMfdExec = 0x0010U;
  constexpr int kSealExec = 0x0020;
  const unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  int copy = memfd_create(name, flags | (executable ? kMfdExec : kMfdNoexecSeal));
  if (copy < 0 && errno == EINVAL) copy = memfd_create(name, flags);
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
  if (executable && fchmod(copy, kExecutableCopyMode) != 0) {
    const int error = errno;
    close(copy);
    return OpenError(
        absl::StrCat("making the copy of ", path, " executable (is vm.memfd_noexec 2?)"), error);
  }
  int seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
  // Sealed executable: no mode change may take its execute bits away.
  if (executable && fcntl(copy, F_ADD_SEALS, seals | kSealExec) == 0) return copy;
  if (fcntl(copy, F_ADD_SEALS, seals) != 0) {
    int error = errno;
    close(copy);
    return OpenError("sealing the copy", error);
  }
  return copy;
}

bool LibraryCopies::Key::operator<(const Key& other) const {
  return std::tie(device, inode, size, modified_ns, changed_ns) <
         std::tie(other.device, other.inode, other.size, other.modified_ns, other.changed_ns);
}

LibraryCopies::~LibraryCopies() {
  absl::MutexLock lock(&mu_);
  for (const auto& [key, fd] : copies_) close(fd);
}

absl::StatusOr<int> LibraryCopies::CopyOf(int fd, const struct stat& st, const std::string& path) {
  const auto nanoseconds = [](const struct timespec& at) {
    return static_cast<int64_t>(at.tv_sec) * 1000000000 + at.tv_nsec;
  };
  const Key key{st.st_dev, st.st_ino, st.st_size, nanoseconds(st.st_mtim), nanoseconds(st.st_ctim)};
  absl::MutexLock lock(&mu_);
  auto found = copies_.find(key);
  if (found == copies_.end()) {
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size > kMaxLibraryCopyBytes - bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat(path, " goes to the worker as a copy, and its ", size,
                       " bytes do not fit in the session's copies: they hold ", bytes_,
                       " of at most ", kMaxLibraryCopyBytes, " bytes"));
    }
    absl::StatusOr<int> copy =
        CopyIntoSealedMemfd(fd, st.st_size, path, "ffibox-library", /*executable=*/false);
    if (!copy.ok()) return copy.status();
    found = copies_.emplace(key, *copy).first;
    bytes_ += size;
  }
  const int handed = fcntl(found->second, F_DUPFD_CLOEXEC, 0);
  if (handed < 0) return OpenError("the library's copy", errno);
  return handed;
}

absl::StatusOr<int> OpenLibraryForWorker(const std::string& path, LibraryCopies* copies,
                                         std::optional<uid_t> jailed_worker_uid,
                                         bool worker_is_other, bool client_reads_as_broker) {
  const bool root_for_another = worker_is_other && geteuid() == 0 && !client_reads_as_broker;
  struct stat st;
  absl::StatusOr<int> opened = OpenWithoutLinks(path, root_for_another, &st);
  if (!opened.ok()) return opened.status();
  const int fd = *opened;
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct statfs fs;
  if (fstatfs(fd, &fs) != 0) return OpenError(absl::StrCat("the filesystem of ", path), errno);
  if (const char* pseudo = PseudoFilesystem(fs.f_type); pseudo != nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is a file of the kernel's ", pseudo,
                     " filesystem, not a library: ffiboxd hands its workers none"));
  }
  if (worker_is_other && (st.st_mode & S_IROTH) == 0 && geteuid() == 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path,
                     " is not readable by others: a root ffiboxd hands its workers only what any "
                     "user may read"));
  }
  // A jailed worker could reopen this descriptor (through /proc/self/fd) for writing, or
  // change the file's mode and times, when its uid owns the file or group or others may
  // write it: it gets a copy. So does it a file only ffiboxd's user may read.
  const bool worker_could_change =
      jailed_worker_uid.has_value() &&
      (st.st_uid == *jailed_worker_uid || (st.st_mode & (S_IWGRP | S_IWOTH)) != 0);
  const bool worker_could_not_read = worker_is_other && (st.st_mode & S_IROTH) == 0;
  if (!worker_could_change && !worker_could_not_read) {
    std::move(close_fd).Cancel();
    return fd;
  }
  return copies->CopyOf(fd, st, path);
}

}  // namespace ffibox

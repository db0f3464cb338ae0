#include "server/broker/private_directory.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace ffibox {
namespace {

// The entries of the directory open as `fd` other than ".", ".." and `except`, or an error
// naming why it cannot be read.
absl::StatusOr<std::vector<std::string>> EntriesOf(int fd, const std::string& except) {
  const int own = dup(fd);
  DIR* dir = own >= 0 ? fdopendir(own) : nullptr;
  if (dir == nullptr) {
    const int error = errno;
    if (own >= 0) close(own);
    return absl::InternalError(strerror(error));
  }
  // The copy shares the descriptor's position: from the start, whatever an earlier read left.
  rewinddir(dir);
  std::vector<std::string> names;
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != ".." && name != except) names.push_back(name);
  }
  closedir(dir);
  return names;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrivateDirectory>> PrivateDirectory::Claim(const std::string& path,
                                                                          pid_t parent) {
  auto refuse = [&path](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--private_directory ", path, " ", why));
  };
  if (path.empty() || path[0] != '/') return refuse("is not an absolute path");
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return errno == ENOTDIR || errno == ELOOP
               ? refuse("is not a directory (symlinks are refused)")
               : refuse(absl::StrCat("cannot be opened: ", strerror(errno)));
  }
  auto refuse_and_close = [&refuse, fd](absl::string_view why) {
    close(fd);
    return refuse(why);
  };
  struct stat st;
  if (fstat(fd, &st) != 0) return refuse_and_close(strerror(errno));
  if (st.st_uid != geteuid()) {
    return refuse_and_close(
        absl::StrCat("belongs to uid ", st.st_uid, ", not to this server's user"));
  }
  if ((st.st_mode & 077) != 0) {
    return refuse_and_close(absl::StrFormat(
        "may be entered by others (mode %04o): it must be mode 0700", st.st_mode & 07777));
  }
  absl::StatusOr<std::vector<std::string>> others = EntriesOf(fd, kLogName);
  if (!others.ok()) return refuse_and_close(others.status().message());
  if (!others->empty()) {
    return refuse_and_close(absl::StrCat("holds ", absl::StrJoin(*others, ", "),
                                         ": it must hold nothing but ", kLogName,
                                         " when the server starts"));
  }
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return refuse_and_close(absl::StrCat("cannot be resolved: ", strerror(errno)));
  }
  return std::unique_ptr<PrivateDirectory>(new PrivateDirectory(resolved, fd, parent));
}

PrivateDirectory::~PrivateDirectory() {
  if (armed_.load() || (parent_ != 0 && getppid() != parent_)) Remove();
  close(fd_);
}

void PrivateDirectory::Remove() const {
  auto leave = [this](absl::string_view why) {
    fprintf(stderr, "ffiboxd: leaving the private directory %s: %s\n", path_.c_str(),
            std::string(why).c_str());
  };
  // The sessions removed their own scratch directories; the root is the server's.
  const size_t slash = scratch_root_.rfind('/');
  if (slash != std::string::npos && slash == path_.size() &&
      scratch_root_.compare(0, path_.size(), path_) == 0) {
    unlinkat(fd_, scratch_root_.c_str() + slash + 1, AT_REMOVEDIR);
  }
  absl::StatusOr<std::vector<std::string>> others = EntriesOf(fd_, kLogName);
  if (!others.ok()) return leave(others.status().message());
  if (!others->empty()) return leave(absl::StrCat("it still holds ", absl::StrJoin(*others, ", ")));
  // Still the directory that was claimed, under the same name: then it is removed by name.
  struct stat held, named;
  if (fstat(fd_, &held) != 0 || lstat(path_.c_str(), &named) != 0 || held.st_dev != named.st_dev ||
      held.st_ino != named.st_ino) {
    return leave("its path no longer names it");
  }
  if (unlinkat(fd_, kLogName, 0) != 0 && errno != ENOENT) {
    return leave(absl::StrCat("cannot remove ", kLogName, ": ", strerror(errno)));
  }
  if (rmdir(path_.c_str()) != 0) {
    fprintf(stderr, "ffiboxd: cannot remove the private directory %s: %s\n", path_.c_str(),
            strerror(errno));
  }
}

}  // namespace ffibox

#include "server/broker/private_directory.h"

#include <dirent.h>
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

// The entries of `path` other than "." and "..", or an error naming why it cannot be read.
absl::StatusOr<std::vector<std::string>> EntriesOf(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return absl::InternalError(strerror(errno));
  std::vector<std::string> names;
  while (struct dirent* entry = readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(dir);
  return names;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PrivateDirectory>> PrivateDirectory::Claim(
    const std::string& path, std::string scratch_root) {
  auto refuse = [&path](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--private_directory ", path, " ", why));
  };
  if (path.empty() || path[0] != '/') return refuse("is not an absolute path");
  struct stat st;
  if (lstat(path.c_str(), &st) != 0)
    return refuse(absl::StrCat("cannot be read: ", strerror(errno)));
  if (!S_ISDIR(st.st_mode)) return refuse("is not a directory (symlinks are refused)");
  if (st.st_uid != geteuid()) {
    return refuse(absl::StrCat("belongs to uid ", st.st_uid, ", not to this server's user"));
  }
  if ((st.st_mode & 077) != 0) {
    return refuse(absl::StrFormat("may be entered by others (mode %04o): it must be mode 0700",
                                  st.st_mode & 07777));
  }
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return refuse(absl::StrCat("cannot be resolved: ", strerror(errno)));
  }
  return std::unique_ptr<PrivateDirectory>(new PrivateDirectory(resolved, std::move(scratch_root)));
}

PrivateDirectory::~PrivateDirectory() {
  if (!armed_.load()) return;
  // The sessions removed their own scratch directories; the root is the server's.
  if (!scratch_root_.empty() && scratch_root_.rfind('/') == path_.size() &&
      scratch_root_.compare(0, path_.size(), path_) == 0) {
    rmdir(scratch_root_.c_str());
  }
  absl::StatusOr<std::vector<std::string>> entries = EntriesOf(path_);
  std::vector<std::string> others;
  if (entries.ok()) {
    for (const std::string& name : *entries) {
      if (name != kLogName) others.push_back(name);
    }
  }
  if (!entries.ok() || !others.empty()) {
    const std::string why = entries.ok()
                                ? absl::StrCat("it still holds ", absl::StrJoin(others, ", "))
                                : std::string(entries.status().message());
    fprintf(stderr, "ffiboxd: leaving the private directory %s: %s\n", path_.c_str(), why.c_str());
    return;
  }
  const std::string log = absl::StrCat(path_, "/", kLogName);
  if ((unlink(log.c_str()) != 0 && errno != ENOENT) || rmdir(path_.c_str()) != 0) {
    fprintf(stderr, "ffiboxd: cannot remove the private directory %s: %s\n", path_.c_str(),
            strerror(errno));
  }
}

}  // namespace ffibox

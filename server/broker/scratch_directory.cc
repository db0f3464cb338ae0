#include "server/broker/scratch_directory.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/base/attributes.h"
#include "absl/base/const_init.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/errors.h"

namespace ffibox {
namespace {

// nftw's callback has no context argument: one walk at a time counts its failures here.
ABSL_CONST_INIT absl::Mutex walk_lock(absl::kConstInit);
int failures ABSL_GUARDED_BY(walk_lock) = 0;

int RemoveEntry(const char* path, const struct stat*, int,
                struct FTW*) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // runs inside nftw, under walk_lock
  if (remove(path) != 0 && errno != ENOENT) {
    fprintf(stderr, "ffiboxd: cannot remove %s from a scratch directory: %s\n", path,
            strerror(errno));
    ++failures;
  }
  return 0;  // keep going: remove what can be removed
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  for (char c : name) {
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> ScratchDirectory::PrepareRoot(const std::string& root) {
  if (root.empty() || root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("scratch root \"", root, "\" is not an absolute path"));
  }
  if (mkdir(root.c_str(), 0711) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create the scratch root ", root, ": ", strerror(errno)));
  }
  struct stat st;
  if (lstat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("scratch root ", root, " is not a directory (symlinks are refused)"));
  }
  if (st.st_uid != geteuid()) {
    return absl::InvalidArgumentError(absl::StrCat("scratch root ", root, " belongs to uid ",
                                                   st.st_uid, ", not to this server's user"));
  }
  if ((st.st_mode & 07777) != 0711 && chmod(root.c_str(), 0711) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot set the mode of the scratch root ", root, ": ", strerror(errno)));
  }
  char resolved[PATH_MAX];
  if (realpath(root.c_str(), resolved) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve the scratch root ", root, ": ", strerror(errno)));
  }
  return std::string(resolved);
}

absl::StatusOr<std::unique_ptr<ScratchDirectory>> ScratchDirectory::Create(
    const std::string& root, const std::string& name) {
  if (!ValidName(name)) {
    return ErrorStatus(v1::INTERNAL, absl::StrCat("bad scratch directory name \"", name, "\""));
  }
  std::string session_directory = absl::StrCat(root, "/", name);
  std::string path = session_directory + "/scratch";
  auto failed = [&](const std::string& what) {
    v1::ErrorCode code =
        (errno == ENOSPC || errno == EDQUOT) ? v1::RESOURCE_EXHAUSTED : v1::INTERNAL;
    return ErrorStatus(code, absl::StrCat("cannot create the scratch directory (", what, " ",
                                          session_directory, "): ", strerror(errno)));
  };
  if (mkdir(session_directory.c_str(), 0700) != 0) return failed("mkdir");
  // From here on the destructor cleans up.
  std::unique_ptr<ScratchDirectory> directory(new ScratchDirectory(session_directory, path));
  if (mkdir(path.c_str(), 0777) != 0) return failed("mkdir scratch in");
  if (chmod(path.c_str(), 0777) != 0) return failed("chmod scratch in");  // past the umask
  return directory;
}

ScratchDirectory::~ScratchDirectory() {
  absl::MutexLock lock(&walk_lock);
  failures = 0;
  // Depth first, without following symlinks or crossing into other filesystems.
  nftw(session_directory_.c_str(), RemoveEntry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  if (failures != 0) {
    fprintf(stderr, "ffiboxd: %d entries of %s were left behind\n", failures,
            session_directory_.c_str());
  }
}

}  // namespace ffibox

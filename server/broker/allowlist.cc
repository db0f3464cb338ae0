#include "server/broker/allowlist.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/errors.h"

namespace ffibox {
namespace {

// realpath(3) of `path`, or the errno that stopped it.
absl::StatusOr<std::string> RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  if (realpath(path.c_str(), resolved) == nullptr) {
    return absl::NotFoundError(strerror(errno));
  }
  return std::string(resolved);
}

bool IsRegularFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

const std::vector<std::string>& SystemLibraryDirectories() {
  static const std::vector<std::string>* directories =
      new std::vector<std::string>{"/lib/x86_64-linux-gnu",
                                   "/usr/lib/x86_64-linux-gnu",
                                   "/lib",
                                   "/usr/lib",
                                   "/lib64",
                                   "/usr/lib64",
                                   "/usr/local/lib"};
  return *directories;
}

absl::StatusOr<std::string> CanonicalLibraryRoot(absl::string_view root) {
  if (root.empty() || root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("library root \"", root, "\" is not an absolute path"));
  }
  absl::StatusOr<std::string> resolved = RealPath(std::string(root));
  if (!resolved.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("library root ", root, ": ", resolved.status().message()));
  }
  struct stat st;
  if (stat(resolved->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("library root ", root, " is not a directory"));
  }
  return resolved;
}

absl::StatusOr<std::shared_ptr<const LibraryAllowlist>> LibraryAllowlist::Create(
    const std::vector<std::string>& roots, bool skip_missing) {
  std::vector<std::string> canonical;
  for (const std::string& root : roots) {
    absl::StatusOr<std::string> resolved = CanonicalLibraryRoot(root);
    if (!resolved.ok()) {
      if (skip_missing) continue;
      return resolved.status();
    }
    // /lib and /usr/lib are one directory on merged-/usr systems: list it once.
    if (std::find(canonical.begin(), canonical.end(), *resolved) == canonical.end()) {
      canonical.push_back(*std::move(resolved));
    }
  }
  return std::shared_ptr<const LibraryAllowlist>(new LibraryAllowlist(std::move(canonical)));
}

bool LibraryAllowlist::Contains(const std::string& resolved) const {
  for (const std::string& root : roots_) {
    if (root == "/") return true;
    if (absl::StartsWith(resolved, root) &&
        (resolved.size() == root.size() || resolved[root.size()] == '/')) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<std::string> LibraryAllowlist::Admit(absl::string_view requested) const {
  std::string candidate(requested);
  if (!candidate.empty() && candidate.front() != '/' && candidate.find('/') != std::string::npos) {
    // `./libx.so` names a file in the caller's directory, which ffiboxd does not know (its
    // own would load another library than the one meant); clients make such paths absolute.
    return InvalidArgumentAt(
        "load_library.path",
        absl::StrCat("\"", requested,
                     "\" is a relative path; give an absolute path or a bare soname"));
  }
  if (candidate.find('/') == std::string::npos) {
    // A bare soname: where the dynamic linker's default search would find it.
    candidate.clear();
    for (const std::string& directory : SystemLibraryDirectories()) {
      std::string path = absl::StrCat(directory, "/", requested);
      if (IsRegularFile(path)) {
        candidate = std::move(path);
        break;
      }
    }
    if (candidate.empty()) {
      return ErrorStatus(v1::LIBRARY_LOAD_FAILED,
                         absl::StrCat(requested, ": not found in the system library directories [",
                                      absl::StrJoin(SystemLibraryDirectories(), ", "), "]"));
    }
  }
  absl::StatusOr<std::string> resolved = RealPath(candidate);
  if (!resolved.ok()) {
    return ErrorStatus(v1::LIBRARY_LOAD_FAILED,
                       absl::StrCat("cannot load ", requested, ": ", resolved.status().message()));
  }
  if (!Contains(*resolved)) {
    std::string shown = *resolved == requested
                            ? *resolved
                            : absl::StrCat(requested, " (resolves to ", *resolved, ")");
    return ErrorStatus(
        v1::LIBRARY_NOT_ALLOWED,
        absl::StrCat(shown, " is outside the allowed roots [", absl::StrJoin(roots_, ", "), "]"));
  }
  return resolved;
}

}  // namespace ffibox

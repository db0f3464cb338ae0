// The library allowlist: which libraries a session may load.
//
// The broker resolves the path a client asked for to the one file the dynamic linker would
// open (a bare soname is searched in the system library directories; relative paths, `..`
// and symlinks are resolved with realpath), checks that this file lies under one of the
// identity's allowed roots, and hands the worker the resolved absolute path, so the check
// and the load agree. Used by Session::LoadLibrary; built once per identity by the service.
#ifndef FFIBOX_SERVER_BROKER_ALLOWLIST_H_
#define FFIBOX_SERVER_BROKER_ALLOWLIST_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// The directories searched for a bare soname, in order; also the default allowed roots.
const std::vector<std::string>& SystemLibraryDirectories();

// Resolves `root` (an absolute directory) with realpath. INVALID_ARGUMENT when it is
// relative, does not exist or is not a directory.
absl::StatusOr<std::string> CanonicalLibraryRoot(absl::string_view root);

class LibraryAllowlist {
 public:
  // An allowlist of `roots`, each resolved by CanonicalLibraryRoot; missing roots are
  // skipped when `skip_missing` (the system directories), else INVALID_ARGUMENT naming it.
  static absl::StatusOr<std::shared_ptr<const LibraryAllowlist>> Create(
      const std::vector<std::string>& roots, bool skip_missing = false);

  // The absolute, symlink-free path of the library `requested` (untrusted, from a client)
  // names, when it lies under an allowed root. LIBRARY_NOT_ALLOWED naming the path and the
  // roots when it does not; LIBRARY_LOAD_FAILED when there is no such file (as dlopen
  // would say).
  absl::StatusOr<std::string> Admit(absl::string_view requested) const;

  // The canonical roots, for messages and for the jail's filesystem view.
  const std::vector<std::string>& roots() const { return roots_; }

 private:
  explicit LibraryAllowlist(std::vector<std::string> roots) : roots_(std::move(roots)) {}

  bool Contains(const std::string& resolved) const;

  std::vector<std::string> roots_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_ALLOWLIST_H_

// A session's scratch directory (OpenSession.scratch_directory): a writable directory on the
// server's host that the session's workers see at the same path.
//
// Layout: <root>/<session id>/ (mode 0700, the server's user only, so other users of the
// host cannot reach the files) holding scratch/ (mode 0777: the worker runs as another uid,
// nobody or a subordinate id, and must be able to create files there). Destroying the object
// removes the whole tree without following symlinks; call it after the session's workers are
// gone. What the server's user may not remove (a directory a worker closed to it, a tree
// deeper than a path can name) goes through find(1) run as the workers' ids, in a user
// namespace mapped as theirs; the destructor waits for it, and other scratch directories'
// removals wait meanwhile. Runs in the broker only.
#ifndef FFIBOX_SERVER_BROKER_SCRATCH_DIRECTORY_H_
#define FFIBOX_SERVER_BROKER_SCRATCH_DIRECTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/jail/jail_options.h"
#include "server/jail/user_namespace.h"

namespace ffibox {

class ScratchDirectory {
 public:
  // Makes sure `root` (an absolute path) exists as a directory of this process's user that
  // others may traverse but not list (0711), creating it when missing. Returns its realpath.
  // INVALID_ARGUMENT when it is not absolute, is not a directory, or belongs to another user.
  static absl::StatusOr<std::string> PrepareRoot(const std::string& root);

  // Creates <root>/<name>/scratch for workers that run as `workers` (the host ids their
  // files belong to: WorkerIds). `root` must come from PrepareRoot; `name` is a session id
  // ([A-Za-z0-9_-]+). RESOURCE_EXHAUSTED / INTERNAL with the errno when it cannot.
  static absl::StatusOr<std::unique_ptr<ScratchDirectory>> Create(const std::string& root,
                                                                  const std::string& name,
                                                                  HostIds workers);

  // The host ids workers of `jail` run as: the user namespace's mapping (WorkerHostIds),
  // else nobody for a root broker, else the broker's own.
  static HostIds WorkerIds(const JailOptions& jail);

  ScratchDirectory(const ScratchDirectory&) = delete;
  ScratchDirectory& operator=(const ScratchDirectory&) = delete;
  // Removes the tree; what cannot be removed is reported on stderr.
  ~ScratchDirectory();

  // The writable directory.
  const std::string& path() const { return path_; }

 private:
  ScratchDirectory(std::string session_directory, std::string path, HostIds workers)
      : session_directory_(std::move(session_directory)),
        path_(std::move(path)),
        workers_(workers) {}

  std::string session_directory_;
  std::string path_;
  HostIds workers_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_SCRATCH_DIRECTORY_H_

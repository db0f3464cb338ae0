// A directory made for one ffiboxd alone (--private_directory): the clients' private servers
// keep their socket, their log (ffiboxd.log) and their scratch root there. The client removes
// it when it stops the server, but a client killed outright never does; the server, which
// outlives it for its shutdown (--exit_with_parent), removes it then.
//
// Only what such a directory holds is removed, never a tree: the file ffiboxd.log, the
// scratch root when it lies directly in the directory and is empty, and then the directory
// itself when nothing else is left in it. Anything else keeps the directory, log included,
// and is reported on stderr. The directory is held open from the start and emptied through
// that descriptor, so a path swapped meanwhile (a symlink, another directory) is not
// followed; the directory itself is removed by name only while that name is still it. Runs
// in the broker only.
#ifndef FFIBOX_SERVER_BROKER_PRIVATE_DIRECTORY_H_
#define FFIBOX_SERVER_BROKER_PRIVATE_DIRECTORY_H_

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace ffibox {

class PrivateDirectory {
 public:
  // The log's name in the directory.
  static constexpr char kLogName[] = "ffiboxd.log";

  // `path` must be an absolute path naming a directory (not a symlink) of this process's
  // user that no one else may enter (no group or other permission bits), holding nothing
  // but the log: INVALID_ARGUMENT naming what is wrong otherwise. `parent` (0: none) is the
  // process the directory is for: once it has gone, the directory is removed whether or not
  // the server served (no one is left to read the log).
  static absl::StatusOr<std::unique_ptr<PrivateDirectory>> Claim(const std::string& path,
                                                                 pid_t parent);

  PrivateDirectory(const PrivateDirectory&) = delete;
  PrivateDirectory& operator=(const PrivateDirectory&) = delete;
  // Removes the directory as above if the server was shutting down (Arm) or its parent has
  // gone; otherwise (a start that failed, with its client waiting) leaves it with its log.
  ~PrivateDirectory();

  // The server's scratch root (realpath'd), removed when it lies directly in the directory.
  void SetScratchRoot(std::string scratch_root) { scratch_root_ = std::move(scratch_root); }

  // Called once the server shuts down after it served.
  void Arm() { armed_.store(true); }

  // Removes the directory now, as the destructor would once armed: for a shutdown that
  // cannot finish (the process ends without destroying anything).
  void RemoveNow() const { Remove(); }

  const std::string& path() const { return path_; }

 private:
  PrivateDirectory(std::string path, int fd, pid_t parent)
      : path_(std::move(path)), fd_(fd), parent_(parent) {}

  // Empties and removes the directory; what it cannot remove, and why, goes to stderr.
  void Remove() const;

  const std::string path_;  // realpath'd
  const int fd_;            // the directory, opened at Claim
  const pid_t parent_;
  std::string scratch_root_;
  std::atomic<bool> armed_{false};
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_PRIVATE_DIRECTORY_H_

// A directory made for one ffiboxd alone (--private_directory): the Python client's private
// server keeps its socket, its log (ffiboxd.log) and its scratch root there. The client
// removes it when it stops the server, but a client killed outright never does; the server,
// which outlives it for its shutdown (--exit_with_parent), removes it then.
//
// Only what such a directory holds is removed, never a tree: the file ffiboxd.log, the
// scratch root when it lies directly in the directory and is empty, and then the directory
// itself when nothing else is left in it. Anything else keeps the directory, log included,
// and is reported on stderr. Runs in the broker only.
#ifndef FFIBOX_SERVER_BROKER_PRIVATE_DIRECTORY_H_
#define FFIBOX_SERVER_BROKER_PRIVATE_DIRECTORY_H_

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
  // user that no one else may enter (no group or other permission bits): INVALID_ARGUMENT
  // naming what is wrong otherwise. `scratch_root` (realpath'd, may be empty) is the server's.
  static absl::StatusOr<std::unique_ptr<PrivateDirectory>> Claim(const std::string& path,
                                                                 std::string scratch_root);

  PrivateDirectory(const PrivateDirectory&) = delete;
  PrivateDirectory& operator=(const PrivateDirectory&) = delete;
  // Removes the directory as above if the server was shutting down (Arm); otherwise (a start
  // that failed after all) leaves it with its log.
  ~PrivateDirectory();

  // Called once the server shuts down after it served.
  void Arm() { armed_.store(true); }

  const std::string& path() const { return path_; }

 private:
  PrivateDirectory(std::string path, std::string scratch_root)
      : path_(std::move(path)), scratch_root_(std::move(scratch_root)) {}

  const std::string path_;          // realpath'd
  const std::string scratch_root_;  // removed only when directly in path_
  std::atomic<bool> armed_{false};
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_PRIVATE_DIRECTORY_H_

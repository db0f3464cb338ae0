// The worker's view of the filesystem: a plan computed by the broker before it clones the
// worker, and its execution in the cloned child (inside the new mount namespace), which
// may only make async-signal-safe calls (the broker is multithreaded), so every path and
// option string is prepared in the plan.
//
// The new root is an empty tmpfs holding, read-only (nosuid, nodev): the system library
// directories (/lib, /lib64, /usr/lib, /usr/lib64, /usr/local/lib, symlinks reproduced as
// symlinks), /etc/ld.so.cache (soname lookups), system data (/usr/share, /etc/localtime),
// and each of JailOptions::visible_paths at its own path (and at its realpath); a writable
// tmpfs /tmp of `tmp_bytes`; JailOptions::scratch_directory read-write (nosuid, nodev,
// noexec) at its own path; /dev with null, zero, full, random and urandom; a fresh /proc
// when the jail has one (libraries are loaded through /proc/self/fd); an empty /empty as
// cwd. The root itself is then remounted read-only. Never the host's "/".
#ifndef FFIBOX_SERVER_JAIL_FILESYSTEM_H_
#define FFIBOX_SERVER_JAIL_FILESYSTEM_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/jail/jail_options.h"

namespace ffibox {

struct FilesystemStep {
  enum Kind {
    kMkdir,         // mkdir `path` (existing is fine)
    kFile,          // create an empty file at `path` (a bind target)
    kSymlink,       // symlink `path` -> `arg`
    kBind,          // bind source `source` at `path`, then read-only/nosuid/nodev (recursive)
    kDeviceBind,    // bind source `source` at `path`, nosuid/noexec (devices must stay usable)
    kWritableBind,  // bind source `source` at `path`, nosuid/nodev/noexec, writable
    kTmpfs,         // mount a tmpfs at `path` with options `arg`
    kProc,          // mount a fresh proc at `path`
  };
  Kind kind;
  std::string path;
  std::string arg;
  int source = -1;        // index into FilesystemPlan::sources
  bool optional = false;  // a failure skips the step instead of failing the view
};

struct FilesystemPlan {
  std::string staging = "/tmp";      // where the new root's tmpfs is built
  std::string new_root;              // the directory that becomes "/"
  std::string cwd;                   // the worker's working directory after pivot_root
  std::string staging_options;       // tmpfs options of the staging mount
  std::vector<std::string> sources;  // bind sources, opened before ids change
  std::vector<int> source_fds;       // filled by the child (preallocated here)
  std::vector<FilesystemStep> steps;
};

// Plans the view for `options` (visible paths resolved with realpath here, in the broker).
// `with_proc`: mount a fresh /proc. INVALID_ARGUMENT when a visible path is not an
// absolute path to an existing directory other than "/".
absl::StatusOr<FilesystemPlan> PlanFilesystem(const JailOptions& options, bool with_proc);

// Where the child's setup stopped.
struct FilesystemFailure {
  int step = -1;  // index into steps, or a negative FilesystemStage
  int error = 0;  // errno
};

enum FilesystemStage {
  kStageMakePrivate = -2,
  kStageOpenSources = -3,
  kStageStaging = -4,
  kStagePivot = -5,
  kStageRemountRoot = -6,
};

// In the child, before its ids change: opens every source (O_PATH), with the broker's
// rights. Async-signal-safe. False with `failure` set on error.
bool OpenFilesystemSources(FilesystemPlan& plan, FilesystemFailure* failure);

// In the child, in its new mount namespace: builds the view and pivots into it; closes the
// sources. Async-signal-safe. Returns false with `failure` set when a required step
// failed.
bool BuildFilesystem(FilesystemPlan& plan, FilesystemFailure* failure);

// Whether step `step` of `plan` mounts /proc (its failure is the proc layer's, not the
// filesystem's).
bool IsProcStep(const FilesystemPlan& plan, int step);

// Describes a failure for logs and --check-jail ("bind /usr/lib: Permission denied").
std::string DescribeFilesystemFailure(const FilesystemPlan& plan, const FilesystemFailure& failure);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_JAIL_FILESYSTEM_H_

// How ffiboxd, ffibox-worker and the other binaries run absl::Mutex.
//
// Debian's Abseil is built without NDEBUG, so by default every absl::Mutex acquisition is
// checked against a process-wide lock-order graph (deadlock detection). gRPC's own locks are
// absl::Mutexes too, and a call takes hundreds of them: measured on this project's machine,
// a pair of nested locks costs 140-260 ns with the check and 25-37 ns without. Tests keep
// the check (they never call this), so a lock-order inversion still fails them.
#ifndef FFIBOX_CORE_MUTEX_MODE_H_
#define FFIBOX_CORE_MUTEX_MODE_H_

namespace ffibox {

// In a build with NDEBUG (-c opt), turns absl::Mutex's deadlock detection off, as a release
// build of Abseil has it; in a debug build, leaves it on. Call once, early in main.
void UseReleaseMutexChecks();

}  // namespace ffibox

#endif  // FFIBOX_CORE_MUTEX_MODE_H_

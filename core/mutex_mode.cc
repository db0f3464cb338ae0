#include "core/mutex_mode.h"

#include "absl/synchronization/mutex.h"

namespace ffibox {

void UseReleaseMutexChecks() {
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

}  // namespace ffibox

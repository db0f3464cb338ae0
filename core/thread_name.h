// Names the calling thread, so that top -H, perf and /proc/<pid>/task/*/comm tell ffibox's
// threads apart (without a name a thread shows its process's name, or gRPC's for threads
// started from gRPC's).
#ifndef FFIBOX_CORE_THREAD_NAME_H_
#define FFIBOX_CORE_THREAD_NAME_H_

#include <thread>

#include "absl/strings/string_view.h"

namespace ffibox {

// Sets the calling thread's name to `name`, cut to the kernel's 15 bytes.
void NameThisThread(absl::string_view name);

// The same for `thread`, from another thread: the name is set when this returns.
void NameThread(std::thread& thread, absl::string_view name);

// How many threads of this process are named `name` now (/proc/self/task/*/comm).
int ThreadsNamed(absl::string_view name);

}  // namespace ffibox

#endif  // FFIBOX_CORE_THREAD_NAME_H_

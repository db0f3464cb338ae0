// Names the calling thread, so that top -H, perf and /proc/<pid>/task/*/comm tell ffibox's
// threads apart (without a name a thread shows its process's name, or gRPC's for threads
// started from gRPC's).
#ifndef FFIBOX_CORE_THREAD_NAME_H_
#define FFIBOX_CORE_THREAD_NAME_H_

#include <functional>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// Runs `body` on a new thread named `name`. RESOURCE_EXHAUSTED, instead of the exception
// std::thread throws, when the system starts no more (the process's or its cgroup's task
// limit, RLIMIT_NPROC, memory): a server's caller gets that error, the server goes on.
absl::StatusOr<std::thread> StartThread(absl::string_view name, std::function<void()> body);

// Sets the calling thread's name to `name`, cut to the kernel's 15 bytes.
void NameThisThread(absl::string_view name);

// The same for `thread`, from another thread: the name is set when this returns.
void NameThread(std::thread& thread, absl::string_view name);

// How many threads of this process are named `name` now (/proc/self/task/*/comm).
int ThreadsNamed(absl::string_view name);

}  // namespace ffibox

#endif  // FFIBOX_CORE_THREAD_NAME_H_

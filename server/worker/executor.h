// Executes broker requests inside ffibox-worker: dlopen, dlsym + cif preparation, calls
// (one at a time, or a batch of them in one request), layouts. Runs in the worker process only; the
// broker never loads a user library.
//
// The broker has validated and wrapped each request; the executor still refuses anything
// inconsistent (unknown handles, bad values) with a typed error instead of crashing, because
// core's marshalling validates every value it touches.
//
// Thread-safe: the main thread runs top-level requests while requests nested in a callback
// invocation run on the thread that invoked the callback (server/worker/dispatcher.h). No
// lock is held while native code runs, so native code may call back and re-enter.
#ifndef FFIBOX_SERVER_WORKER_EXECUTOR_H_
#define FFIBOX_SERVER_WORKER_EXECUTOR_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "core/call.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/protocol/worker_protocol.pb.h"
#include "server/worker/callback_table.h"
#include "server/worker/memory_requests.h"

namespace ffibox {

class WorkerExecutor {
 public:
  // `generation` is stamped on every remote address this worker hands out. `runner` runs
  // callbacks when native code calls them (nullptr: they return zero); it must outlive the
  // executor. `descriptor_fd` is the socket library descriptors arrive on (-1: none; loads
  // then use the path). `limits` cap the types and calls it accepts (the broker's, so both
  // refuse the same requests).
  explicit WorkerExecutor(uint64_t generation, CallbackRunner* runner = nullptr,
                          int descriptor_fd = -1, const TypeLimits& limits = TypeLimits())
      : generation_(generation),
        descriptor_fd_(descriptor_fd),
        limits_(limits),
        callbacks_(generation, limits_, runner),
        memory_(generation, &callbacks_) {}

  // Executes one request and returns its response, with the request's id set. Never fails:
  // errors are carried in Response.error. Callback returns are not requests: UNIMPLEMENTED.
  v1::Response Execute(const internal::WorkerRequest& request);
  // Execute into `*response` (empty; on the caller's arena, say). `shared` is the shared
  // area of the same-host channel a call came on (MemoryBlock.shared_offset); empty for
  // requests from the broker.
  void Execute(const internal::WorkerRequest& request, v1::Response* response,
               absl::Span<char> shared = {});

  // The callbacks this worker defined (for resolving callback ids in callback results).
  const CallbackTable& callbacks() const { return callbacks_; }

  // The descriptor the broker passed for request `tag` on the descriptor socket (others that
  // arrive first are kept for their own requests). Owned by the caller. UNAVAILABLE when
  // there is no socket or it ended.
  absl::StatusOr<int> TakeDescriptor(uint64_t tag);

  // A scalar call of `function` from the same-host channel (PreparedFunction::InvokeScalar):
  // nullopt, nothing run, when the function is not resolved or InvokeScalar does not take
  // the call (Execute then gives the error).
  std::optional<absl::Status> CallScalar(uint64_t function, absl::Span<const ScalarBits> args,
                                         v1::CallResult* result);

  // Makes `response` the answer to a request that failed with `status` (as Execute does).
  static void SetFailure(const absl::Status& status, v1::Response* response);

 private:
  absl::Status LoadLibrary(uint64_t handle, const v1::LoadLibrary& load, uint64_t descriptor_tag);
  absl::StatusOr<v1::FunctionResolved> ResolveFunction(uint64_t handle,
                                                       const v1::ResolveFunction& resolve);
  // Runs `call`, writing its result into `*result` (empty).
  absl::Status Call(const v1::Call& call, v1::CallResult* result, bool report_changed = true,
                    absl::Span<char> shared = {});
  // Runs the calls of `batch` in order, appending each result to `results`; stops at the
  // first that fails and returns its error, naming its index (InBatch). `results` then
  // holds the results of the calls before it.
  absl::Status Batch(const v1::Batch& batch, v1::BatchResult* results);
  absl::StatusOr<v1::LayoutResult> GetLayout(const v1::GetLayout& request);
  absl::StatusOr<v1::SymbolFound> LookupSymbol(const v1::LookupSymbol& request);

  // The resolved function `handle`, or nullptr.
  const PreparedFunction* FindFunction(uint64_t handle);
  // The loaded library handle, or nullptr.
  void* FindLibrary(uint64_t handle);

  const uint64_t generation_;
  const int descriptor_fd_;
  absl::Mutex descriptors_mu_;
  absl::flat_hash_map<uint64_t, int> early_descriptors_ ABSL_GUARDED_BY(descriptors_mu_);
  const TypeLimits limits_;
  // Whether the session's environment has set the character type locale (the first load).
  bool locale_set_ = false;
  CallbackTable callbacks_;
  MemoryRequests memory_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, void*> libraries_ ABSL_GUARDED_BY(mu_);
  // The descriptor path (/proc/self/fd/N) each library file was first loaded by, by its
  // (device, inode): a later load of the file takes that name and closes its own descriptor.
  absl::flat_hash_map<std::pair<dev_t, ino_t>, std::string> descriptor_of_file_
      ABSL_GUARDED_BY(mu_);
  // The descriptor path each library was loaded from ("/proc/self/fd/7"), which the
  // loader's messages name, -> the path the client asked for.
  absl::flat_hash_map<std::string, std::string> loaded_from_ ABSL_GUARDED_BY(mu_);
  // Never erased, so a function stays valid while a call runs without the lock.
  absl::flat_hash_map<uint64_t, std::unique_ptr<PreparedFunction>> functions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_EXECUTOR_H_

// Executes broker requests inside ffibox-worker: dlopen, dlsym + cif preparation, calls,
// layouts. Runs in the worker process only; the broker never loads a user library.
//
// The broker has validated and wrapped each request; the executor still refuses anything
// inconsistent (unknown handles, bad values) with a typed error instead of crashing, because
// core's marshalling validates every value it touches.
#ifndef FFIBOX_SERVER_WORKER_EXECUTOR_H_
#define FFIBOX_SERVER_WORKER_EXECUTOR_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "core/call.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/remote_memory.h"
#include "server/worker_protocol.pb.h"

namespace ffibox {

class WorkerExecutor {
 public:
  // `generation` is stamped on every remote address this worker hands out.
  explicit WorkerExecutor(uint64_t generation) : generation_(generation), memory_(generation) {}

  // Executes one request and returns its response, with the request's id set. Never fails:
  // errors are carried in Response.error.
  v1::Response Execute(const internal::WorkerRequest& request);

 private:
  absl::Status LoadLibrary(uint64_t handle, const v1::LoadLibrary& load);
  absl::StatusOr<v1::FunctionResolved> ResolveFunction(uint64_t handle,
                                                       const v1::ResolveFunction& resolve);
  absl::StatusOr<v1::CallResult> Call(const v1::Call& call);
  absl::StatusOr<v1::LayoutResult> GetLayout(const v1::GetLayout& request);
  absl::StatusOr<v1::SymbolFound> LookupSymbol(const v1::LookupSymbol& request);

  const uint64_t generation_;
  TypeLimits limits_;
  RemoteMemory memory_;
  absl::flat_hash_map<uint64_t, void*> libraries_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<PreparedFunction>> functions_;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_EXECUTOR_H_

// An untyped function handle of a client session: call it with proto `Call` messages.
//
// Returned by `Library::Resolve` for signatures known only at run time (the CLI, variadic
// functions); `TypedFunction` wraps one for calls checked by the C++ compiler. The handle
// survives worker restarts (the server re-resolves it); it fails cleanly once its session
// is closed.
#ifndef FFIBOX_CLIENT_CPP_RAW_FUNCTION_H_
#define FFIBOX_CLIENT_CPP_RAW_FUNCTION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cpp/internal/borrowed_block.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Converts a call deadline to the protocol's milliseconds: 0 for none, rounded up, capped.
uint32_t TimeoutMillis(absl::Duration timeout);

class RawFunction {
 public:
  // Wraps the handle `handle` that the server returned for `symbol` resolved as `signature`.
  RawFunction(std::shared_ptr<client_internal::SessionStream> stream,
              std::shared_ptr<client_internal::MemoryOps> memory, uint64_t handle,
              std::string symbol, v1::Signature signature, RemotePtr address);

  // Calls the function with `call` (its `function` field is filled in, and `options` override
  // `timeout_ms` and `set_errno` when set); returns the typed error of a failed call
  // (WORKER_CRASHED, CALL_TIMEOUT, ...). Remote pointers in the result carry the generation
  // of the worker that answered. `borrowed` names blocks of `call` whose bytes are still in
  // the caller's memory (the typed call's large Buffers); they must outlive the call.
  absl::StatusOr<v1::CallResult> Call(v1::Call call, const CallOptions& options = {},
                                      client_internal::BorrowedBlocks borrowed = {}) const;

  // Fills in `call`'s function handle, and the deadline and errno of `options` when set, as
  // Call does before it sends (a Batch does it for each of its calls).
  void PrepareCall(v1::Call& call, const CallOptions& options) const;

  // The server's function handle.
  uint64_t handle() const { return handle_; }
  // The symbol this handle was resolved from.
  const std::string& symbol() const { return symbol_; }
  // The signature the function was resolved with.
  const v1::Signature& signature() const { return signature_; }
  // The function's address in the worker that resolved it.
  RemotePtr address() const { return address_; }
  // The session stream the handle belongs to.
  client_internal::SessionStream& stream() const { return *stream_; }
  // The session's memory operations (for follow-up requests such as reading a char* result).
  client_internal::MemoryOps& memory() const { return *memory_; }

 private:
  std::shared_ptr<client_internal::SessionStream> stream_;
  std::shared_ptr<client_internal::MemoryOps> memory_;
  uint64_t handle_;
  std::string symbol_;
  v1::Signature signature_;
  RemotePtr address_;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_RAW_FUNCTION_H_

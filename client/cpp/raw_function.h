// An untyped function handle of a client session: call it with proto `Call` messages.
//
// Returned by `Library::Resolve` (or `ResolveAsync`, without waiting for the answer) for
// signatures known only at run time (the CLI, variadic functions), and by
// `Session::ResolveAt` for a function pointer; `TypedFunction` wraps one for calls checked by
// the C++ compiler. A handle resolved by name survives worker restarts (the server
// re-resolves it); one resolved at an address is bound to that worker generation. It fails
// cleanly once its session is closed.
#ifndef FFIBOX_CLIENT_CPP_RAW_FUNCTION_H_
#define FFIBOX_CLIENT_CPP_RAW_FUNCTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "client/cpp/internal/borrowed_block.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/pending_handle.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Converts a call deadline to the protocol's milliseconds: 0 for none, rounded up, capped at
// the protocol's largest (a server refuses a deadline past its own maximum, 24 h by default, with
// INVALID_ARGUMENT). Calls and sessions refuse a negative one before this.
uint32_t TimeoutMillis(absl::Duration timeout);

class RawFunction {
 public:
  // Wraps the handle `handle` that the server returned for `symbol` resolved as `signature`.
  RawFunction(std::shared_ptr<client_internal::SessionStream> stream,
              std::shared_ptr<client_internal::MemoryOps> memory, uint64_t handle,
              std::string symbol, v1::Signature signature, RemotePtr address);
  // Wraps the handle the server assigns in its answer to a resolve (of `symbol` as
  // `signature`) that may still be in flight (Library::ResolveAsync).
  RawFunction(std::shared_ptr<client_internal::SessionStream> stream,
              std::shared_ptr<client_internal::MemoryOps> memory,
              std::shared_ptr<const client_internal::PendingHandle> handle, std::string symbol,
              v1::Signature signature);

  // Calls the function with `call` (PrepareCall names the function, and `options` override
  // `timeout_ms` and `set_errno` when set); returns the typed error of a failed call
  // (WORKER_CRASHED, CALL_TIMEOUT, ...), or for a function from ResolveAsync whose resolve
  // failed, that failure (SYMBOL_NOT_FOUND, or the load's LIBRARY_LOAD_FAILED, ...). Remote
  // pointers in the result carry the generation of the worker that answered. `borrowed` names
  // blocks of `call` whose bytes are still in the caller's memory (the typed call's large Buffers);
  // they must outlive the call.
  absl::StatusOr<v1::CallResult> Call(v1::Call call, const CallOptions& options = {},
                                      client_internal::BorrowedBlocks borrowed = {}) const;

  // The result of CallScalar: the result as Call returns it, for any answer other than the
  // one shape read from its bytes; else (read()) the call's scalar result (nullopt: none).
  struct ScalarResult {
    std::optional<v1::CallResult> result;
    std::optional<client_internal::ScalarBits> scalar;

    bool read() const { return !result.has_value(); }
  };
  // Calls the function with `args`, all scalars, through the same-host channel with the
  // request and its answer in protobuf's wire format (SessionStream::CallScalarLocally);
  // errors as Call's. nullopt, and nothing sent, when the call cannot go that way (no
  // channel, a handle whose resolve is not answered yet, `options.set_errno`, a variadic
  // function): Call sends it.
  std::optional<absl::StatusOr<ScalarResult>> CallScalar(
      absl::Span<const client_internal::ScalarBits> args, const CallOptions& options) const;

  // Fills in `call`'s function handle (or, while a ResolveAsync's answer has not come, the
  // resolve's request id: Call.function_request), and the deadline and errno of `options`
  // when set, as Call does before it sends (a Batch does it for each of its calls).
  void PrepareCall(v1::Call& call, const CallOptions& options) const;

  // Waits for the resolve's answer (at once for a handle from Resolve): OK, or its failure.
  absl::Status Wait() const;
  // The server's function handle. For a function from ResolveAsync this waits for the
  // resolve's answer, without a deadline, and is 0 if the resolve failed (Wait says why).
  uint64_t handle() const { return handle_->handle(); }
  // The symbol this handle was resolved from.
  const std::string& symbol() const { return symbol_; }
  // The signature the function was resolved with.
  const v1::Signature& signature() const { return signature_; }
  // The function's address in the worker that resolved it. Waits as handle() does; null if
  // the resolve failed.
  RemotePtr address() const;
  // The session stream the handle belongs to.
  client_internal::SessionStream& stream() const { return *stream_; }
  // The session's memory operations (for follow-up requests such as reading a char* result).
  client_internal::MemoryOps& memory() const { return *memory_; }
  // The handle and the resolve's answer, shared by the copies of this function.
  const std::shared_ptr<const client_internal::PendingHandle>& pending() const { return handle_; }

 private:
  std::shared_ptr<client_internal::SessionStream> stream_;
  std::shared_ptr<client_internal::MemoryOps> memory_;
  std::shared_ptr<const client_internal::PendingHandle> handle_;
  std::string symbol_;
  v1::Signature signature_;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_RAW_FUNCTION_H_

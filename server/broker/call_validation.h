// The broker's checks of a client's call, and of a batch of calls, against the session's
// function handles: run by the session before it forwards a call or a batch to the worker.
// One call of a batch is checked by exactly the code that checks a single call; what passes
// is described as the PendingRequest the worker's reply is checked against
// (server/broker/worker_reply.h).
//
// Pure functions over the session's state: no processes, no I/O. The session calls them
// under its lock.
#ifndef FFIBOX_SERVER_BROKER_CALL_VALIDATION_H_
#define FFIBOX_SERVER_BROKER_CALL_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/handle_table.h"
#include "server/broker/pending_request.h"

namespace ffibox {

// What a session knows when it checks calls.
struct CallContext {
  const HandleTable* handles = nullptr;
  // The generation of the session's live worker, 0 when none is alive: a function resolved
  // by address is callable only in its own generation.
  uint64_t live_generation = 0;
  absl::Duration default_timeout;  // the session's call deadline
  absl::Duration max_timeout;      // the server's largest deadline
  const TypeLimits* limits = nullptr;
};

// Checks the untrusted `call`: its function handle (NOT_FOUND; STALE_HANDLE for a function
// resolved by address in a worker that is gone), its deadline (INVALID_ARGUMENT
// "call.timeout_ms" past context.max_timeout) and its shape against the function's
// signature (ValidateCallShape). On success sets `pending`'s label, timeout, required
// generation and the expected result (`pending->call`); the caller sets the rest.
absl::Status ValidateCallRequest(const v1::Call& call, const CallContext& context,
                                 PendingRequest* pending);

// Checks the untrusted `batch`: its size and its blocks' total (ValidateBatchShape), its
// deadline (INVALID_ARGUMENT "batch.timeout_ms" past context.max_timeout), and every call as
// ValidateCallRequest checks one; the first refusal is returned naming its call
// (InBatch: "batch.calls[i]...", Error.batch_index). On success sets `pending`'s label
// ("batch of 3 calls: add_int, ..."), timeout (batch.timeout_ms, else the sum of the calls'
// deadlines capped at context.max_timeout), required generation, batch_calls and
// batch_blocks; the caller sets the rest.
absl::Status ValidateBatchRequest(const v1::Batch& batch, const CallContext& context,
                                  PendingRequest* pending);

// A call, or a batch's calls, may name its function by the id of the resolve request that
// made it (Call.function_request, pipelining). Whether `request` does so.
bool NamesRequestedFunctions(const v1::Request& request);
// Replaces each such name in `request` by the function handle (`function` set,
// `function_request` cleared). NOT_FOUND when no accepted resolve request has that id or
// its resolve failed (HandleTable::FunctionOfRequest); INVALID_ARGUMENT for a call that sets
// both `function` and `function_request`. Errors in a batch name their call (InBatch).
absl::Status NameRequestedFunctions(v1::Request& request, const HandleTable& handles);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_CALL_VALIDATION_H_

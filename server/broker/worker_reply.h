// The trust boundary for what a worker sends. The worker runs untrusted code, so every frame
// is hostile until checked: ParseWorkerFrame checks its envelope, then exactly one of
// CheckWorkerResponse (against the request it claims to answer), CheckCallbackInvoke
// (core/call_answer.h, against the callback's signature) or CheckWorkerEvent checks its
// content. The broker
// (WorkerConnection::Receive, then Session::AcceptReply) applies them in that order and
// nothing else reads a worker frame.
#ifndef FFIBOX_SERVER_BROKER_WORKER_REPLY_H_
#define FFIBOX_SERVER_BROKER_WORKER_REPLY_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/encoding_limits.h"
#include "core/framing.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/pending_request.h"
#include "server/protocol/worker_protocol.pb.h"

namespace ffibox {

// Parses one frame from the worker and checks its envelope: exactly one of `response`,
// `invoke` and `event` is set. INVALID_ARGUMENT otherwise (the caller kills the worker).
absl::StatusOr<internal::WorkerReply> ParseWorkerFrame(absl::string_view frame);
// The same for a frame in pieces, freeing each piece once the parse has taken it. A frame of
// more than kShapeCheckedBytes is first checked against what `limits()` allows
// (CheckAnswerShape, core/encoding_limits.h), so that it is parsed only when it holds no more
// than what may answer the requests in flight: INVALID_ARGUMENT otherwise.
absl::StatusOr<internal::WorkerReply> ParseWorkerFrame(FramePayload frame,
                                                       absl::FunctionRef<AnswerLimits()> limits);

// Checks `response` (from a parsed frame) as the answer to `expected`, the request in flight whose
// sequence number it carries. Checks that it answers that request, carries either an error a worker
// may report (CheckWorkerError, core/call_answer.h) or the result kind the operation produces,
// names the assigned handle, returns only blocks the call sent as OUT/INOUT with their exact sizes,
// reports pointers in them only at increasing 8-aligned offsets with the word inside the block and
// the target inside a block of the call, reports each kept block once in order, answers a batch
// with one call result per call, each checked as a call's against that call's blocks (with an
// error, only a batch may carry a result: the results of the calls before the failed one, which
// Error.batch_index names; an error naming a call carries them), and answers read_memory with
// exactly the bytes asked for (untyped) or a value and no data (typed; a raw value of the type's
// size). Returns the response with the client's id, or INVALID_ARGUMENT describing the violation
// (the caller kills the worker).
absl::StatusOr<v1::Response> CheckWorkerResponse(v1::Response response,
                                                 const PendingRequest& expected);

// Checks an event frame: the worker may only report CALLBACK_ERROR, with a known error code.
absl::Status CheckWorkerEvent(const v1::SessionEvent& event);

// The largest event a worker may send (CheckWorkerEvent).
inline constexpr size_t kMaxWorkerEventBytes = 64 * 1024;

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_WORKER_REPLY_H_

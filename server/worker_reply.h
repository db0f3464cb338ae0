// Parsing of the frames a worker sends. The worker runs untrusted code, so every frame is
// hostile until ParseWorkerReply has checked it against the request it claims to answer.
#ifndef FFIBOX_SERVER_WORKER_REPLY_H_
#define FFIBOX_SERVER_WORKER_REPLY_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/pending_request.h"

namespace ffibox {

// Parses `frame` as the answer to `expected` (the oldest request in flight). Checks that it
// answers that request, carries either an error with a known code or the result kind the
// operation produces, names the assigned handle, returns only blocks the call sent as
// OUT/INOUT with their exact sizes, reports pointers in them only at increasing 8-aligned
// offsets with the word inside the block and the target inside a block of the call, and
// answers read_memory with exactly the bytes asked for (untyped) or a value and no data
// (typed; a raw value of the type's size). Returns the response with the client's id, or
// INVALID_ARGUMENT describing the violation (the caller kills the worker).
absl::StatusOr<v1::Response> ParseWorkerReply(absl::string_view frame,
                                              const PendingRequest& expected);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_WORKER_REPLY_H_

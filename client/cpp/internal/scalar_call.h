// Scalar calls in protobuf's wire format, for the same-host channel (client/cpp/internal/
// local_path.h): a call of a function whose parameters are all scalars is written as the bytes
// of its `Request` without building the message, and the answer of the one shape such a call
// gets (its id, the worker's generation, a `CallResult` holding a scalar `Value` or nothing)
// is read from its bytes. The worker parses the request as any other: these are the bytes
// protobuf writes for that `Request`. Any other answer (an error, a callback's invocation, a
// result with more in it, the same fields in another order or encoding) is not read here: the
// caller parses and checks it as any answer.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_SCALAR_CALL_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_SCALAR_CALL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "client/cpp/internal/scalar_codec.h"
#include "core/scalar_wire.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// A top-level call whose arguments are all scalars: Call{function, args, timeout_ms}.
struct ScalarCall {
  uint64_t function = 0;
  uint32_t timeout_ms = 0;  // 0: the session's
  absl::Span<const ScalarBits> args;
};

// The most bytes EncodeScalarCall writes for a call of `args` arguments.
constexpr size_t ScalarCallBytesAtMost(size_t args) { return 48 + 13 * args; }

// How many bytes EncodeScalarCall writes for Request{id, call}.
size_t ScalarCallBytes(uint64_t id, const ScalarCall& call);

// Writes Request{id, call} in protobuf's wire format (the bytes SerializeAsString gives for
// ScalarCallRequest(id, call)) at `out`, which holds ScalarCallBytesAtMost(call.args.size())
// bytes; returns how many it wrote.
size_t EncodeScalarCall(uint64_t id, const ScalarCall& call, char* out);

// The same request as a message.
v1::Request ScalarCallRequest(uint64_t id, const ScalarCall& call);

// Whether `answer` is Response{id, generation, call{result}} with this `id`, exactly as
// protobuf writes it (fields in order, each once, nothing else), where `result` is absent or
// a Value holding one scalar (a bool of 0 or 1, an integer, a double). Sets `*result` to that
// scalar, or to nullopt when the call returned none. False, `*result` untouched, for any other
// answer.
bool ReadScalarAnswer(absl::string_view answer, uint64_t id, std::optional<ScalarBits>* result);

// A handler's answer to a scalar invocation (core/scalar_wire.h's ScalarInvoke): its result
// (none for a callback returning void), or, when `error` is not empty, why it failed
// (native code then gets zero).
struct ScalarReturn {
  std::optional<ScalarBits> result;
  std::string error;
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_SCALAR_CALL_H_

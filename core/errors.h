// Typed ffibox errors carried in absl::Status.
//
// Every ffibox failure is an `absl::Status` whose payload holds the full public
// `ffibox.v1.Error` (code, message, field path, signal, ...). Core, server and clients use
// these helpers so there is one mapping between absl codes and the public ErrorCode.
#ifndef FFIBOX_CORE_ERRORS_H_
#define FFIBOX_CORE_ERRORS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {

// Returns a non-OK status carrying `error` (whose code must not be ERROR_CODE_UNSPECIFIED).
absl::Status ErrorStatus(const v1::Error& error);

// Returns a non-OK status with the given public code and message.
absl::Status ErrorStatus(v1::ErrorCode code, absl::string_view message);

// RESOURCE_EXHAUSTED for a request inside callback invocation `invocation`, nested `depth`
// deep, past the server's `limit` (--max_callback_depth): the broker's answer, and the
// worker's on a same-host channel.
absl::Status InvocationTooDeep(uint64_t invocation, int depth, int limit);

// Returns INVALID_ARGUMENT naming `field`, the path of the offending part of a request
// (e.g. "call.args[1]"). The message is prefixed with the path.
absl::Status InvalidArgumentAt(absl::string_view field, absl::string_view message);

// Returns `status` with `prefix` prepended to its field path (and message), so nested
// validators can report "call.args[2].elements[0]" without knowing their parents.
absl::Status PrefixField(const absl::Status& status, absl::string_view prefix);

// The public error for a non-OK status. A status that did not come from ErrorStatus is
// mapped from its absl code (INTERNAL when there is no closer match).
v1::Error ToProtoError(const absl::Status& status);

// `text` with every byte that does not start a well-formed UTF-8 sequence written as `\xNN`:
// fit for a proto string field (ErrorStatus applies it to a message and its field).
std::string ValidUtf8(absl::string_view text);

// The public code of a status (ERROR_CODE_UNSPECIFIED for OK).
v1::ErrorCode ErrorCodeOf(const absl::Status& status);

// The absl code used for a public code.
absl::StatusCode AbslCodeFor(v1::ErrorCode code);

}  // namespace ffibox

#endif  // FFIBOX_CORE_ERRORS_H_

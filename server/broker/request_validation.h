// Checks of client requests that need no worker: run by the broker before anything is
// forwarded, so a malformed request is refused precisely and never reaches a worker.
// Per-value checks (does this value fit that C type?) happen in the worker's marshalling,
// which validates everything it touches.
#ifndef FFIBOX_SERVER_BROKER_REQUEST_VALIDATION_H_
#define FFIBOX_SERVER_BROKER_REQUEST_VALIDATION_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "core/call_shape.h"  // ValidateCallShape, the call message's validator
#include "core/types.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/pending_request.h"

namespace ffibox {

inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr size_t kMaxSymbolBytes = 1024;

// A library path: non-empty, at most kMaxPathBytes, no NUL byte.
absl::Status ValidateLoadLibrary(const v1::LoadLibrary& load);

// OK when every variable of `open.environment` has a well-formed name matching one of
// `allowed` (names or shell globs), there are at most kMaxEnvironmentVariables and no value
// exceeds kMaxEnvironmentValueBytes or holds a NUL; INVALID_ARGUMENT naming the variable
// otherwise.
inline constexpr int kMaxEnvironmentVariables = 64;
inline constexpr size_t kMaxEnvironmentValueBytes = 4096;
absl::Status ValidateEnvironment(const v1::OpenSession& open,
                                 const std::vector<std::string>& allowed);

// A signature (types within `limits`) and exactly one target: `library` + `symbol`, or
// `address` (a function pointer the library returned; then library is 0 and symbol empty).
absl::Status ValidateResolveFunction(const v1::ResolveFunction& resolve, const TypeLimits& limits);

// A symbol lookup: symbol name, and the type to read it as when one is given.
absl::Status ValidateLookupSymbol(const v1::LookupSymbol& lookup, const TypeLimits& limits);

// A callback definition: a valid signature within `limits`, not variadic (libffi closures
// have fixed parameters), buffer_bytes at most kMaxCallbackBufferBytes.
absl::Status ValidateDefineCallback(const v1::DefineCallback& define, const TypeLimits& limits);

// The client's answer to an invocation of a callback with `signature`: without `error`, a
// result whose kind fits the result type (absent exactly when the callback returns void);
// pointee write-backs only for the (argument, size) pairs `shipped` with the invoke, each
// at most once and exactly that size. With `error`, the result is ignored.
absl::Status ValidateCallbackReturn(const v1::CallbackReturn& answer,
                                    const v1::Signature& signature,
                                    const std::vector<std::pair<uint32_t, uint64_t>>& shipped);

// The operation name of a remote-memory request, for errors ("read_memory").
std::string MemoryOperationName(const v1::Request& request);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_REQUEST_VALIDATION_H_

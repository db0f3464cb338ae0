// One call of a typed function (TypedFunction<R(A...)>, typed_function.h), start to end: the
// C++ arguments appended to a Call (arg_traits.h), the call sent through the RawFunction,
// OUT/INOUT client memory copied back, errno checked and the result decoded
// (result_traits.h; a char* result that comes back as a worker address is read with the
// session's MemoryOps). A Batch (batch.h) uses the same steps for each of its calls.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_TYPED_CALL_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_TYPED_CALL_H_

#include <array>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "client/cpp/internal/arg_traits.h"
#include "client/cpp/internal/call_builder.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/scalar_codec.h"
#include "client/cpp/raw_function.h"
#include "client/cpp/values.h"
#include "core/errors.h"
#include "core/status_macros.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// Appends argument `index` of C++ type Arg; an INVALID_ARGUMENT names it "call.args[index]".
template <typename Arg>
absl::Status AppendArg(typename ArgTraits<Arg>::Param arg, CallBuilder& builder, int index) {
  absl::Status status = ArgTraits<Arg>::Append(arg, builder);
  if (status.ok()) return status;
  return PrefixField(status, absl::StrCat("call.args[", index, "]"));
}

// Appends the C++ arguments `args` of parameters A... to `builder`, in order; the first
// INVALID_ARGUMENT is returned naming its argument ("call.args[i]").
template <typename... A>
absl::Status AppendArgs(CallBuilder& builder, typename ArgTraits<A>::Param... args) {
  builder.call().mutable_args()->Reserve(static_cast<int>(sizeof...(A)));
  absl::Status status;
  int index = 0;
  (void)((status = AppendArg<A>(args, builder, index++)).ok() && ...);
  return status;
}

// The typed outcome of a call's result value (null: none) with `error_number`: as
// DecodeTypedResult.
template <typename R>
absl::StatusOr<WithErrno<typename ResultTraits<R>::Value>> DecodeTypedValue(const v1::Value* result,
                                                                            int error_number,
                                                                            absl::string_view what,
                                                                            MemoryOps& memory) {
  using Value = typename ResultTraits<R>::Value;
  if constexpr (std::is_void_v<Value>) {
    return WithErrno<void>{error_number};
  } else {
    if (result == nullptr) {
      return ErrorStatus(v1::INTERNAL, absl::StrCat("the server returned no result for ", what));
    }
    FFIBOX_ASSIGN_OR_RETURN(Value value, ResultTraits<R>::Decode(*result, memory.StringReader()));
    return WithErrno<Value>{std::move(value), error_number};
  }
}

// The typed outcome of a call's `result` (its blocks already copied back): the result
// decoded as R (a char* that came back as a worker address is read with `memory`) with the
// worker's errno. INTERNAL if `capture_errno` asked for errno and the server did not report
// it, or if a result R needs is missing (`what` names the call in that error).
template <typename R>
absl::StatusOr<WithErrno<typename ResultTraits<R>::Value>> DecodeTypedResult(
    const v1::CallResult& result, bool capture_errno, absl::string_view what, MemoryOps& memory) {
  if (capture_errno && !result.has_errno_value()) {
    return ErrorStatus(v1::INTERNAL, "the server did not report errno for capture_errno");
  }
  const int error_number = result.has_errno_value() ? result.errno_value() : 0;
  return DecodeTypedValue<R>(result.has_result() ? &result.result() : nullptr, error_number, what,
                             memory);
}

// Whether TypedFunction<R(A...)> is called with scalars only (CallTyped then sends it as a
// scalar call where it can: RawFunction::CallScalar).
template <typename R, typename... A>
inline constexpr bool kScalarOnly = (std::is_void_v<R> || kIsScalar<R>)&&(kIsScalar<A>&&...);

// Calls `raw` (resolved with SignatureOf<R, A...>()) with `args` and `options`; returns the
// result with the worker's errno after the call (INTERNAL if `capture_errno` asked for it and
// the server did not report it), the call's typed error, or INTERNAL for an answer that does
// not fit R or the blocks the call sent.
template <typename R, typename... A>
absl::StatusOr<WithErrno<typename ResultTraits<R>::Value>> CallTyped(
    const RawFunction& raw, const CallOptions& options, bool capture_errno,
    typename ArgTraits<A>::Param... args) {
  if constexpr (kScalarOnly<R, A...>) {
    if (!capture_errno) {
      const std::array<ScalarBits, sizeof...(A)> scalars = {ScalarBitsOf<A>(args)...};
      std::optional<absl::StatusOr<RawFunction::ScalarResult>> fast =
          raw.CallScalar(scalars, options);
      if (fast.has_value()) {
        if (!fast->ok()) return fast->status();
        if (!(*fast)->read()) {
          // Any other answer, parsed and checked: as the general way decodes it.
          return DecodeTypedResult<R>(*(*fast)->result, false, raw.symbol(), raw.memory());
        }
        v1::Value value;
        if ((*fast)->scalar.has_value()) SetScalarBits(*(*fast)->scalar, &value);
        return DecodeTypedValue<R>((*fast)->scalar.has_value() ? &value : nullptr, 0, raw.symbol(),
                                   raw.memory());
      }
    }
  }
  CallBuilder builder;
  FFIBOX_RETURN_IF_ERROR(AppendArgs<A...>(builder, args...));
  builder.call().set_capture_errno(capture_errno);
  FFIBOX_ASSIGN_OR_RETURN(v1::CallResult result,
                          raw.Call(std::move(builder.call()), options, builder.borrowed()));
  FFIBOX_RETURN_IF_ERROR(builder.ApplyBlocks(result, raw.stream().generation()));
  return DecodeTypedResult<R>(result, capture_errno, raw.symbol(), raw.memory());
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_TYPED_CALL_H_

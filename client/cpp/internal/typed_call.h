// One call of a typed function (TypedFunction<R(A...)>, typed_function.h), start to end: the
// C++ arguments appended to a Call (arg_traits.h), the call sent through the RawFunction,
// OUT/INOUT client memory copied back, errno checked and the result decoded
// (result_traits.h; a char* result that comes back as a worker address is read with the
// session's MemoryOps). A Batch (batch.h) uses the same steps for each of its calls.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_TYPED_CALL_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_TYPED_CALL_H_

#include <array>
#include <cstddef>
#include <optional>
#include <string>
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

// The C type a variadic argument of C++ type V (decayed) is passed as, by C's default
// argument promotions: bool, the characters and the integers (and enums) narrower than int as
// int, float as double, the other scalars (enums among them) as they are; char strings (`const
// char*`, `std::string`, `absl::string_view`) as char*, `const wchar_t*` as wchar_t*, RemotePtr,
// void* and nullptr as void*. Other types (records, client memory) have none: they cannot be passed
// so.
template <typename V>
inline constexpr bool kPromotedToInt = (std::is_integral_v<V> || std::is_enum_v<V>)&&sizeof(V) <
                                       sizeof(int);
template <typename V, typename Enable = void>
struct VariadicPromotion {};
template <typename V>
struct VariadicPromotion<V, std::enable_if_t<kIsScalar<V> && kPromotedToInt<V>>> {
  using type = int;
};
template <typename V>
struct VariadicPromotion<
    V, std::enable_if_t<kIsScalar<V> && !std::is_same_v<V, float> && !kPromotedToInt<V>>> {
  using type = V;
};
template <>
struct VariadicPromotion<float> {
  using type = double;
};
template <>
struct VariadicPromotion<const char*> {
  using type = const char*;
};
template <>
struct VariadicPromotion<char*> {
  using type = const char*;
};
template <>
struct VariadicPromotion<std::string> {
  using type = absl::string_view;
};
template <>
struct VariadicPromotion<absl::string_view> {
  using type = absl::string_view;
};
template <>
struct VariadicPromotion<const wchar_t*> {
  using type = const wchar_t*;
};
template <>
struct VariadicPromotion<wchar_t*> {
  using type = const wchar_t*;
};
template <>
struct VariadicPromotion<RemotePtr> {
  using type = RemotePtr;
};
template <>
struct VariadicPromotion<void*> {
  using type = RemotePtr;
};
template <>
struct VariadicPromotion<const void*> {
  using type = RemotePtr;
};
template <>
struct VariadicPromotion<std::nullptr_t> {
  using type = RemotePtr;
};

template <typename V, typename Enable = void>
inline constexpr bool kIsVariadicArg = false;
template <typename V>
inline constexpr bool kIsVariadicArg<V, std::void_t<typename VariadicPromotion<V>::type>> = true;

// Appends variadic argument `index` of C++ type V as its promoted C type, and that type to
// the call's variadic_types.
template <typename V>
absl::Status AppendVariadicArg(CallBuilder& builder, int index, V&& value) {
  using Decayed = std::decay_t<V>;
  static_assert(kIsVariadicArg<Decayed>,
                "ffibox: a variadic argument is a scalar, a char or wchar_t string, or a "
                "RemotePtr (client/cpp/typed_function.h)");
  using Promoted = typename VariadicPromotion<Decayed>::type;
  *builder.call().add_variadic_types() = ArgTraits<Promoted>::Type();
  return AppendArg<Promoted>(static_cast<Promoted>(std::forward<V>(value)), builder, index);
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

// A typed call the general way: `append(builder)` adds the arguments to the call, which is
// sent through `raw`; OUT/INOUT client memory is copied back and the result decoded as R.
template <typename R, typename Append>
absl::StatusOr<WithErrno<typename ResultTraits<R>::Value>> CallTypedWith(const RawFunction& raw,
                                                                         const CallOptions& options,
                                                                         bool capture_errno,
                                                                         Append&& append) {
  CallBuilder builder;
  FFIBOX_RETURN_IF_ERROR(append(builder));
  builder.call().set_capture_errno(capture_errno);
  FFIBOX_ASSIGN_OR_RETURN(v1::CallResult result,
                          raw.Call(std::move(builder.call()), options, builder.borrowed()));
  FFIBOX_RETURN_IF_ERROR(builder.ApplyBlocks(result, raw.stream().generation()));
  return DecodeTypedResult<R>(result, capture_errno, raw.symbol(), raw.memory());
}

// A typed call's outcome without the errno: its status for a void result, else the value.
template <typename Value>
std::conditional_t<std::is_void_v<Value>, absl::Status, absl::StatusOr<Value>> WithoutErrno(
    absl::StatusOr<WithErrno<Value>> outcome) {
  if constexpr (std::is_void_v<Value>) {
    return outcome.status();
  } else {
    if (!outcome.ok()) return outcome.status();
    return std::move(outcome->value);
  }
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
  return CallTypedWith<R>(raw, options, capture_errno,
                          [&](CallBuilder& builder) { return AppendArgs<A...>(builder, args...); });
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_TYPED_CALL_H_

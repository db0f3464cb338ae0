// A function of a remote library called with C++ types: `TypedFunction<double(double)>`.
//
// Created by `Library::Function<Sig>(symbol)`, which resolves the symbol with the signature
// derived from `Sig` (see `ffibox_client.h` for the type table), or by
// `Library::FunctionAsync<Sig>`, which does not wait for the resolve's answer. Calling it marshals
// the arguments, sends one Call on the session stream, copies OUT/INOUT client memory back and
// decodes the result. Every call returns `absl::StatusOr<T>` (`absl::Status` for void); a
// crash, timeout or sandbox kill of the worker is a typed error (`ErrorOf(status)`).
// Copyable and thread-safe; calls from several threads are pipelined on the stream.
#ifndef FFIBOX_CLIENT_CPP_TYPED_FUNCTION_H_
#define FFIBOX_CLIENT_CPP_TYPED_FUNCTION_H_

#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cpp/internal/arg_traits.h"
#include "client/cpp/internal/layout_verifier.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/signature.h"
#include "client/cpp/internal/typed_call.h"
#include "client/cpp/raw_function.h"
#include "client/cpp/values.h"

namespace ffibox {

template <typename Signature>
class TypedFunction;

// The spelling used in declarations: `ffibox::Function<int(int, int)> add = ...;`.
template <typename Signature>
using Function = TypedFunction<Signature>;

template <typename R, typename... A>
class TypedFunction<R(A...)> {
 public:
  // What a successful call yields: the result (RemotePtr for pointers, std::string for
  // char*), or nothing for void.
  using Value = typename client_internal::ResultTraits<R>::Value;
  // What a call returns.
  using Result = std::conditional_t<std::is_void_v<Value>, absl::Status, absl::StatusOr<Value>>;

  // The protocol signature of R(A...).
  static v1::Signature Signature() { return client_internal::SignatureOf<R, A...>(); }

  // Checks once per session that the worker lays out every record of the signature as C++
  // does (records.h); FAILED_PRECONDITION on a mismatch. Library::Function does this.
  static absl::Status VerifyLayouts(client_internal::LayoutVerifier& verifier) {
    return client_internal::VerifyLayouts<R, A...>(verifier);
  }

  // Wraps a handle resolved with Signature(); Library::Function does this.
  explicit TypedFunction(RawFunction raw) : raw_(std::move(raw)) {}

  // Calls the function with the session's default deadline.
  Result operator()(typename client_internal::ArgTraits<A>::Param... args) const {
    return Unwrap(Invoke(CallOptions{}, /*capture_errno=*/false, args...));
  }

  // Calls the function with its own deadline; CALL_TIMEOUT when it passes.
  Result CallWithTimeout(absl::Duration timeout,
                         typename client_internal::ArgTraits<A>::Param... args) const {
    CallOptions options;
    options.timeout = timeout;
    return Unwrap(Invoke(options, /*capture_errno=*/false, args...));
  }

  // Calls the function and returns its result with the worker's errno right after the call.
  absl::StatusOr<WithErrno<Value>> CallWithErrno(
      typename client_internal::ArgTraits<A>::Param... args) const {
    return Invoke(CallOptions{}, /*capture_errno=*/true, args...);
  }

  // Calls the function with `options` (deadline, errno set before the call) and returns its
  // result with the worker's errno after the call.
  absl::StatusOr<WithErrno<Value>> CallWith(
      const CallOptions& options, typename client_internal::ArgTraits<A>::Param... args) const {
    return Invoke(options, /*capture_errno=*/true, args...);
  }

  // The untyped handle underneath.
  const RawFunction& raw() const { return raw_; }

 private:
  absl::StatusOr<WithErrno<Value>> Invoke(
      const CallOptions& options, bool capture_errno,
      typename client_internal::ArgTraits<A>::Param... args) const {
    return client_internal::CallTyped<R, A...>(raw_, options, capture_errno, args...);
  }

  static Result Unwrap(absl::StatusOr<WithErrno<Value>> outcome) {
    return client_internal::WithoutErrno<Value>(std::move(outcome));
  }

  RawFunction raw_;
};

// A variadic C function, `TypedFunction<int(const char*, ...)>` for printf: the fixed
// parameters as above, and any number of arguments after them, each passed as the C type its
// C++ type promotes to (C's default argument promotions: bool, char and short as int, float
// as double; char strings as char*, `const wchar_t*` as wchar_t*, RemotePtr and nullptr as
// void*), named in the call's variadic_types. Records and client memory cannot follow the
// fixed parameters (the build fails).
template <typename R, typename... A>
class TypedFunction<R(A..., ...)> {
 public:
  using Value = typename client_internal::ResultTraits<R>::Value;
  using Result = std::conditional_t<std::is_void_v<Value>, absl::Status, absl::StatusOr<Value>>;

  // The protocol signature of R(A..., ...).
  static v1::Signature Signature() {
    v1::Signature signature = client_internal::SignatureOf<R, A...>();
    signature.set_variadic(true);
    return signature;
  }

  // As TypedFunction<R(A...)>::VerifyLayouts, for the fixed parameters.
  static absl::Status VerifyLayouts(client_internal::LayoutVerifier& verifier) {
    return client_internal::VerifyLayouts<R, A...>(verifier);
  }

  explicit TypedFunction(RawFunction raw) : raw_(std::move(raw)) {}

  // Calls the function with the session's default deadline: `printf("%d %s\n", 5, "five")`.
  template <typename... V>
  Result operator()(typename client_internal::ArgTraits<A>::Param... args, V&&... extra) const {
    return Unwrap(
        Invoke(CallOptions{}, /*capture_errno=*/false, args..., std::forward<V>(extra)...));
  }

  // Calls the function with its own deadline; CALL_TIMEOUT when it passes.
  template <typename... V>
  Result CallWithTimeout(absl::Duration timeout,
                         typename client_internal::ArgTraits<A>::Param... args,
                         V&&... extra) const {
    CallOptions options;
    options.timeout = timeout;
    return Unwrap(Invoke(options, /*capture_errno=*/false, args..., std::forward<V>(extra)...));
  }

  // Calls the function and returns its result with the worker's errno right after the call.
  template <typename... V>
  absl::StatusOr<WithErrno<Value>> CallWithErrno(
      typename client_internal::ArgTraits<A>::Param... args, V&&... extra) const {
    return Invoke(CallOptions{}, /*capture_errno=*/true, args..., std::forward<V>(extra)...);
  }

  // Calls the function with `options` and returns its result with the worker's errno after
  // the call.
  template <typename... V>
  absl::StatusOr<WithErrno<Value>> CallWith(const CallOptions& options,
                                            typename client_internal::ArgTraits<A>::Param... args,
                                            V&&... extra) const {
    return Invoke(options, /*capture_errno=*/true, args..., std::forward<V>(extra)...);
  }

  const RawFunction& raw() const { return raw_; }

 private:
  template <typename... V>
  absl::StatusOr<WithErrno<Value>> Invoke(const CallOptions& options, bool capture_errno,
                                          typename client_internal::ArgTraits<A>::Param... args,
                                          V&&... extra) const {
    return client_internal::CallTypedWith<R>(
        raw_, options, capture_errno, [&](client_internal::CallBuilder& builder) {
          absl::Status status = client_internal::AppendArgs<A...>(builder, args...);
          int index = static_cast<int>(sizeof...(A));
          (void)(status.ok() && ... &&
                 (status =
                      client_internal::AppendVariadicArg(builder, index++, std::forward<V>(extra)))
                     .ok());
          return status;
        });
  }

  static Result Unwrap(absl::StatusOr<WithErrno<Value>> outcome) {
    return client_internal::WithoutErrno<Value>(std::move(outcome));
  }

  RawFunction raw_;
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_TYPED_FUNCTION_H_

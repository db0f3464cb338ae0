// A typed function's signature from its C++ type: the protocol Signature of R(A...), and the
// layout check of every described record in it (once per session, before the first call).
// Used by TypedFunction, Library, Session::FunctionAt and Callback.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_SIGNATURE_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_SIGNATURE_H_

#include <type_traits>

#include "absl/status/status.h"
#include "client/cpp/internal/arg_traits.h"
#include "client/cpp/internal/layout_verifier.h"
#include "client/cpp/internal/result_traits.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

template <typename Traits, typename Enable = void>
struct HasVerify : std::false_type {};
template <typename Traits>
struct HasVerify<Traits, std::void_t<decltype(&Traits::Verify)>> : std::true_type {};

// Runs Traits::Verify when the traits carry records, else succeeds.
template <typename Traits>
absl::Status VerifyTraits(LayoutVerifier& verifier) {
  if constexpr (HasVerify<Traits>::value) {
    return Traits::Verify(verifier);
  } else {
    return absl::OkStatus();
  }
}

// Checks the worker's layout of every record in R(A...) once per session; FAILED_PRECONDITION
// naming the record and field on a mismatch. Stops at the first failure.
template <typename R, typename... A>
absl::Status VerifyLayouts(LayoutVerifier& verifier) {
  absl::Status status = VerifyTraits<ResultTraits<R>>(verifier);
  (void)(status.ok() && ... && (status = VerifyTraits<ArgTraits<A>>(verifier)).ok());
  return status;
}

// The proto signature of the C++ function type R(A...).
template <typename R, typename... A>
v1::Signature SignatureOf() {
  v1::Signature signature;
  if constexpr (ResultTraits<R>::kHasType) *signature.mutable_result() = ResultTraits<R>::Type();
  ((*signature.add_params() = ArgTraits<A>::Type()), ...);
  return signature;
}

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_SIGNATURE_H_

#include "server/broker/auth.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/errors.h"

namespace ffibox {

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  const size_t length = std::max(a.size(), b.size());
  volatile unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < length; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    difference = difference | (x ^ y);
  }
  return difference == 0;
}

Authenticator::Authenticator(std::vector<ClientIdentity> identities, std::string local_identity)
    : identities_(std::move(identities)), local_identity_(std::move(local_identity)) {}

absl::StatusOr<const ClientIdentity*> Authenticator::Authenticate(
    const PresentedCredentials& presented) const {
  const ClientIdentity* identity = nullptr;
  if (!presented.authorization.has_value()) {
    if (!presented.unix_socket) {
      return ErrorStatus(v1::UNAUTHENTICATED,
                         "no credentials: send the metadata \"authorization: Bearer <token>\"");
    }
    for (const ClientIdentity& candidate : identities_) {
      if (candidate.name == local_identity_) identity = &candidate;
    }
    if (identity == nullptr) {
      return ErrorStatus(v1::UNAUTHENTICATED, "this server has no local identity");
    }
  } else {
    absl::string_view value = *presented.authorization;
    constexpr absl::string_view kScheme = "Bearer ";
    if (value.size() < kScheme.size() ||
        !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
      return ErrorStatus(v1::UNAUTHENTICATED,
                         "the authorization metadata must be \"Bearer <token>\"");
    }
    absl::string_view token = absl::StripAsciiWhitespace(value.substr(kScheme.size()));
    // Every configured token is compared, so the time taken does not say which one matched.
    for (const ClientIdentity& candidate : identities_) {
      if (!candidate.bearer_token.empty() && ConstantTimeEquals(token, candidate.bearer_token) &&
          identity == nullptr) {
        identity = &candidate;
      }
    }
    if (identity == nullptr) return ErrorStatus(v1::UNAUTHENTICATED, "invalid bearer token");
  }
  if (identity->disabled) {
    return ErrorStatus(v1::PERMISSION_DENIED,
                       absl::StrCat("identity \"", identity->name, "\" is disabled"));
  }
  if (!identity->client_cert_name.empty() && !presented.unix_socket &&
      std::find(presented.certificate_names.begin(), presented.certificate_names.end(),
                identity->client_cert_name) == presented.certificate_names.end()) {
    return ErrorStatus(
        v1::PERMISSION_DENIED,
        absl::StrCat("identity \"", identity->name, "\" requires a client certificate for \"",
                     identity->client_cert_name, "\""));
  }
  return identity;
}

}  // namespace ffibox

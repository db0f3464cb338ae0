// The door's identity check: which configured client identity a Session stream belongs to.
//
// Called by the service for every stream before anything else runs. A stream presents a
// bearer token (`authorization: Bearer <token>` metadata) and, over mutual TLS, the names
// of a verified client certificate. Over the unix socket (owner-only, see
// server/broker/listen_address.h) a stream without a token is the local identity. Everything the
// stream presents is untrusted; tokens are compared in constant time.
#ifndef FFIBOX_SERVER_BROKER_AUTH_H_
#define FFIBOX_SERVER_BROKER_AUTH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ffibox {

// A configured client identity (server/broker/config.h fills it from the ServerConfig).
struct ClientIdentity {
  std::string name;
  std::string bearer_token;  // empty only for the local identity
  std::vector<std::string> library_roots;
  uint32_t max_sessions = 0;
  std::string client_cert_name;  // with mTLS: required certificate name; empty: any
  bool disabled = false;
};

// What one stream presented, before any check.
struct PresentedCredentials {
  bool unix_socket = false;                    // arrived on a unix-socket listener
  std::optional<std::string> authorization;    // the `authorization` metadata, if any
  std::vector<std::string> certificate_names;  // verified client certificate CN and SANs
};

class Authenticator {
 public:
  // `identities` must have unique names; `local_identity` names the one a unix-socket
  // stream without a token gets (it must be among `identities`).
  Authenticator(std::vector<ClientIdentity> identities, std::string local_identity);

  // The identity `presented` proves. UNAUTHENTICATED when a token is missing (outside the
  // unix socket), malformed or unknown; PERMISSION_DENIED when the token is right but the
  // identity is disabled or the client certificate does not carry its name.
  absl::StatusOr<const ClientIdentity*> Authenticate(const PresentedCredentials& presented) const;

  const std::vector<ClientIdentity>& identities() const { return identities_; }

 private:
  std::vector<ClientIdentity> identities_;
  std::string local_identity_;
};

// Whether `a` equals `b`, in time that depends only on their lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_AUTH_H_

// The gRPC service: one Session per bidi stream. Called by gRPC's sync server threads.
//
// The service is ffibox.v1.Ffibox as the proto declares it, registered with gRPC's raw
// bytes for its messages instead of the generated classes, so that a large request or
// response is not held twice (server/broker/message_codec.h).
//
// Every stream passes the door first, before a request is read: the Authenticator names
// its identity (UNAUTHENTICATED / PERMISSION_DENIED end the stream with that gRPC status),
// and the SessionQuota gives it a slot (RESOURCE_EXHAUSTED ends it likewise). The session
// then runs with its identity's library allowlist. All session logic lives in Session.
#ifndef FFIBOX_SERVER_BROKER_SERVICE_H_
#define FFIBOX_SERVER_BROKER_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "grpcpp/impl/service_type.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/sync_stream.h"
#include "server/broker/allowlist.h"
#include "server/broker/auth.h"
#include "server/broker/broker_metrics.h"
#include "server/broker/session.h"
#include "server/broker/session_quota.h"

namespace ffibox {

// Who may open sessions, and what each identity may do.
struct AccessPolicy {
  std::vector<ClientIdentity> identities;  // the local identity included
  std::string local_identity = "local";
  // Each identity's allowlist, by identity name; every identity must have one.
  absl::flat_hash_map<std::string, std::shared_ptr<const LibraryAllowlist>> allowlists;
  uint32_t max_sessions = 256;  // open sessions on the server
};

// The method's path as the proto declares it: /<package>.<service>/<method>.
inline constexpr char kSessionMethod[] = "/ffibox.v1.Ffibox/Session";

class FfiboxService final : public grpc::Service {
 public:
  // Sessions get `config` with their identity's allowlist. `metrics` (may be null: none;
  // must outlive the service) counts sessions and gets each session's reports.
  FfiboxService(SessionConfig config, AccessPolicy policy, BrokerMetrics* metrics = nullptr);

  grpc::Status Session(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream);

 private:
  const SessionConfig config_;
  const absl::flat_hash_map<std::string, std::shared_ptr<const LibraryAllowlist>> allowlists_;
  const Authenticator authenticator_;
  SessionQuota quota_;
  BrokerMetrics* const metrics_;
  std::atomic<uint64_t> next_session_{1};
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_SERVICE_H_

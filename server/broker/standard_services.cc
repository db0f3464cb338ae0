#include "server/broker/standard_services.h"

#include <algorithm>
#include <climits>
#include <cstddef>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/keepalive.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/broker/worker_process.h"
#include "server/jail/jail_layers.h"

namespace ffibox {
namespace {

// Streams one connection to the plaintext health listener may have open at once. A probe
// makes one Check at a time; without a cap, one peer's Watch streams (which never end by
// themselves) held about 16 KiB of ffiboxd's memory each, without bound; the server-wide
// bound of HealthService covers every listener.
constexpr int kHealthStreamsPerConnection = 4;

// Descriptors the health port's connections leave free: the reserve for worker starts, and
// as many again for the main listeners' clients and their sessions (a flood of health
// connections must not refuse the owner's unix socket either).
constexpr size_t kHealthDescriptorsKeptFree = 2 * kDescriptorReserve;

// JailOptions::waived holds "<key> (<reason>)".
bool WaivedByOperator(const JailOptions& decided, JailLayer layer) {
  const std::string prefix = absl::StrCat(JailLayerKey(layer), " (");
  return std::any_of(decided.waived.begin(), decided.waived.end(),
                     [&](const std::string& waived) { return absl::StartsWith(waived, prefix); });
}

}  // namespace

void EnableStandardServices() { grpc::reflection::InitProtoReflectionServerBuilderPlugin(); }

std::vector<std::string> MissingJailLayers(const JailOptions& configured,
                                           const JailOptions& decided) {
  std::vector<std::string> missing;
  for (int i = 0; i < kJailLayerCount; ++i) {
    const JailLayer layer = static_cast<JailLayer>(i);
    if (JailLayerRequested(configured, layer) && !JailLayerRequested(decided, layer) &&
        !WaivedByOperator(decided, layer)) {
      missing.emplace_back(JailLayerKey(layer));
    }
  }
  return missing;
}

absl::StatusOr<HealthOnlyServer> StartHealthOnlyServer(const std::string& address,
                                                       HealthService* health,
                                                       absl::Duration handshake_timeout,
                                                       absl::Duration idle_timeout) {
  HealthOnlyServer started;
  absl::StatusOr<std::unique_ptr<ConnectionAcceptor>> acceptor =
      ConnectionAcceptor::ListenTcp(address, handshake_timeout, kHealthDescriptorsKeptFree);
  if (!acceptor.ok()) {
    return absl::UnavailableError(absl::StrCat("health: ", acceptor.status().message()));
  }
  grpc::ServerBuilder builder;  // no listening port: the acceptor hands it every connection
  health->AddTo(&builder);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kHealthStreamsPerConnection);
  // gRPC's max-age filter: a GOAWAY and the connection closed once no call was open for that
  // long (it applies to connections handed over by descriptor too).
  builder.AddChannelArgument(
      GRPC_ARG_MAX_CONNECTION_IDLE_MS,
      static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(idle_timeout), 100, INT_MAX)));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kServerMinPingInterval)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kServerKeepaliveTime)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kServerKeepaliveTimeout)));
  started.server = builder.BuildAndStart();
  if (started.server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot start the health server on ", address));
  }
  health->Serve();
  started.port = (*acceptor)->port();
  started.acceptor = *std::move(acceptor);
  started.acceptor->Start(started.server.get());
  return started;
}

}  // namespace ffibox

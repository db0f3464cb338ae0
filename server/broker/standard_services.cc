#include "server/broker/standard_services.h"

#include <algorithm>
#include <climits>
#include <cstdint>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/keepalive.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "server/jail/jail_layers.h"

namespace ffibox {
namespace {

// Streams one connection to the plaintext health listener may have open at once. A probe
// makes one Check at a time; without a cap, one peer's Watch streams (which never end by
// themselves) held about 16 KiB of ffiboxd's memory each, without bound; the server-wide
// bound of HealthService covers every listener.
constexpr int kHealthStreamsPerConnection = 4;

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

absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthOnlyServer(
    const std::string& address, HealthService* health, int* port,
    absl::Duration handshake_timeout) {
  grpc::ServerBuilder builder;
  health->AddTo(&builder);
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), port);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kHealthStreamsPerConnection);
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(std::clamp<int64_t>(
                                 absl::ToInt64Milliseconds(handshake_timeout), 100, INT_MAX)));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kServerMinPingInterval)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kServerKeepaliveTime)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(kServerKeepaliveTimeout)));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  // gRPC builds no server when a port does not bind (a bound TCP port is never 0).
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, " for health"));
  }
  health->Serve();
  return server;
}

}  // namespace ffibox

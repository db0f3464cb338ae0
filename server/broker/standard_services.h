// The standard gRPC services ffiboxd serves on every listener beside ffibox.v1.Ffibox, so
// that load balancers, Kubernetes probes, grpcurl and grpc_cli see it: grpc.health.v1.Health
// (gRPC's default health service) and server reflection. Called by ffiboxd's main around
// building its grpc::Server.
//
// Neither passes the door (server/broker/auth.h): the Authenticator runs inside
// FfiboxService::Session, so only ffibox.v1.Ffibox streams need a token. Health probes carry
// none, and a health answer says no more than whether a connection succeeds. Reflection
// describes only service descriptors: the public contract (proto/ffibox/v1/ffibox.proto)
// and the standard services' own, never configuration, identities or sessions.
#ifndef FFIBOX_SERVER_BROKER_STANDARD_SERVICES_H_
#define FFIBOX_SERVER_BROKER_STANDARD_SERVICES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/server.h"
#include "server/jail/jail_options.h"

namespace ffibox {

// The name health checks ask about for the ffibox service ("" asks about the server).
inline constexpr char kFfiboxServiceName[] = "ffibox.v1.Ffibox";

// Makes every grpc::Server built afterwards serve grpc.health.v1.Health and server
// reflection. Call once, before the first grpc::ServerBuilder is made (not thread-safe).
void EnableStandardServices();

// The jail layers `configured` asks for (the configuration, before DecideJailLayers) that
// `decided` does not give every worker and that the operator did not waive by name, as
// layer keys ("user", "cgroup", ...). Empty when the server may report SERVING.
std::vector<std::string> MissingJailLayers(const JailOptions& configured,
                                           const JailOptions& decided);

// Sets the health of the server ("") and of kFfiboxServiceName: SERVING or NOT_SERVING.
// `server` must have been built after EnableStandardServices.
void PublishHealth(grpc::Server* server, bool serving);

// A plaintext TCP server on `address` (HOST:PORT; port 0 picks one, stored in `*port`)
// for probes that cannot speak TLS, such as Kubernetes' grpc probes: it serves the health
// service (and reflection, which lists only the standard services), never
// ffibox.v1.Ffibox. A connection may have 4 streams open at once: anyone may reach it, and
// a Watch never ends by itself. Requires EnableStandardServices. UNAVAILABLE if it cannot
// listen.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthOnlyServer(const std::string& address,
                                                                    int* port);

// Sets both to NOT_SERVING for good (later PublishHealth calls change nothing), so that
// health-checking clients stop sending new sessions before the server stops.
void WithdrawHealth(grpc::Server* server);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_STANDARD_SERVICES_H_

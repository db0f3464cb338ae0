// The standard gRPC services ffiboxd serves on every listener beside ffibox.v1.Ffibox, so
// that load balancers, Kubernetes probes, grpcurl and grpc_cli see it: grpc.health.v1.Health
// (server/broker/health_service.h) and server reflection. Called by ffiboxd's main around
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
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "server/broker/health_service.h"
#include "server/jail/jail_options.h"

namespace ffibox {

// Makes every grpc::Server built afterwards serve server reflection. Call once, before the
// first grpc::ServerBuilder is made (not thread-safe). Health is registered per server with
// HealthService::AddTo.
void EnableStandardServices();

// The jail layers `configured` asks for (the configuration, before DecideJailLayers) that
// `decided` does not give every worker and that the operator did not waive by name, as
// layer keys ("user", "cgroup", ...). Empty when the server may report SERVING.
std::vector<std::string> MissingJailLayers(const JailOptions& configured,
                                           const JailOptions& decided);

// A plaintext TCP server on `address` (HOST:PORT; port 0 picks one, stored in `*port`)
// for probes that cannot speak TLS, such as Kubernetes' grpc probes: it serves the health
// service `health` (and reflection, which lists only the standard services), never
// ffibox.v1.Ffibox. A connection may have 4 streams open at once: anyone may reach it, and
// a Watch never ends by itself (its Watches also count against `health`'s server-wide
// bound). A connection that has not completed its HTTP/2 handshake within
// `handshake_timeout` is closed (gRPC's own default holds one for 2 minutes), and one whose
// peer vanished is found by keepalive pings, as on the main listeners. Requires
// EnableStandardServices; `health` must outlive the server. UNAVAILABLE if it cannot listen.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartHealthOnlyServer(
    const std::string& address, HealthService* health, int* port, absl::Duration handshake_timeout);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_STANDARD_SERVICES_H_

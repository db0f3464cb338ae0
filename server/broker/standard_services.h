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
#include "server/broker/connection_acceptor.h"
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

// The health-only server and the acceptor that listens for it.
struct HealthOnlyServer {
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<ConnectionAcceptor> acceptor;  // declared after: stops before the server goes
  int port = 0;                                  // the TCP port listened on
};

// A plaintext TCP server on `address` (HOST:PORT; port 0 picks one, reported in `port`) for
// probes that cannot speak TLS, such as Kubernetes' grpc probes: it serves the health service
// `health` (and reflection, which lists only the standard services), never
// ffibox.v1.Ffibox. Anyone may reach it, so its connections are accepted by ffiboxd
// (server/broker/connection_acceptor.h): they never take the last 2 * kDescriptorReserve
// descriptors (the worker-start reserve, and as many again for the other listeners' clients),
// a peer that runs ffiboxd out of descriptors only gets connections shed, and a connection
// that has not sent the HTTP/2 preface and SETTINGS within `handshake_timeout` is closed, as
// is one that has had no call open for `idle_timeout` (at least 100 ms). A connection may
// have 4 streams open at once (a Watch never ends by itself; its Watches also count against
// `health`'s server-wide bound), and one whose peer vanished is found by keepalive pings, as
// on the main listeners. Requires EnableStandardServices; `health` must outlive the server.
// UNAVAILABLE naming the address if it cannot listen.
absl::StatusOr<HealthOnlyServer> StartHealthOnlyServer(const std::string& address,
                                                       HealthService* health,
                                                       absl::Duration handshake_timeout,
                                                       absl::Duration idle_timeout);

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_STANDARD_SERVICES_H_

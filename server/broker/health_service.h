// grpc.health.v1.Health as ffiboxd serves it on every listener (its main listeners and
// --health_listen), with a server-wide bound on what Watch streams may hold. Built by
// ffiboxd's main; one HealthService answers for every grpc::Server of the process.
//
// Health needs no token (probes have none), so anyone who reaches a listener may call it. A
// Check retains nothing once answered and is not counted. A Watch never ends by itself and
// holds about 16 KiB of ffiboxd's memory (its HTTP/2 stream and call) while open, so at most
// `max_watches` are open at once over all servers; a Watch past that is answered
// RESOURCE_EXHAUSTED at once. Requests are untrusted: a service name longer than
// kMaxHealthServiceNameBytes is refused (a Watch would keep it for the stream's lifetime).
#ifndef FFIBOX_SERVER_BROKER_HEALTH_SERVICE_H_
#define FFIBOX_SERVER_BROKER_HEALTH_SERVICE_H_

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {

// The name health checks ask about for the ffibox service ("" asks about the server).
inline constexpr char kFfiboxServiceName[] = "ffibox.v1.Ffibox";

// Watch streams open at once over the whole server. Each health-checking client channel
// holds one Watch per server it balances over (gRPC's client-side health checking), so the
// cap is generous; at about 16 KiB each, 1024 Watches hold about 16 MiB of ffiboxd's memory.
inline constexpr int kMaxHealthWatches = 1024;

// Longer than any service name ffiboxd knows; a longer name is refused with INVALID_ARGUMENT.
inline constexpr int kMaxHealthServiceNameBytes = 256;

class HealthService {
 public:
  // NOT_SERVING until SetServing(true). `max_watches` must be positive.
  explicit HealthService(int max_watches = kMaxHealthWatches);
  // Stop()s.
  ~HealthService();

  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;

  // Registers grpc.health.v1.Health with `builder`, answered on a completion queue of its
  // own by a thread of this object's once Serve() is called after the server is built.
  // gRPC's asynchronous API, not its callback API: in this gRPC (1.51, epoll poller) a
  // callback service makes the process's callback queue, whose threads sleep 100 ms after
  // each idle second while they hold the polling role, and every stream that starts then
  // (a session's open, a worker's replay) waited for them.
  void AddTo(grpc::ServerBuilder* builder);

  // Starts answering on every server added since the last Serve(); call after each
  // builder's BuildAndStart() succeeded.
  void Serve();

  // Stops answering for good: shuts every queue down and drains it. Call after every server
  // it was added to was shut down, and before any of them is destroyed (the queues' last
  // events still reach into their server). Idempotent.
  void Stop();

  // Sets the status of "" and kFfiboxServiceName, and tells every Watch of them.
  // Ignored after Withdraw.
  void SetServing(bool serving);

  // NOT_SERVING for good, told to every Watch, so that health-checking clients stop sending
  // new sessions before the servers stop. The Watch streams stay open until they end or
  // their server shuts down.
  void Withdraw();

  // Watch streams open now (for tests and diagnostics).
  int OpenWatches() const;

 private:
  class Endpoint;
  class Call;
  class CheckCall;
  class WatchCall;

  using ServingStatus = grpc::health::v1::HealthCheckResponse::ServingStatus;

  void Publish(bool serving) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ServingStatus StatusOf(bool known_service) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The current status of `service`, or the error that answers a request about it.
  grpc::Status Answer(const grpc::health::v1::HealthCheckRequest& request,
                      ServingStatus* status) const;
  // Counts an accepted Watch and sends it the current status; RESOURCE_EXHAUSTED past the
  // bound.
  grpc::Status AddWatch(WatchCall* watch, bool known_service);
  // Called by a WatchCall whose stream is done.
  void RemoveWatch(WatchCall* watch);

  const int max_watches_;
  mutable absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool withdrawn_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<WatchCall*> watches_ ABSL_GUARDED_BY(mu_);
  // Kept until destruction: a service must outlive its server.
  std::vector<std::unique_ptr<Endpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_HEALTH_SERVICE_H_

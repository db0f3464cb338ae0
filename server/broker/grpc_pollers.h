// Threads of ffiboxd's that do nothing but wait on an idle completion queue of its
// grpc::Server, so that gRPC has threads free to poll its transports.
//
// gRPC 1.51 on Linux (the epoll poller, no background poller) reads a transport only on a
// thread that waits on a completion queue; ffiboxd's synchronous streams otherwise poll on
// the stream thread that also handles the request. Measured with bench/call_bench
// (docs/benchmarks.md, "Threads that poll"): with one such thread beside the health
// service's, a call over gRPC took 167–201 µs against 230–290 µs without, and a second one
// did not help further. gRPC's callback API would start threads of this kind too (its
// "nexting" threads), but they sleep 100 ms after every idle second, and streams that start
// meanwhile wait for them (server/broker/health_service.h).
#ifndef FFIBOX_SERVER_BROKER_GRPC_POLLERS_H_
#define FFIBOX_SERVER_BROKER_GRPC_POLLERS_H_

#include <memory>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"

namespace ffibox {

class GrpcPollers {
 public:
  // Adds the completion queue to `builder`; no thread runs before Start.
  explicit GrpcPollers(grpc::ServerBuilder* builder);
  // Stop()s.
  ~GrpcPollers();

  GrpcPollers(const GrpcPollers&) = delete;
  GrpcPollers& operator=(const GrpcPollers&) = delete;

  // Starts `threads` threads (named ffibox-poll) waiting on the queue; call once, after the
  // server was built.
  void Start(int threads);

  // Shuts the queue down, drains it and joins the threads. Call after the server was shut
  // down and before it is destroyed. Idempotent.
  void Stop();

 private:
  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::vector<std::thread> threads_;
  bool stopped_ = false;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_GRPC_POLLERS_H_

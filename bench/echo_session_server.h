// The bare gRPC floor: a Session server with no ffibox logic at all.
//
// `EchoSessionServer` serves `ffibox.v1.Ffibox/Session` inside the calling process, on a
// unix socket in a fresh temporary directory, with gRPC's synchronous API (as ffiboxd
// does), and answers every Request with one fixed Response carrying the request's id
// (`Response{id, done}` unless told otherwise). A round trip on one of its streams is what any
// gRPC service pays before it does any work; answering with a copy of what ffiboxd answered
// to a real call makes that floor carry the same bytes as the call. Used by
// bench/grpc_floor_bench.cc and client/cpp/unexpected_answer_test.cc.
#ifndef FFIBOX_BENCH_ECHO_SESSION_SERVER_H_
#define FFIBOX_BENCH_ECHO_SESSION_SERVER_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "bench/local_grpc_server.h"
#include "ffibox/v1/ffibox.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {
namespace bench {

class EchoSessionServer {
 public:
  // Starts a server answering `Response{id, done}`; INTERNAL if the directory or the
  // listening socket cannot be made.
  static absl::StatusOr<std::unique_ptr<EchoSessionServer>> Start();
  // Starts a server answering `answer` with its id set to the request's (no message size cap:
  // bulk answers fit); INTERNAL as above.
  static absl::StatusOr<std::unique_ptr<EchoSessionServer>> Start(v1::Response answer);

  EchoSessionServer(const EchoSessionServer&) = delete;
  EchoSessionServer& operator=(const EchoSessionServer&) = delete;
  // Shuts the server down (open streams are cancelled) and removes its directory.
  ~EchoSessionServer() = default;

  // The gRPC target: `unix:<dir>/echo.sock`.
  const std::string& address() const { return server_->address(); }

 private:
  class Service final : public v1::Ffibox::Service {
   public:
    explicit Service(v1::Response answer) : answer_(std::move(answer)) {}

    grpc::Status Session(grpc::ServerContext* context,
                         grpc::ServerReaderWriter<v1::Response, v1::Request>* stream) override;

   private:
    const v1::Response answer_;
  };

  explicit EchoSessionServer(v1::Response answer) : service_(std::move(answer)) {}

  Service service_;
  std::unique_ptr<LocalGrpcServer> server_;  // declared last: stops before service_ goes
};

}  // namespace bench
}  // namespace ffibox

#endif  // FFIBOX_BENCH_ECHO_SESSION_SERVER_H_

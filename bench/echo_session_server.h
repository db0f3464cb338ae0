// The bare gRPC floor: a Session server with no ffibox logic at all.
//
// `EchoSessionServer` serves `ffibox.v1.Ffibox/Session` inside the calling process, on a
// unix socket in a fresh temporary directory, with gRPC's synchronous API (as ffiboxd
// does), and answers every Request with `Response{id, done}`. A round trip on one of its
// streams is what any gRPC service pays before it does any work. Used by
// bench/call_bench.cc and client/cpp/unexpected_answer_test.cc.
#ifndef FFIBOX_BENCH_ECHO_SESSION_SERVER_H_
#define FFIBOX_BENCH_ECHO_SESSION_SERVER_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "ffibox/v1/ffibox.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {
namespace bench {

class EchoSessionServer {
 public:
  // Starts the server; INTERNAL if the directory or the listening socket cannot be made.
  static absl::StatusOr<std::unique_ptr<EchoSessionServer>> Start();

  EchoSessionServer(const EchoSessionServer&) = delete;
  EchoSessionServer& operator=(const EchoSessionServer&) = delete;
  // Shuts the server down (open streams are cancelled) and removes its directory.
  ~EchoSessionServer();

  // The gRPC target: `unix:<dir>/echo.sock`.
  const std::string& address() const { return address_; }

 private:
  class Service final : public v1::Ffibox::Service {
   public:
    grpc::Status Session(grpc::ServerContext* context,
                         grpc::ServerReaderWriter<v1::Response, v1::Request>* stream) override;
  };

  EchoSessionServer(std::string directory, std::string address)
      : directory_(std::move(directory)), address_(std::move(address)) {}

  std::string directory_;
  std::string address_;
  Service service_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace bench
}  // namespace ffibox

#endif  // FFIBOX_BENCH_ECHO_SESSION_SERVER_H_

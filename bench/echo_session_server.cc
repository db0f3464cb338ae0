#include "bench/echo_session_server.h"

namespace ffibox {
namespace bench {

grpc::Status EchoSessionServer::Service::Session(
    grpc::ServerContext* /*context*/, grpc::ServerReaderWriter<v1::Response, v1::Request>* stream) {
  v1::Request request;
  v1::Response response = answer_;
  while (stream->Read(&request)) {
    response.set_id(request.id());
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<EchoSessionServer>> EchoSessionServer::Start() {
  v1::Response done;
  done.mutable_done();
  return Start(std::move(done));
}

absl::StatusOr<std::unique_ptr<EchoSessionServer>> EchoSessionServer::Start(v1::Response answer) {
  std::unique_ptr<EchoSessionServer> server(new EchoSessionServer(std::move(answer)));
  absl::StatusOr<std::unique_ptr<LocalGrpcServer>> listening =
      LocalGrpcServer::Start(&server->service_, "echo.sock");
  if (!listening.ok()) return listening.status();
  server->server_ = *std::move(listening);
  return server;
}

}  // namespace bench
}  // namespace ffibox

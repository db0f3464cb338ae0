#include "bench/echo_session_server.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ffibox {
namespace bench {

grpc::Status EchoSessionServer::Service::Session(
    grpc::ServerContext* /*context*/, grpc::ServerReaderWriter<v1::Response, v1::Request>* stream) {
  v1::Request request;
  v1::Response response;
  while (stream->Read(&request)) {
    response.Clear();
    response.set_id(request.id());
    response.mutable_done();
    if (!stream->Write(response)) break;
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<EchoSessionServer>> EchoSessionServer::Start() {
  char directory_template[] = "/tmp/ffibox-bench-grpc-XXXXXX";
  if (mkdtemp(directory_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  std::string directory = directory_template;
  std::string address = absl::StrCat("unix:", directory, "/echo.sock");
  std::unique_ptr<EchoSessionServer> server(new EchoSessionServer(directory, address));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.RegisterService(&server->service_);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot listen on ", address));
  }
  return server;
}

EchoSessionServer::~EchoSessionServer() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
  }
  unlink(absl::StrCat(directory_, "/echo.sock").c_str());
  rmdir(directory_.c_str());
}

}  // namespace bench
}  // namespace ffibox

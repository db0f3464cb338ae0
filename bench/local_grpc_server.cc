#include "bench/local_grpc_server.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace ffibox {
namespace bench {

absl::StatusOr<std::unique_ptr<LocalGrpcServer>> LocalGrpcServer::Start(
    grpc::Service* service, absl::string_view socket_name) {
  char directory_template[] = "/tmp/ffibox-bench-grpc-XXXXXX";  // mkdtemp makes it 0700
  if (mkdtemp(directory_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  std::unique_ptr<LocalGrpcServer> server(
      new LocalGrpcServer(directory_template, absl::StrCat(directory_template, "/", socket_name)));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(server->address_, grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(-1);  // bulk benchmarks send messages of many MiB
  builder.RegisterService(service);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr) {
    return absl::InternalError(absl::StrCat("cannot listen on ", server->address_));
  }
  return server;
}

LocalGrpcServer::~LocalGrpcServer() {
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_->Wait();
  }
  unlink(socket_path_.c_str());
  rmdir(directory_.c_str());
}

}  // namespace bench
}  // namespace ffibox

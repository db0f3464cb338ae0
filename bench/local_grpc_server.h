// A gRPC server inside the benchmark process, on a unix socket in a fresh owner-only
// directory.
//
// The benchmarks' in-process servers (the bare gRPC floor, echo_session_server.h, and the
// recording proxy, recording_session_proxy.h) are made with `LocalGrpcServer::Start`, which
// lifts gRPC's 4 MiB receive cap so that bulk messages fit; destroying the server shuts it
// down (open streams are cancelled) and removes the directory.
#ifndef FFIBOX_BENCH_LOCAL_GRPC_SERVER_H_
#define FFIBOX_BENCH_LOCAL_GRPC_SERVER_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {
namespace bench {

class LocalGrpcServer {
 public:
  // Serves `service` (which must outlive the server) on `unix:<fresh dir>/<socket_name>`;
  // INTERNAL if the directory or the listening socket cannot be made.
  static absl::StatusOr<std::unique_ptr<LocalGrpcServer>> Start(grpc::Service* service,
                                                                absl::string_view socket_name);

  LocalGrpcServer(const LocalGrpcServer&) = delete;
  LocalGrpcServer& operator=(const LocalGrpcServer&) = delete;
  // Shuts the server down (open streams are cancelled after one second) and removes its
  // directory.
  ~LocalGrpcServer();

  // The gRPC target: `unix:<dir>/<socket_name>`.
  const std::string& address() const { return address_; }

 private:
  LocalGrpcServer(std::string directory, std::string socket_path)
      : directory_(std::move(directory)),
        socket_path_(std::move(socket_path)),
        address_("unix:" + socket_path_) {}

  std::string directory_;
  std::string socket_path_;
  std::string address_;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace bench
}  // namespace ffibox

#endif  // FFIBOX_BENCH_LOCAL_GRPC_SERVER_H_

// The gRPC service: one Session per bidi stream. Called by gRPC's sync server threads; all
// session logic lives in Session.
#ifndef FFIBOX_SERVER_SERVICE_H_
#define FFIBOX_SERVER_SERVICE_H_

#include <atomic>
#include <cstdint>

#include "ffibox/v1/ffibox.grpc.pb.h"
#include "server/session.h"

namespace ffibox {

class FfiboxService final : public v1::Ffibox::Service {
 public:
  explicit FfiboxService(SessionConfig config) : config_(std::move(config)) {}

  grpc::Status Session(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::Response, v1::Request>* stream) override;

 private:
  const SessionConfig config_;
  std::atomic<uint64_t> next_session_{1};
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_SERVICE_H_

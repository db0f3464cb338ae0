// A Session proxy that records the calls passing through it, so that a benchmark can replay
// exactly the messages the C++ client and ffiboxd exchange for a call.
//
// `RecordingSessionProxy` serves `ffibox.v1.Ffibox/Session` inside the calling process (on a
// unix socket, local_grpc_server.h) and forwards each stream to an ffiboxd: every Request up,
// every Response down, unchanged. It keeps each `call` request together with the response
// that answered it. bench/grpc_floor_bench.cc points the typed client at it, calls
// `add_int(1, 2)` once, and sizes its bare gRPC round trip with the recorded pair. Only for
// benchmarks: one thread per direction per stream, no limits.
#ifndef FFIBOX_BENCH_RECORDING_SESSION_PROXY_H_
#define FFIBOX_BENCH_RECORDING_SESSION_PROXY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "bench/local_grpc_server.h"
#include "ffibox/v1/ffibox.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace ffibox {
namespace bench {

// One call as it crossed the wire: the client's request and ffiboxd's response to it.
struct RecordedCall {
  v1::Request request;
  v1::Response response;
};

class RecordingSessionProxy {
 public:
  // Starts a proxy to the ffiboxd at `upstream` (a unix socket target); INTERNAL if it cannot
  // listen.
  static absl::StatusOr<std::unique_ptr<RecordingSessionProxy>> Start(const std::string& upstream);

  RecordingSessionProxy(const RecordingSessionProxy&) = delete;
  RecordingSessionProxy& operator=(const RecordingSessionProxy&) = delete;
  ~RecordingSessionProxy() = default;

  // The gRPC target the client connects to instead of ffiboxd.
  const std::string& address() const { return server_->address(); }

  // The calls answered so far, in the order of their answers; NOT_FOUND if there are none.
  absl::StatusOr<std::vector<RecordedCall>> Calls() const;

 private:
  class Service final : public v1::Ffibox::Service {
   public:
    explicit Service(const std::string& upstream);

    grpc::Status Session(grpc::ServerContext* context,
                         grpc::ServerReaderWriter<v1::Response, v1::Request>* downstream) override;

    std::vector<RecordedCall> Calls() const;

   private:
    // Keeps a call request until its response comes back.
    void NoteRequest(const v1::Request& request);
    void NoteResponse(const v1::Response& response);

    std::unique_ptr<v1::Ffibox::Stub> stub_;
    mutable absl::Mutex mu_;
    absl::flat_hash_map<uint64_t, v1::Request> pending_ ABSL_GUARDED_BY(mu_);
    std::vector<RecordedCall> answered_ ABSL_GUARDED_BY(mu_);
  };

  explicit RecordingSessionProxy(const std::string& upstream) : service_(upstream) {}

  Service service_;
  std::unique_ptr<LocalGrpcServer> server_;  // declared last: stops before service_ goes
};

}  // namespace bench
}  // namespace ffibox

#endif  // FFIBOX_BENCH_RECORDING_SESSION_PROXY_H_

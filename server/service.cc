#include "server/service.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace ffibox {
namespace {

// Serialises writes to the stream: the stream's thread and the worker's reader thread both
// answer requests.
class StreamSink : public ResponseSink {
 public:
  explicit StreamSink(grpc::ServerReaderWriter<v1::Response, v1::Request>* stream)
      : stream_(stream) {}

  bool Send(const v1::Response& response) override {
    absl::MutexLock lock(&mu_);
    if (broken_) return false;
    if (!stream_->Write(response)) broken_ = true;
    return !broken_;
  }

 private:
  grpc::ServerReaderWriter<v1::Response, v1::Request>* const stream_;
  absl::Mutex mu_;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::Status FfiboxService::Session(grpc::ServerContext* context,
                                    grpc::ServerReaderWriter<v1::Response, v1::Request>* stream) {
  StreamSink sink(stream);
  ffibox::Session session(config_, &sink, absl::StrCat(getpid(), "-", next_session_.fetch_add(1)));
  v1::Request request;
  while (stream->Read(&request)) {
    if (!session.HandleRequest(request)) break;
  }
  // The client closed, cancelled, disconnected or asked to close: no worker outlives this.
  session.Shutdown();
  return grpc::Status::OK;
}

}  // namespace ffibox

#include "bench/recording_session_proxy.h"

#include <thread>
#include <utility>

#include "absl/status/status.h"

namespace ffibox {
namespace bench {

RecordingSessionProxy::Service::Service(const std::string& upstream) {
  grpc::ChannelArguments arguments;  // as the client makes its channel: answers of any size
  arguments.SetMaxReceiveMessageSize(-1);
  stub_ = v1::Ffibox::NewStub(
      grpc::CreateCustomChannel(upstream, grpc::InsecureChannelCredentials(), arguments));
}

grpc::Status RecordingSessionProxy::Service::Session(
    grpc::ServerContext* context, grpc::ServerReaderWriter<v1::Response, v1::Request>* downstream) {
  grpc::ClientContext upstream_context;
  std::unique_ptr<grpc::ClientReaderWriter<v1::Request, v1::Response>> upstream =
      stub_->Session(&upstream_context);
  std::thread answers([&] {
    v1::Response response;
    while (upstream->Read(&response)) {
      NoteResponse(response);
      if (!downstream->Write(response)) {
        upstream_context.TryCancel();
        break;
      }
    }
  });
  v1::Request request;
  while (downstream->Read(&request)) {
    NoteRequest(request);
    if (!upstream->Write(request)) break;
  }
  upstream->WritesDone();
  if (context->IsCancelled()) upstream_context.TryCancel();
  answers.join();
  return upstream->Finish();
}

void RecordingSessionProxy::Service::NoteRequest(const v1::Request& request) {
  if (!request.has_call()) return;
  absl::MutexLock lock(&mu_);
  pending_[request.id()] = request;
}

void RecordingSessionProxy::Service::NoteResponse(const v1::Response& response) {
  absl::MutexLock lock(&mu_);
  auto pending = pending_.find(response.id());
  if (response.id() == 0 || pending == pending_.end()) return;
  answered_.push_back(RecordedCall{std::move(pending->second), response});
  pending_.erase(pending);
}

std::vector<RecordedCall> RecordingSessionProxy::Service::Calls() const {
  absl::MutexLock lock(&mu_);
  return answered_;
}

absl::StatusOr<std::unique_ptr<RecordingSessionProxy>> RecordingSessionProxy::Start(
    const std::string& upstream) {
  std::unique_ptr<RecordingSessionProxy> proxy(new RecordingSessionProxy(upstream));
  absl::StatusOr<std::unique_ptr<LocalGrpcServer>> listening =
      LocalGrpcServer::Start(&proxy->service_, "proxy.sock");
  if (!listening.ok()) return listening.status();
  proxy->server_ = *std::move(listening);
  return proxy;
}

absl::StatusOr<std::vector<RecordedCall>> RecordingSessionProxy::Calls() const {
  std::vector<RecordedCall> calls = service_.Calls();
  if (calls.empty()) return absl::NotFoundError("no call went through the recording proxy");
  return calls;
}

}  // namespace bench
}  // namespace ffibox

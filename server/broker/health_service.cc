#include "server/broker/health_service.h"

#include <optional>

#include "absl/strings/str_cat.h"

namespace ffibox {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

bool IsKnownService(const std::string& service) {
  return service.empty() || service == kFfiboxServiceName;
}

// The typed error for a request whose service name is past kMaxHealthServiceNameBytes.
grpc::Status ServiceNameTooLong(const HealthCheckRequest& request) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("health: service name of ", request.service().size(),
                                   " bytes, more than ", kMaxHealthServiceNameBytes));
}

}  // namespace

// One server's grpc.health.v1.Health: every call goes to the shared HealthService.
class HealthService::Endpoint : public grpc::health::v1::Health::CallbackService {
 public:
  explicit Endpoint(HealthService* health) : health_(health) {}

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const HealthCheckRequest* request,
                                  HealthCheckResponse* response) override {
    return health_->Check(context, *request, response);
  }

  grpc::ServerWriteReactor<HealthCheckResponse>* Watch(grpc::CallbackServerContext*,
                                                       const HealthCheckRequest* request) override {
    return health_->Watch(*request);
  }

 private:
  HealthService* const health_;
};

// An open Watch: sends the current status, then each change (only the latest if changes
// come faster than the client reads), until the client cancels or the server shuts down.
class HealthService::WatchReactor : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  WatchReactor(HealthService* health, bool known_service)
      : health_(health), known_service_(known_service) {}

  bool known_service() const { return known_service_; }

  // Sends `status` now, or once the write in flight is done.
  void Send(ServingStatus status) {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    if (writing_) {
      pending_ = status;
      return;
    }
    WriteLocked(status);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "health: the stream broke"));
    } else if (pending_.has_value() && !finished_) {
      const ServingStatus status = *pending_;
      pending_.reset();
      WriteLocked(status);
    }
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "health: Watch cancelled"));
  }

  void OnDone() override {
    health_->RemoveWatch(this);
    delete this;
  }

 private:
  void WriteLocked(ServingStatus status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    response_.set_status(status);
    StartWrite(&response_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  HealthService* const health_;
  const bool known_service_;
  absl::Mutex mu_;
  HealthCheckResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<ServingStatus> pending_ ABSL_GUARDED_BY(mu_);
};

// A Watch answered with an error at once; it holds nothing once done.
class HealthService::RefusedWatch : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  explicit RefusedWatch(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

HealthService::HealthService(int max_watches) : max_watches_(max_watches) {}

HealthService::~HealthService() = default;

grpc::Service* HealthService::ServiceForServer() {
  absl::MutexLock lock(&mu_);
  endpoints_.push_back(std::make_unique<Endpoint>(this));
  return endpoints_.back().get();
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (!withdrawn_) Publish(serving);
}

void HealthService::Withdraw() {
  absl::MutexLock lock(&mu_);
  withdrawn_ = true;
  Publish(false);
}

int HealthService::OpenWatches() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(watches_.size());
}

void HealthService::Publish(bool serving) {
  if (serving_ == serving) return;
  serving_ = serving;
  for (WatchReactor* watch : watches_) {
    if (watch->known_service()) watch->Send(StatusOf(true));
  }
}

HealthService::ServingStatus HealthService::StatusOf(bool known_service) const {
  if (!known_service) return HealthCheckResponse::SERVICE_UNKNOWN;
  return serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest& request,
                                               HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (request.service().size() > kMaxHealthServiceNameBytes) {
    reactor->Finish(ServiceNameTooLong(request));
  } else if (!IsKnownService(request.service())) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 absl::StrCat("health: unknown service ", request.service())));
  } else {
    {
      absl::MutexLock lock(&mu_);
      response->set_status(StatusOf(true));
    }
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    const HealthCheckRequest& request) {
  if (request.service().size() > kMaxHealthServiceNameBytes) {
    return new RefusedWatch(ServiceNameTooLong(request));
  }
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(watches_.size()) >= max_watches_) {
    return new RefusedWatch(grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("health: ", max_watches_, " Watch streams already open on this server")));
  }
  const bool known_service = IsKnownService(request.service());
  auto* watch = new WatchReactor(this, known_service);
  watches_.insert(watch);
  watch->Send(StatusOf(known_service));
  return watch;
}

void HealthService::RemoveWatch(WatchReactor* watch) {
  absl::MutexLock lock(&mu_);
  watches_.erase(watch);
}

}  // namespace ffibox

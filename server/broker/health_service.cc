#include "server/broker/health_service.h"

#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/thread_name.h"

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

// A call of the service. Each operation it starts is tagged with a pair of the call and
// which operation it was.
class HealthService::Call {
 public:
  virtual ~Call() = default;
  // Runs on the endpoint's thread; `ok` as the completion queue reported it.
  virtual void Handle(int event, bool ok) = 0;
};

// One server's grpc.health.v1.Health: its service, its completion queue and the thread
// that drains it. Every operation on the queue starts through Begin, which refuses once the
// queue is shut down (gRPC aborts on an operation started on a shut-down queue).
class HealthService::Endpoint {
 public:
  Endpoint(HealthService* health, grpc::ServerBuilder* builder) : health_(health) {
    builder->RegisterService(&service_);
    queue_ = builder->AddCompletionQueue();
  }

  ~Endpoint() { Stop(); }

  HealthService* health() const { return health_; }
  grpc::health::v1::Health::AsyncService* service() { return &service_; }
  grpc::ServerCompletionQueue* queue() { return queue_.get(); }

  // Waits for the first Check and Watch and starts the thread (once).
  void Serve();

  // Runs `start` (which starts one operation on the queue) unless the queue is shut down;
  // false if it did not.
  template <typename Start>
  bool Begin(Start start) {
    absl::MutexLock lock(&mu_);
    if (stopped_) return false;
    start();
    return true;
  }

  // Shuts the queue down and drains it. Requires the server to have been shut down.
  void Stop();

 private:
  void Drain() {
    void* tag = nullptr;
    bool ok = false;
    while (queue_->Next(&tag, &ok)) {
      auto* event = static_cast<const std::pair<Call*, int>*>(tag);
      event->first->Handle(event->second, ok);
    }
  }

  HealthService* const health_;
  grpc::health::v1::Health::AsyncService service_;
  std::unique_ptr<grpc::ServerCompletionQueue> queue_;
  std::thread thread_;
  absl::Mutex mu_;
  bool serving_ = false;  // Serve ran (once, on the owner's thread; never again after Stop)
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

// A Check: asked for, then answered, then deleted.
class HealthService::CheckCall : public Call {
 public:
  // Waits for the next Check on `endpoint` (the caller made sure its queue is up).
  explicit CheckCall(Endpoint* endpoint) : endpoint_(endpoint), responder_(&context_) {
    endpoint->service()->RequestCheck(&context_, &request_, &responder_, endpoint->queue(),
                                      endpoint->queue(), &requested_);
  }

  static void Accept(Endpoint* endpoint) {
    endpoint->Begin([endpoint] { new CheckCall(endpoint); });
  }

  void Handle(int event, bool ok) override {
    // Not asked for (the server shut down), or answered: nothing else comes.
    if (event != kRequested || !ok) {
      delete this;
      return;
    }
    Accept(endpoint_);
    ServingStatus status;
    const grpc::Status answer = endpoint_->health()->Answer(request_, &status);
    const bool started = endpoint_->Begin([&] {
      if (answer.ok()) {
        response_.set_status(status);
        responder_.Finish(response_, grpc::Status::OK, &finished_);
      } else {
        responder_.FinishWithError(answer, &finished_);
      }
    });
    if (!started) delete this;
  }

 private:
  enum Event { kRequested, kFinished };

  Endpoint* const endpoint_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  HealthCheckResponse response_;
  grpc::ServerAsyncResponseWriter<HealthCheckResponse> responder_;
  std::pair<Call*, int> requested_{this, kRequested};
  std::pair<Call*, int> finished_{this, kFinished};
};

// A Watch: sends the current status, then each change (only the latest if changes come
// faster than the client reads), until the client cancels or the server shuts down. Deleted
// once gRPC said the call is done and no write or finish of its own is in flight.
class HealthService::WatchCall : public Call {
 public:
  explicit WatchCall(Endpoint* endpoint) : endpoint_(endpoint), writer_(&context_) {
    context_.AsyncNotifyWhenDone(&call_done_);
    endpoint->service()->RequestWatch(&context_, &request_, &writer_, endpoint->queue(),
                                      endpoint->queue(), &requested_);
  }

  static void Accept(Endpoint* endpoint) {
    endpoint->Begin([endpoint] { new WatchCall(endpoint); });
  }

  // Set before the watch is counted, never changed after.
  bool known_service() const { return known_service_; }

  // Sends `status` now, or once the write in flight is done. Called by HealthService with
  // its lock held.
  void Send(ServingStatus status) {
    absl::MutexLock lock(&mu_);
    if (ended_) return;
    if (writing_) {
      pending_ = status;
      return;
    }
    WriteLocked(status);
  }

  void Handle(int event, bool ok) override {
    switch (event) {
      case kRequested: {
        // Not asked for (the server shut down): gRPC tells "done" only of started calls.
        if (!ok) {
          delete this;
          return;
        }
        Accept(endpoint_);
        grpc::Status refused = request_.service().size() > kMaxHealthServiceNameBytes
                                   ? ServiceNameTooLong(request_)
                                   : grpc::Status::OK;
        if (refused.ok()) {
          known_service_ = IsKnownService(request_.service());
          refused = endpoint_->health()->AddWatch(this, known_service_);
          counted_ = refused.ok();
        }
        if (!refused.ok()) {
          absl::MutexLock lock(&mu_);
          FinishLocked(refused);
        }
        return;
      }
      case kWritten: {
        absl::MutexLock lock(&mu_);
        writing_ = false;
        if (!ok) {
          ended_ = true;  // the stream broke; "done" follows
        } else if (pending_.has_value() && !ended_) {
          const ServingStatus status = *pending_;
          pending_.reset();
          WriteLocked(status);
        }
        break;
      }
      case kFinished: {
        absl::MutexLock lock(&mu_);
        finishing_ = false;
        break;
      }
      case kDone: {
        {
          absl::MutexLock lock(&mu_);
          done_ = true;
          ended_ = true;
        }
        if (counted_) endpoint_->health()->RemoveWatch(this);
        break;
      }
    }
    bool last = false;
    {
      absl::MutexLock lock(&mu_);
      last = done_ && !writing_ && !finishing_;
    }
    if (last) delete this;
  }

 private:
  enum Event { kRequested, kWritten, kFinished, kDone };

  void WriteLocked(ServingStatus status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    response_.set_status(status);
    writing_ = endpoint_->Begin([this] { writer_.Write(response_, &written_); });
    if (!writing_) ended_ = true;
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ended_) return;
    ended_ = true;
    finishing_ = endpoint_->Begin([&] { writer_.Finish(status, &finished_); });
  }

  Endpoint* const endpoint_;
  grpc::ServerContext context_;
  HealthCheckRequest request_;
  grpc::ServerAsyncWriter<HealthCheckResponse> writer_;
  bool known_service_ = false;
  bool counted_ = false;  // in HealthService's watches_ (only the endpoint's thread)
  std::pair<Call*, int> requested_{this, kRequested};
  std::pair<Call*, int> written_{this, kWritten};
  std::pair<Call*, int> finished_{this, kFinished};
  std::pair<Call*, int> call_done_{this, kDone};
  absl::Mutex mu_;
  HealthCheckResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // no operation starts any more
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<ServingStatus> pending_ ABSL_GUARDED_BY(mu_);
};

void HealthService::Endpoint::Serve() {
  if (serving_) return;
  serving_ = true;
  CheckCall::Accept(this);
  WatchCall::Accept(this);
  thread_ = std::thread([this] {
    NameThisThread("ffibox-health");
    Drain();
  });
}

void HealthService::Endpoint::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    stopped_ = true;
    queue_->Shutdown();
  }
  if (thread_.joinable()) {
    thread_.join();
  } else {
    Drain();
  }
}

HealthService::HealthService(int max_watches) : max_watches_(max_watches) {}

HealthService::~HealthService() { Stop(); }

void HealthService::Stop() {
  std::vector<Endpoint*> endpoints;
  {
    absl::MutexLock lock(&mu_);
    withdrawn_ = true;  // no status is sent any more
    for (const std::unique_ptr<Endpoint>& endpoint : endpoints_)
      endpoints.push_back(endpoint.get());
  }
  // Unlocked: the calls that end while a queue drains take the lock.
  for (Endpoint* endpoint : endpoints) endpoint->Stop();
}

void HealthService::AddTo(grpc::ServerBuilder* builder) {
  absl::MutexLock lock(&mu_);
  endpoints_.push_back(std::make_unique<Endpoint>(this, builder));
}

void HealthService::Serve() {
  absl::MutexLock lock(&mu_);
  for (const std::unique_ptr<Endpoint>& endpoint : endpoints_) endpoint->Serve();
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
  for (WatchCall* watch : watches_) {
    if (watch->known_service()) watch->Send(StatusOf(true));
  }
}

HealthService::ServingStatus HealthService::StatusOf(bool known_service) const {
  if (!known_service) return HealthCheckResponse::SERVICE_UNKNOWN;
  return serving_ ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

grpc::Status HealthService::Answer(const HealthCheckRequest& request, ServingStatus* status) const {
  if (request.service().size() > kMaxHealthServiceNameBytes) return ServiceNameTooLong(request);
  if (!IsKnownService(request.service())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("health: unknown service ", request.service()));
  }
  absl::MutexLock lock(&mu_);
  *status = StatusOf(true);
  return grpc::Status::OK;
}

grpc::Status HealthService::AddWatch(WatchCall* watch, bool known_service) {
  absl::MutexLock lock(&mu_);
  if (static_cast<int>(watches_.size()) >= max_watches_) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("health: ", max_watches_, " Watch streams already open on this server"));
  }
  watches_.insert(watch);
  watch->Send(StatusOf(known_service));
  return grpc::Status::OK;
}

void HealthService::RemoveWatch(WatchCall* watch) {
  absl::MutexLock lock(&mu_);
  watches_.erase(watch);
}

}  // namespace ffibox

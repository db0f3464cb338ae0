#include "server/broker/grpc_pollers.h"

#include "core/thread_name.h"

namespace ffibox {

GrpcPollers::GrpcPollers(grpc::ServerBuilder* builder) : queue_(builder->AddCompletionQueue()) {}

GrpcPollers::~GrpcPollers() { Stop(); }

void GrpcPollers::Stop() {
  if (stopped_) return;
  stopped_ = true;
  queue_->Shutdown();
  void* tag = nullptr;
  bool ok = false;
  // Nothing is ever asked of this queue, so only its shutdown ends a wait; the threads see
  // it, and without threads the queue is drained here (gRPC requires it before deletion).
  if (threads_.empty()) {
    while (queue_->Next(&tag, &ok)) {
    }
  }
  for (std::thread& thread : threads_) thread.join();
}

void GrpcPollers::Start(int threads) {
  for (int i = 0; i < threads; ++i) {
    threads_.emplace_back([this] {
      void* tag = nullptr;
      bool ok = false;
      while (queue_->Next(&tag, &ok)) {
      }
    });
    NameThread(threads_.back(), "ffibox-poll");
  }
}

}  // namespace ffibox

#include "client/cpp/internal/pending_handle.h"

#include <chrono>
#include <utility>

#include "client/cpp/internal/session_stream.h"

namespace ffibox {
namespace client_internal {

std::shared_ptr<PendingHandle> PendingHandle::Answered(v1::Response answer) {
  std::shared_ptr<PendingHandle> pending(new PendingHandle());
  pending->expected_ = answer.result_case();
  std::promise<absl::StatusOr<v1::Response>> answered;
  pending->answered_handle_.store(HandleOf(answer));
  pending->answered_.store(true);
  answered.set_value(std::move(answer));
  pending->future_ = answered.get_future().share();
  return pending;
}

std::shared_ptr<PendingHandle> PendingHandle::Awaiting(
    uint64_t request_id, v1::Request::OpCase op, v1::Response::ResultCase expected,
    std::future<absl::StatusOr<v1::Response>> answer,
    std::shared_ptr<const PendingHandle> prerequisite) {
  std::shared_ptr<PendingHandle> pending(new PendingHandle());
  pending->request_id_ = request_id;
  pending->op_ = op;
  pending->expected_ = expected;
  pending->prerequisite_ = std::move(prerequisite);
  pending->future_ = answer.share();
  return pending;
}

std::optional<absl::StatusOr<v1::Response>> PendingHandle::Ready() const {
  std::shared_future<absl::StatusOr<v1::Response>> answer;
  {
    absl::MutexLock lock(&mu_);
    if (own_.has_value()) return own_;
    answer = future_;
  }
  if (answer.wait_for(std::chrono::seconds(0)) != std::future_status::ready) return std::nullopt;
  absl::StatusOr<v1::Response> own = SessionStream::Expect(op_, answer.get(), expected_);
  absl::MutexLock lock(&mu_);
  if (!own_.has_value()) {
    answered_handle_.store(HandleOf(own), std::memory_order_relaxed);
    answered_.store(true, std::memory_order_release);
    own_ = std::move(own);
  }
  return own_;
}

absl::StatusOr<v1::Response> PendingHandle::Merged(absl::StatusOr<v1::Response> own) const {
  if (own.ok() || prerequisite_ == nullptr) return own;
  return prerequisite_->Explain(own.status());
}

absl::StatusOr<v1::Response> PendingHandle::Wait() const {
  std::shared_future<absl::StatusOr<v1::Response>> answer;
  {
    absl::MutexLock lock(&mu_);
    answer = future_;
  }
  answer.wait();
  return Merged(*Ready());
}

uint64_t PendingHandle::HandleOf(const absl::StatusOr<v1::Response>& answer) {
  if (!answer.ok()) return 0;
  return answer->has_library() ? answer->library().library() : answer->function().function();
}

uint64_t PendingHandle::handle() const { return HandleOf(Wait()); }

PendingHandle::Name PendingHandle::Current() const {
  if (answered_.load(std::memory_order_acquire)) {
    return Name{answered_handle_.load(std::memory_order_relaxed), 0};
  }
  std::optional<absl::StatusOr<v1::Response>> own = Ready();
  if (!own.has_value()) return Name{0, request_id_};
  return Name{HandleOf(*own), 0};
}

absl::Status PendingHandle::Explain(absl::Status failure) const {
  if (failure.ok()) return failure;
  std::optional<absl::StatusOr<v1::Response>> own = Ready();
  if (!own.has_value() || own->ok()) return failure;
  return Merged(*std::move(own)).status();
}

std::future<absl::StatusOr<v1::Response>> RefusedAnswer(absl::Status status) {
  std::promise<absl::StatusOr<v1::Response>> refused;
  refused.set_value(std::move(status));
  return refused.get_future();
}

}  // namespace client_internal
}  // namespace ffibox

#include "client/cpp/internal/pending_handle.h"

#include <chrono>
#include <utility>

#include "client/cpp/internal/session_stream.h"

namespace ffibox {
namespace client_internal {

std::shared_ptr<PendingHandle> PendingHandle::Answered(v1::Response answer) {
  std::shared_ptr<PendingHandle> pending(new PendingHandle());
  pending->expected_ = answer.result_case();
  absl::MutexLock lock(&pending->mu_);
  pending->answer_ = std::move(answer);
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
  absl::MutexLock lock(&pending->mu_);
  pending->future_ = std::move(answer);
  return pending;
}

void PendingHandle::Settle(absl::StatusOr<v1::Response> response) const {
  answer_ = SessionStream::Expect(op_, std::move(response), expected_);
  if (answer_->ok() || prerequisite_ == nullptr) return;
  const absl::StatusOr<v1::Response>& prerequisite = prerequisite_->Wait();
  if (!prerequisite.ok()) answer_ = prerequisite.status();
}

const absl::StatusOr<v1::Response>* PendingHandle::AnswerIfReady() const {
  if (!answer_.has_value() &&
      future_.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
    Settle(future_.get());
  }
  return answer_.has_value() ? &*answer_ : nullptr;
}

const absl::StatusOr<v1::Response>& PendingHandle::Wait() const {
  absl::MutexLock lock(&mu_);
  if (!answer_.has_value()) Settle(future_.get());
  return *answer_;
}

uint64_t PendingHandle::HandleOf(const absl::StatusOr<v1::Response>& answer) {
  if (!answer.ok()) return 0;
  return answer->has_library() ? answer->library().library() : answer->function().function();
}

uint64_t PendingHandle::handle() const { return HandleOf(Wait()); }

PendingHandle::Name PendingHandle::Current() const {
  absl::MutexLock lock(&mu_);
  const absl::StatusOr<v1::Response>* answer = AnswerIfReady();
  if (answer == nullptr) return Name{0, request_id_};
  return Name{HandleOf(*answer), 0};
}

absl::Status PendingHandle::Explain(absl::Status failure) const {
  if (failure.ok()) return failure;
  const absl::StatusOr<v1::Response>& own = Wait();
  return own.ok() ? failure : own.status();
}

}  // namespace client_internal
}  // namespace ffibox

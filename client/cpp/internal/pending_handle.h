// A library or function handle the server assigns in its answer to a request that may still
// be in flight (Session::LoadAsync, Library::ResolveAsync): until that answer has come,
// requests name the handle by the request's id (ResolveFunction.library_request,
// Call.function_request; docs/protocol.md, "Pipelined requests"), and afterwards by the
// handle itself.
//
// Internal to the C++ client. Thread-safe; shared by the copies of a Library or RawFunction.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_PENDING_HANDLE_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_PENDING_HANDLE_H_

#include <cstdint>
#include <future>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

class PendingHandle {
 public:
  // How a request names the handle now: by `handle` once the answer has come (0 if the
  // request failed), else by `request_id`.
  struct Name {
    uint64_t handle = 0;
    uint64_t request_id = 0;
  };

  // The handle `answer` (a LibraryLoaded or FunctionResolved response) carries.
  static std::shared_ptr<PendingHandle> Answered(v1::Response answer);
  // The handle the answer to request `request_id` (of kind `op`) will carry, `expected` its
  // result; `answer` is that request's future (SessionStream::SendAsync). When the request
  // failed and so did `prerequisite`'s (the load a resolve named; may be null), the
  // prerequisite's failure is this handle's.
  static std::shared_ptr<PendingHandle> Awaiting(uint64_t request_id, v1::Request::OpCase op,
                                                 v1::Response::ResultCase expected,
                                                 std::future<absl::StatusOr<v1::Response>> answer,
                                                 std::shared_ptr<const PendingHandle> prerequisite);

  PendingHandle(const PendingHandle&) = delete;
  PendingHandle& operator=(const PendingHandle&) = delete;

  // Waits for the answer: the response (its result is the expected one), or the request's
  // typed error (SessionStream::Expect).
  const absl::StatusOr<v1::Response>& Wait() const ABSL_LOCKS_EXCLUDED(mu_);
  // The handle, once answered (Wait); 0 when the request failed.
  uint64_t handle() const;
  // How a request sent now names the handle (without waiting).
  Name Current() const ABSL_LOCKS_EXCLUDED(mu_);
  // The failure of a request that named this handle: when this handle's own request failed,
  // that failure (the load or resolve the request depended on), else `failure` unchanged.
  absl::Status Explain(absl::Status failure) const;

 private:
  PendingHandle() = default;
  // The answer, if it has come (taking it from the future without waiting).
  const absl::StatusOr<v1::Response>* AnswerIfReady() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps the request's `response`: Expect's verdict, or the prerequisite's failure. The
  // prerequisite was answered first (the server answers a session's requests that need the
  // worker in order, and refuses at once), so this does not wait.
  void Settle(absl::StatusOr<v1::Response> response) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The handle `answer` carries.
  static uint64_t HandleOf(const absl::StatusOr<v1::Response>& answer);

  uint64_t request_id_ = 0;
  v1::Request::OpCase op_ = v1::Request::OP_NOT_SET;
  v1::Response::ResultCase expected_ = v1::Response::RESULT_NOT_SET;
  std::shared_ptr<const PendingHandle> prerequisite_;
  mutable absl::Mutex mu_;
  mutable std::future<absl::StatusOr<v1::Response>> future_ ABSL_GUARDED_BY(mu_);
  mutable std::optional<absl::StatusOr<v1::Response>> answer_ ABSL_GUARDED_BY(mu_);
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_PENDING_HANDLE_H_

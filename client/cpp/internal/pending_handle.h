// A library or function handle the server assigns in its answer to a request that may still
// be in flight (Session::LoadAsync, Library::ResolveAsync): until that answer has come,
// requests name the handle by the request's id (ResolveFunction.library_request,
// Call.function_request; docs/protocol.md, "Pipelined requests"), and afterwards by the
// handle itself.
//
// Internal to the C++ client. Thread-safe; shared by the copies of a Library or RawFunction.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_PENDING_HANDLE_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_PENDING_HANDLE_H_

#include <atomic>
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

    // The answer came and the request failed: there is nothing to name.
    bool failed() const { return handle == 0 && request_id == 0; }

    // Sets the field of `message` that names it: `set_request` (e.g.
    // &v1::Call::set_function_request) while the answer has not come, else `set_handle`.
    template <typename Message>
    void Apply(Message* message, void (Message::*set_handle)(uint64_t),
               void (Message::*set_request)(uint64_t)) const {
      if (request_id != 0) {
        (message->*set_request)(request_id);
      } else {
        (message->*set_handle)(handle);
      }
    }
  };

  // The handle `answer` (a LibraryLoaded or FunctionResolved response) carries.
  static std::shared_ptr<PendingHandle> Answered(v1::Response answer);
  // The handle the answer to request `request_id` (of kind `op`) will carry, `expected` its
  // result; `answer` is that request's future (SessionStream::SendAsync). `prerequisite`
  // (may be null) is the handle the request named (the library of a resolve): when both
  // failed, the prerequisite's failure is reported as this handle's.
  static std::shared_ptr<PendingHandle> Awaiting(uint64_t request_id, v1::Request::OpCase op,
                                                 v1::Response::ResultCase expected,
                                                 std::future<absl::StatusOr<v1::Response>> answer,
                                                 std::shared_ptr<const PendingHandle> prerequisite);

  PendingHandle(const PendingHandle&) = delete;
  PendingHandle& operator=(const PendingHandle&) = delete;

  // Waits for the answer: the response (its result is the expected one), or the request's
  // typed error (SessionStream::Expect) or, when the prerequisite's failure has come by then,
  // that failure.
  absl::StatusOr<v1::Response> Wait() const ABSL_LOCKS_EXCLUDED(mu_);
  // The handle (waits for the answer); 0 when the request failed.
  uint64_t handle() const;
  // How a request sent now names the handle. Never waits.
  Name Current() const ABSL_LOCKS_EXCLUDED(mu_);
  // The failure of a request that named this handle: this handle's own failure (as Wait
  // reports it) when its answer has come and it failed, else `failure` unchanged. Never
  // waits: the server answers a request that failed because of this one after this one's
  // answer, so by then that answer has come.
  absl::Status Explain(absl::Status failure) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  PendingHandle() = default;
  // The request's own verdict if its answer has come (Expect's); nullopt otherwise.
  std::optional<absl::StatusOr<v1::Response>> Ready() const ABSL_LOCKS_EXCLUDED(mu_);
  // `own` (an answer that came), or the prerequisite's failure when `own` failed too.
  absl::StatusOr<v1::Response> Merged(absl::StatusOr<v1::Response> own) const;
  // The handle `answer` carries.
  static uint64_t HandleOf(const absl::StatusOr<v1::Response>& answer);

  uint64_t request_id_ = 0;
  v1::Request::OpCase op_ = v1::Request::OP_NOT_SET;
  v1::Response::ResultCase expected_ = v1::Response::RESULT_NOT_SET;
  std::shared_ptr<const PendingHandle> prerequisite_;
  // Set once, before the handle is shared; each waiter waits on a copy.
  std::shared_future<absl::StatusOr<v1::Response>> future_;
  mutable absl::Mutex mu_;
  mutable std::optional<absl::StatusOr<v1::Response>> own_ ABSL_GUARDED_BY(mu_);
  // Once the answer has come: the handle it carries (0: failed), readable without the lock,
  // so that naming an answered handle (every call's PrepareCall) costs two atomic loads.
  mutable std::atomic<uint64_t> answered_handle_{0};
  mutable std::atomic<bool> answered_{false};
};

// The answer of a request refused before it was sent (text that is not UTF-8), for
// PendingHandle::Awaiting in place of SessionStream::SendAsync's.
std::future<absl::StatusOr<v1::Response>> RefusedAnswer(absl::Status status);

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_PENDING_HANDLE_H_

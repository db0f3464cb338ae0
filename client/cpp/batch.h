// Several typed calls of one session sent as one Batch request: one round trip to the worker
// for all of them, the way to many small calls per second.
//
//   ffibox::Batch batch = session->NewBatch();
//   std::vector<ffibox::BatchCall<int>> sums;
//   for (int i = 0; i < 1000; ++i) sums.push_back(batch.Add(add, i, i));
//   absl::Status ran = batch.Run();                 // OK, or the first failing call's error
//   absl::StatusOr<int> first = batch.Result(sums[0]);
//
// Each call is built exactly as a TypedFunction call is (internal/typed_call.h) when it is
// added, so client memory it passes (Buffer&, T*, std::vector&, a BlockGraph) must stay alive
// until Run returns; Run copies the OUT/INOUT memory of the calls that ran back into it. The
// worker runs the calls in order and stops at the first that fails: Run returns that call's
// error (`ErrorOf(status).batch_index()` names it), the calls before it have results and the
// calls after it did not run. A batch the server refuses (a malformed call, too many calls or
// block bytes: docs/protocol.md) runs no call. A crash or deadline in the middle fails the
// batch as a whole, as it fails a single call; the session's next request gets a new worker.
//
// A batch runs once. One thread builds and runs it; several batches may run at once on one
// session (they are pipelined like calls).
#ifndef FFIBOX_CLIENT_CPP_BATCH_H_
#define FFIBOX_CLIENT_CPP_BATCH_H_

#include <cstddef>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/cpp/internal/arg_traits.h"
#include "client/cpp/internal/call_builder.h"
#include "client/cpp/internal/memory_ops.h"
#include "client/cpp/internal/result_traits.h"
#include "client/cpp/internal/session_stream.h"
#include "client/cpp/internal/typed_call.h"
#include "client/cpp/raw_function.h"
#include "client/cpp/typed_function.h"
#include "client/cpp/values.h"
#include "ffibox/v1/ffibox.pb.h"
#include "google/protobuf/arena.h"

namespace ffibox {

class Batch;

// One call added to a Batch, returning a C++ R: what Batch::Result takes.
template <typename R>
class BatchCall {
 public:
  // What the call yields (as TypedFunction<R(...)>::Value) and what Batch::Result returns.
  using Value = typename client_internal::ResultTraits<R>::Value;
  using Result = std::conditional_t<std::is_void_v<Value>, absl::Status, absl::StatusOr<Value>>;

  // The call's index in the batch (Error.batch_index of its failure).
  size_t index() const { return index_; }

 private:
  friend class Batch;
  BatchCall(size_t index, bool capture_errno) : index_(index), capture_errno_(capture_errno) {}

  size_t index_;
  bool capture_errno_;
};

class Batch {
 public:
  // An empty batch of the session that `stream` and `memory` serve; Session::NewBatch does
  // this.
  Batch(std::shared_ptr<client_internal::SessionStream> stream,
        std::shared_ptr<client_internal::MemoryOps> memory);

  Batch(Batch&&) = default;

  // Appends a call of `function` with `args` (as its operator() takes them) and the session's
  // default deadline. A call whose arguments cannot be sent, or whose function belongs to
  // another session, makes Run fail with that error, naming the call, before anything is
  // sent.
  template <typename R, typename... A>
  BatchCall<R> Add(const TypedFunction<R(A...)>& function,
                   typename client_internal::ArgTraits<A>::Param... args) {
    return Append<R, A...>(function.raw(), CallOptions{}, /*capture_errno=*/false, args...);
  }

  // Like Add with `options` (the call's own deadline, errno set before it), and the worker's
  // errno after the call captured for ResultWithErrno.
  template <typename R, typename... A>
  BatchCall<R> AddWith(const TypedFunction<R(A...)>& function, const CallOptions& options,
                       typename client_internal::ArgTraits<A>::Param... args) {
    return Append<R, A...>(function.raw(), options, /*capture_errno=*/true, args...);
  }

  // The deadline of the whole batch (Batch.timeout_ms). Without one it is the sum of its
  // calls' deadlines, capped by the server.
  void SetTimeout(absl::Duration timeout);

  // The number of calls added.
  size_t size() const { return calls_; }

  // Sends the batch and waits for its answer; copies back the client memory of the calls
  // that ran. OK when every call succeeded; otherwise the first failing call's error (with
  // its batch_index), the server's refusal of the batch, or the error that failed it as a
  // whole (WORKER_CRASHED, CALL_TIMEOUT, ...). FAILED_PRECONDITION when run twice; INTERNAL
  // for an answer that does not fit the batch.
  absl::Status Run();

  // The result of `call` after Run: its value; its own error if it failed; the batch's error
  // if the batch failed as a whole; FAILED_PRECONDITION if an earlier call failed (this one
  // did not run) or Run was not called.
  template <typename R>
  typename BatchCall<R>::Result Result(const BatchCall<R>& call) const {
    absl::StatusOr<WithErrno<typename BatchCall<R>::Value>> outcome = ResultWithErrno(call);
    if constexpr (std::is_void_v<typename BatchCall<R>::Value>) {
      return outcome.status();
    } else {
      if (!outcome.ok()) return outcome.status();
      return std::move(outcome->value);
    }
  }

  // Result with the worker's errno right after the call (a call added with AddWith).
  template <typename R>
  absl::StatusOr<WithErrno<typename BatchCall<R>::Value>> ResultWithErrno(
      const BatchCall<R>& call) const {
    absl::StatusOr<const v1::CallResult*> result = CallResultAt(call.index());
    if (!result.ok()) return result.status();
    absl::StatusOr<WithErrno<typename BatchCall<R>::Value>> decoded =
        client_internal::DecodeTypedResult<R>(**result, call.capture_errno_, "the call", *memory_);
    if (!decoded.ok()) return InBatchAt(decoded.status(), call.index());
    return decoded;
  }

 private:
  template <typename R, typename... A>
  BatchCall<R> Append(const RawFunction& raw, const CallOptions& options, bool capture_errno,
                      typename client_internal::ArgTraits<A>::Param... args) {
    const size_t index = calls_++;
    // Built in place, in the batch's arena: no copy, no allocation per value.
    client_internal::CallBuilder builder(request_->mutable_batch()->add_calls());
    if (refusal_.ok()) {
      refusal_ = &raw.stream() != stream_.get()
                     ? AnotherSession()
                     : client_internal::AppendArgs<A...>(builder, args...);
      if (!refusal_.ok()) refusal_ = InBatchAt(refusal_, index);
    }
    raw.PrepareCall(builder.call(), options);
    if (refusal_.ok() && raw.pending()->Current().failed()) {
      refusal_ = InBatchAt(raw.Wait(), index);  // its resolve failed: nothing to call
    }
    if (builder.call().function_request() != 0) pipelined_.emplace_back(index, raw.pending());
    builder.call().set_capture_errno(capture_errno);
    if (builder.sends_blocks()) copy_backs_.emplace_back(index, std::move(builder));
    return BatchCall<R>(index, capture_errno);
  }

  static absl::Status AnotherSession();
  static absl::Status InBatchAt(const absl::Status& status, size_t index);
  // Checks the server's answer against the batch and copies back the blocks of the calls
  // that ran; the batch's outcome.
  absl::Status Accept(const v1::Response& response);
  // The result of call `index`, or why it has none (see Result).
  absl::StatusOr<const v1::CallResult*> CallResultAt(size_t index) const;

  std::shared_ptr<client_internal::SessionStream> stream_;
  std::shared_ptr<client_internal::MemoryOps> memory_;
  std::unique_ptr<google::protobuf::Arena> arena_;  // holds the request
  v1::Request* request_;                            // the batch, sent by Run
  size_t calls_ = 0;
  // The calls that name their function by its resolve request (by index in increasing
  // order), with that function: a call that failed because the resolve (or its library's
  // load) failed reports that failure.
  std::vector<std::pair<size_t, std::shared_ptr<const client_internal::PendingHandle>>> pipelined_;
  // The calls that send blocks, by index in increasing order, with what their blocks copy
  // back into client memory.
  std::vector<std::pair<size_t, client_internal::CallBuilder>> copy_backs_;
  absl::Status refusal_;  // the first call that could not be built
  bool ran_ = false;
  absl::Status outcome_;   // what Run returned
  v1::Response response_;  // the server's answer
  size_t accepted_ = 0;    // its results that were checked and copied back
};

}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_BATCH_H_

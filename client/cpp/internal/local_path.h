// The client's end of a same-host channel (ffibox.v1.OpenLocalChannel, docs/protocol.md):
// calls go to the session's worker through shared memory, bypassing gRPC and the broker,
// which still supervises the worker (its death closes the channel; it kills a call that
// overruns the session's timeout).
//
// Everything that comes back was written by the worker, which runs untrusted code: an answer
// is used only if it parses, answers the call sent, carries a known error code the worker may
// report or a call result that returns only the call's OUT/INOUT blocks with their exact sizes
// (core/call_answer.h, the broker's own check); anything else is INTERNAL and the channel is
// dropped, never a crash.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_LOCAL_PATH_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_LOCAL_PATH_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/shm_channel.h"
#include "ffibox/v1/ffibox.pb.h"

namespace ffibox {
namespace client_internal {

// The most bytes of one answer the client reads from the channel (a record returned by value
// may be as large as a type may be); it is read as it arrives, so the client holds only what
// the worker did send.
inline constexpr size_t kMaxLocalAnswerBytes = size_t{1} << 30;
// How long an answer that started may go without progress.
inline constexpr absl::Duration kLocalAnswerProgress = absl::Seconds(10);

class LocalPath {
 public:
  // Fetches the channel `opened` names from its door (after CheckUnixServer of the door's
  // socket: it must be this user's or root's) and maps it. PERMISSION_DENIED for a door of
  // another user, UNAVAILABLE when the door does not hand the channel over within `timeout`.
  static absl::StatusOr<std::unique_ptr<LocalPath>> Connect(const v1::LocalChannelOpened& opened,
                                                            absl::Duration timeout);

  // The worker generation the channel belongs to.
  uint64_t generation() const { return generation_; }

  // Sends `request` (a top-level call with its id set) and waits for its answer until
  // `deadline`. FAILED_PRECONDITION when the request could not be sent whole (the channel had
  // ended: the call did not run); UNAVAILABLE when the channel ended after (the worker was
  // lost, or closed the channel: closed_by_worker()); DEADLINE_EXCEEDED; INTERNAL for an
  // answer that fails the checks above or stalls. After any error the channel is unusable.
  // One call at a time (the caller serializes).
  absl::StatusOr<v1::Response> Exchange(const v1::Request& request, absl::Time deadline);

  // Whether the worker closed the channel itself (its worker was not lost).
  bool closed_by_worker() const;

  // Whether `request` is larger than the worker reads from the channel (the broker refuses
  // such a request the same way: send it there).
  bool TooLarge(const v1::Request& request) const {
    return max_request_bytes_ != 0 && request.ByteSizeLong() > max_request_bytes_;
  }

 private:
  LocalPath(std::unique_ptr<ShmChannel> channel, const v1::LocalChannelOpened& opened)
      : channel_(std::move(channel)),
        generation_(opened.generation()),
        max_request_bytes_(opened.max_request_bytes()) {}

  std::unique_ptr<ShmChannel> channel_;
  const uint64_t generation_;
  const uint64_t max_request_bytes_;
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_LOCAL_PATH_H_

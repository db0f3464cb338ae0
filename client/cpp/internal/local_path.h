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
//
// Callbacks (OpenLocalChannel.callbacks): native code that calls a callback during a call on
// the channel makes the worker send the CallbackInvoke there, as a Response with id 0. The
// thread waiting for the call's answer runs the callback's handler (InvocationRunner), sends
// its callback_return, and waits on; requests the handler makes inside the invocation come
// back here (Exchange, ExchangeNested) on the same thread, nested. A worker may invoke only
// while a call waits, naming that call's invocation as the parent, with a fresh id, at most
// kMaxChannelInvocationDepth deep; anything else drops the channel.
#ifndef FFIBOX_CLIENT_CPP_INTERNAL_LOCAL_PATH_H_
#define FFIBOX_CLIENT_CPP_INTERNAL_LOCAL_PATH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/cpp/internal/borrowed_block.h"
#include "client/cpp/internal/scalar_call.h"
#include "core/framing.h"
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
// Blocks of at least this many bytes travel in the channel's shared area (when it has one)
// instead of inside the request and answer frames: written there once by the client, used
// there by the library, read back once.
inline constexpr uint64_t kMinSharedBlockBytes = uint64_t{64} << 10;

// RESOURCE_EXHAUSTED for a request of `bytes` past the `limit` the server reads, in the
// broker's words ("request of N bytes exceeds the limit of M bytes").
absl::Status RequestTooLarge(uint64_t bytes, uint64_t limit);

class LocalPath {
 public:
  // Runs one invocation that came on the channel (the Response carrying its CallbackInvoke,
  // with the channel's generation) and returns the answer to send, or why it cannot be had
  // (INTERNAL for an invoke that fails the broker's checks: the channel is then dropped).
  // `path` is this channel, for the handler's nested requests, which must be answered by
  // `deadline` (the call's). The runner may change the message (it is the runner's, to stamp
  // its addresses' generation in place).
  using InvocationRunner = std::function<absl::StatusOr<v1::CallbackReturn>(
      v1::Response&, LocalPath& path, absl::Time deadline)>;
  // Runs one scalar invocation that came on the channel (core/scalar_wire.h: the worker wrote
  // it in the wire format) and returns its answer, written back in the wire format too; or
  // nullopt, nothing run, for one it does not take (a callback without a scalar handler, an
  // invoke RunChecked would refuse): it then runs as a message, through InvocationRunner.
  using ScalarInvocationRunner = std::function<std::optional<ScalarReturn>(
      const ScalarInvoke&, LocalPath& path, absl::Time deadline)>;

  // Fetches the channel `opened` names from its door (after CheckUnixServer of the door's
  // socket: it must be this user's or root's) and maps it. PERMISSION_DENIED for a door of
  // another user, UNAVAILABLE when the door does not hand the channel over within `timeout`.
  // `invocations` runs the invocations that come on the channel (the channel was opened
  // with `callbacks`); null: none may come (an invoke is then a malformed answer).
  // `scalar_invocations` runs those the worker writes as scalar invocations, when not null.
  static absl::StatusOr<std::unique_ptr<LocalPath>> Connect(
      const v1::LocalChannelOpened& opened, absl::Duration timeout,
      InvocationRunner invocations = nullptr, ScalarInvocationRunner scalar_invocations = nullptr);
  // The client's end of the channel `channel` (attached as its creator) that `opened`
  // describes: what Connect returns once it has the channel.
  static std::unique_ptr<LocalPath> Attach(std::unique_ptr<ShmChannel> channel,
                                           const v1::LocalChannelOpened& opened,
                                           InvocationRunner invocations,
                                           ScalarInvocationRunner scalar_invocations = nullptr);

  // The worker generation the channel belongs to.
  uint64_t generation() const { return generation_; }

  // Tells the channel its worker is gone (the session's stream ended: ffiboxd, and with it
  // the worker, may be dead, which the channel cannot see): a call waiting on it fails with
  // UNAVAILABLE. Thread-safe.
  void MarkPeerGone() { channel_->MarkPeerGone(); }

  // Sends `request` (a top-level call with its id set) and waits for its answer until
  // `deadline`. Its `borrowed` blocks (plain bytes: a typed call's Buffers, which want no
  // pointers reported) of kMinSharedBlockBytes or more travel in the shared area
  // (MemoryBlock.shared_offset), as many as fit; the other borrowed bytes go into the
  // frame. A block's bytes that come back through the area go straight to its borrowed
  // `into` (and its BlockContents stays marked `shared`), or else into the answer, which
  // then looks as if they had come in the frame. A worker that cannot map the area gets the
  // call again without it (and no later call uses it); a call that fits no frame without the
  // area is then answered RESOURCE_EXHAUSTED, as the broker answers it, and the channel stays.
  // FAILED_PRECONDITION when the request could not be sent whole (the channel had
  // ended: the call did not run; `request` is as it was); UNAVAILABLE when the channel ended
  // after (the worker was lost, or closed the channel: closed_by_worker()); DEADLINE_EXCEEDED;
  // INTERNAL for an answer that fails the checks above or stalls. After any error the
  // channel is unusable. One call at a time (the caller serializes). After an answer,
  // `request` may have lost the data of its blocks that went through the shared area.
  // A call inside an invocation that came on the channel (`request->invocation()` set; only
  // from that invocation's handler, on its thread) uses no shared area: the outer call's
  // blocks are there.
  // `result_bytes`: what the called function's result adds to its answer
  // (ResultAnswerBytes; nullopt: not known): an answer announced longer than the call may be
  // answered with (CallAnswerBytes) is refused before any more of it is read.
  absl::StatusOr<v1::Response> Exchange(v1::Request* request, BorrowedBlocks borrowed,
                                        absl::Time deadline,
                                        std::optional<uint64_t> result_bytes = std::nullopt);
  // Sends a request other than a call (read_memory, read_memory_list, read_string,
  // write_memory, get_layout; its id and invocation set) from the handler of an invocation
  // that came on the channel, or at the top level (invocation 0) where the worker takes it
  // (memory_requests()), and waits for its answer, checked (CheckNestedAnswer); errors as
  // Exchange's.
  absl::StatusOr<v1::Response> ExchangeNested(const v1::Request& request, absl::Time deadline);

  // The answer to a scalar call (ExchangeScalar): any other answer than the one shape read
  // from its bytes (`response`), as Exchange returns it; else (read()) the call's scalar
  // result, or nullopt for none.
  struct ScalarAnswer {
    std::optional<v1::Response> response;
    std::optional<ScalarBits> result;

    bool read() const { return !response.has_value(); }
  };
  // Sends `call` (a top-level call whose arguments are all scalars, with request id `id`)
  // written in protobuf's wire format without the message (scalar_call.h), and waits for its
  // answer until `deadline`. An answer of the one shape such a call gets is read from its
  // bytes, also after callbacks' invocations, which are served; any other (an error, a result
  // with more in it) is read, checked and returned as Exchange reads, checks and returns it.
  // Errors as Exchange's.
  absl::StatusOr<ScalarAnswer> ExchangeScalar(uint64_t id, const ScalarCall& call,
                                              absl::Time deadline);

  // Whether the server takes requests naming an invocation on this channel through the
  // session stream (LocalChannelOpened.channel_invocations).
  bool channel_invocations() const { return channel_invocations_; }
  // Whether the worker takes memory and layout requests at the top level of this channel
  // (LocalChannelOpened.memory_requests).
  bool memory_requests() const { return memory_requests_; }

  // Whether the worker closed the channel itself (its worker was not lost).
  bool closed_by_worker() const;
  // Whether the worker's end is gone without its closing the channel (it died, or ffiboxd
  // killed it: a call's deadline passed).
  bool lost() const;

  // Whether `request` is larger than the worker reads from the channel (the broker refuses
  // such a request the same way: send it there).
  // Blocks in the shared area do not count; borrowed bytes that would go in the frame do.
  bool TooLarge(const v1::Request& request, BorrowedBlocks borrowed = {}) const;

  // Whether a scalar call `call` may be larger than the worker reads from the channel
  // (whatever its id): ExchangeScalar would refuse it.
  bool TooLarge(const ScalarCall& call) const;

  // How many bytes of blocks went through the shared area so far (both ways).
  uint64_t shared_bytes_moved() const { return shared_bytes_moved_; }

  // How many calls the worker says it ran from their arguments' bits, without the request's
  // parse (kLocalScalarCallsWord): the worker's word, a statistic never to act on.
  uint64_t worker_scalar_calls() const;

 private:
  LocalPath(std::unique_ptr<ShmChannel> channel, const v1::LocalChannelOpened& opened,
            InvocationRunner invocations, ScalarInvocationRunner scalar_invocations)
      : channel_(std::move(channel)),
        generation_(opened.generation()),
        max_request_bytes_(opened.max_request_bytes()),
        channel_invocations_(opened.channel_invocations()),
        memory_requests_(opened.memory_requests()),
        invocations_(std::move(invocations)),
        scalar_invocations_(std::move(scalar_invocations)),
        shared_usable_(channel_->shared_bytes() != 0) {}

  // A block of the request placed in the shared area: where, and its data taken out of the
  // request (given back by Unshare, or reused for the block's answer).
  struct SharedBlock {
    int index;
    uint64_t offset;
    std::string data;
  };
  // Which of `call`'s borrowed blocks go through the shared area, at which offsets (no data
  // yet).
  std::vector<SharedBlock> PlanShared(const v1::Call& call, BorrowedBlocks borrowed) const;
  // The answer RESOURCE_EXHAUSTED to `request`, too large for a frame: what the broker says.
  v1::Response TooLargeAnswer(const v1::Request& request, BorrowedBlocks borrowed) const;
  // Writes the planned blocks into the area (from `borrowed` bytes where the block has some)
  // and takes their data out of `call`. RESOURCE_EXHAUSTED when the area cannot be mapped
  // (then nothing changed).
  absl::Status Share(v1::Call* call, BorrowedBlocks borrowed, std::vector<SharedBlock>& planned);
  // Puts `call` back as it was before Share.
  static void Unshare(v1::Call* call, std::vector<SharedBlock>& shared);
  // Sends and reads the answer, checked; runs the invocations that come meanwhile. After a
  // failure past the request's writing, the channel is broken (broken_).
  // `max_answer`: the longest answer taken (AnswerBoundOf).
  absl::StatusOr<v1::Response> ExchangeFrames(const v1::Request& request, absl::Time deadline,
                                              size_t max_answer);
  absl::StatusOr<v1::Response> ExchangeFramesOnce(const v1::Request& request, absl::Time deadline,
                                                  size_t max_answer);
  absl::StatusOr<ScalarAnswer> ExchangeScalarOnce(uint64_t id, const ScalarCall& call,
                                                  absl::Time deadline);
  // After a failure on the channel: the channel is broken from then on (broken_), unless the
  // request was refused before any of it was written.
  void NoteFailure(const absl::Status& failure);
  // Reads the answer to `request` (written) until `deadline`, checked, at most `max_answer`
  // bytes; runs the invocations that come meanwhile.
  absl::StatusOr<v1::Response> ReadAnswer(const v1::Request& request, absl::Time deadline,
                                          size_t max_answer);
  // One frame that came while `request` waited for its answer (or why none came): the answer,
  // checked; or, for a callback's invocation, nullopt once its handler ran and its answer was
  // sent (the call goes on). INTERNAL for a frame the worker may not send there.
  absl::StatusOr<std::optional<v1::Response>> TakeFrame(const v1::Request& request,
                                                        absl::StatusOr<FramePayload> frame,
                                                        absl::Time deadline);
  // Writes one request frame until `deadline`.
  absl::Status WriteRequest(const v1::Request& request, absl::Time deadline);
  // Runs the invocation `message` carries, which came while a call inside invocation
  // `parent` (0: a top-level call) waited for its answer until `deadline`, and sends its
  // answer. INVALID_ARGUMENT for an invocation the worker may not make there.
  absl::Status Serve(v1::Response message, uint64_t parent, absl::Time deadline);
  // The same for a frame that holds a scalar invocation (ReadScalarInvoke) the scalar runner
  // takes: true once it ran and its answer was sent; false, nothing done, for any other
  // frame. Errors as TakeFrame reports Serve's.
  absl::StatusOr<bool> ServeScalar(const FramePayload& frame, uint64_t parent, absl::Time deadline);
  // Whether invocation `id`, naming `named_parent`, may come while a call inside invocation
  // `parent` waits: INVALID_ARGUMENT if not.
  absl::Status CheckInvocation(uint64_t id, uint64_t named_parent, uint64_t parent) const;
  // Sends the answer `reply` to an invocation, or, when it is too large for a frame, an
  // error in its place.
  absl::Status SendReturn(v1::Request reply, absl::Time due);

  std::unique_ptr<ShmChannel> channel_;
  // The bytes of the last scalar answer or invocation read (ExchangeScalarOnce): the next
  // frame is read into them, so a scalar call allocates nothing to read its answer.
  std::string scalar_frame_buffer_;
  const uint64_t generation_;
  const uint64_t max_request_bytes_;
  const bool channel_invocations_;
  const bool memory_requests_;
  const InvocationRunner invocations_;
  const ScalarInvocationRunner scalar_invocations_;
  // The invocations that came on the channel and are running, innermost last.
  std::vector<uint64_t> open_invocations_;
  // Why the channel failed (a nested request's failure, which leaves the worker and this end
  // out of step): every exchange ends with it from then on. OK while it works.
  absl::Status broken_;
  bool shared_usable_;
  uint64_t shared_bytes_moved_ = 0;
};

}  // namespace client_internal
}  // namespace ffibox

#endif  // FFIBOX_CLIENT_CPP_INTERNAL_LOCAL_PATH_H_

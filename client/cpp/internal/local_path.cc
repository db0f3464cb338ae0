#include "client/cpp/internal/local_path.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/algorithm/container.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/cpp/unix_server_check.h"
#include "core/bulk_copy.h"
#include "core/call_answer.h"
#include "core/call_shape.h"
#include "core/descriptor_passing.h"
#include "core/encoding_limits.h"
#include "core/errors.h"
#include "core/framing.h"
#include "core/local_channel.h"
#include "core/piece_stream.h"
#include "core/status_macros.h"
#include "core/types.h"

namespace ffibox {
namespace client_internal {
namespace {

// The borrowed entry of block `index`, or nullptr.
const BorrowedBlock* BorrowedOf(BorrowedBlocks borrowed, int index) {
  for (const BorrowedBlock& block : borrowed) {
    if (block.index == index) return &block;
  }
  return nullptr;
}

// Connects to the unix socket `path` and writes `token`; returns the connection.
absl::StatusOr<int> KnockAtDoor(const std::string& path, const std::string& token,
                                absl::Duration timeout) {
  struct sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("same-host door path too long: ", path));
  }
  memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", strerror(errno)));
  struct timeval wait = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait));
  if (connect(fd, reinterpret_cast<struct sockaddr*>(&address), sizeof(address)) != 0 ||
      send(fd, token.data(), token.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(token.size())) {
    const int saved = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("the same-host door ", path, ": ", strerror(saved)));
  }
  return fd;
}

// What an answer to a memory request holds besides the bytes it asks for (its id, tags,
// lengths, generation, an error's message).
constexpr uint64_t kMemoryAnswerOverhead = 4096;

// The most bytes the worker's answer to `request` may take: for a call, CallAnswerBytes with
// its function's `result_bytes` (kMaxLocalAnswerBytes when not known); for a raw read, a list
// of them, a string read and a write, what they ask for and kMemoryAnswerOverhead (a little
// more per read of a list); else kMaxLocalAnswerBytes.
size_t AnswerBoundOf(const v1::Request& request,
                     std::optional<uint64_t> result_bytes = std::nullopt) {
  uint64_t bound = kMaxLocalAnswerBytes;
  switch (request.op_case()) {
    case v1::Request::kCall:
      if (result_bytes.has_value()) bound = CallAnswerBytes(request.call(), *result_bytes);
      break;
    case v1::Request::kReadMemory:
      if (!request.read_memory().has_type()) {
        bound = std::min<uint64_t>(request.read_memory().size(), kMaxLocalAnswerBytes) +
                kMemoryAnswerOverhead;
      }
      break;
    case v1::Request::kReadMemoryList: {
      uint64_t bytes = kMemoryAnswerOverhead;
      for (const v1::ReadMemory& read : request.read_memory_list().reads()) {
        if (read.has_type()) return kMaxLocalAnswerBytes;
        bytes += std::min<uint64_t>(read.size(), kMaxLocalAnswerBytes) + 16;
      }
      bound = bytes;
      break;
    }
    case v1::Request::kReadString: {
      const uint64_t asked = request.read_string().max_length();
      const uint64_t units = asked == 0 ? kMaxStringUnits : std::min(asked, kMaxStringUnits);
      bound = units * (request.read_string().wide() ? 4 : 1) + kMemoryAnswerOverhead;
      break;
    }
    case v1::Request::kWriteMemory:
      bound = kMemoryAnswerOverhead;
      break;
    default:
      break;
  }
  return static_cast<size_t>(std::min<uint64_t>(bound, kMaxLocalAnswerBytes));
}

// INTERNAL: the worker's answer on the channel is not one it may send, for `why`.
absl::Status MalformedAnswer(absl::string_view why) {
  return ErrorStatus(v1::INTERNAL,
                     absl::StrCat("the worker's answer on the same-host channel ", why));
}

// How a failure to serve an invocation (Serve's errors) ends the call: UNAVAILABLE as it is
// (its answer could not be sent), anything else as a malformed answer.
absl::Status InvocationFailure(const absl::Status& served) {
  if (absl::IsUnavailable(served)) return served;
  return MalformedAnswer(absl::StrCat("invokes a callback: ", served.message()));
}

// What a request's failure to be written means: the worker runs only a whole frame, so the
// request did not run (FAILED_PRECONDITION), unless it was refused for its size.
absl::Status NotWritten(absl::Status sent) {
  if (sent.ok() || absl::IsResourceExhausted(sent)) return sent;
  return absl::FailedPreconditionError(sent.message());
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalPath>> LocalPath::Connect(
    const v1::LocalChannelOpened& opened, absl::Duration timeout, InvocationRunner invocations,
    ScalarInvocationRunner scalar_invocations) {
  absl::Status trusted = CheckUnixServer(absl::StrCat("unix:", opened.door_path()), timeout);
  if (!trusted.ok()) return trusted;
  absl::StatusOr<int> door = KnockAtDoor(opened.door_path(), opened.token(), timeout);
  if (!door.ok()) return door.status();
  absl::StatusOr<TaggedDescriptor> received = ReceiveDescriptor(*door);
  close(*door);
  if (!received.ok()) {
    return absl::UnavailableError(
        absl::StrCat("the same-host door ", opened.door_path(),
                     " handed over no channel: ", received.status().message()));
  }
  // The memfd is checked as any peer's: sealed, sized and headed as a channel must be.
  absl::StatusOr<std::unique_ptr<ShmChannel>> channel =
      ShmChannel::Attach(received->fd, ShmChannel::End::kCreator,
                         /*may_map_shared=*/opened.shared_bytes() != 0);
  close(received->fd);
  if (!channel.ok()) return channel.status();
  return Attach(*std::move(channel), opened, std::move(invocations), std::move(scalar_invocations));
}

std::unique_ptr<LocalPath> LocalPath::Attach(std::unique_ptr<ShmChannel> channel,
                                             const v1::LocalChannelOpened& opened,
                                             InvocationRunner invocations,
                                             ScalarInvocationRunner scalar_invocations) {
  return std::unique_ptr<LocalPath>(new LocalPath(
      std::move(channel), opened, std::move(invocations), std::move(scalar_invocations)));
}

std::vector<LocalPath::SharedBlock> LocalPath::PlanShared(const v1::Call& call,
                                                          BorrowedBlocks borrowed) const {
  std::vector<SharedBlock> planned;
  // Inside an invocation, the outer call's blocks are in the area.
  if (!shared_usable_ || !open_invocations_.empty()) return planned;
  const uint64_t area = channel_->shared_bytes();
  uint64_t next = 0;
  for (const BorrowedBlock& lent : borrowed) {
    const v1::MemoryBlock& block = call.blocks(lent.index);
    const uint64_t size = BlockSize(block);
    if (size < kMinSharedBlockBytes || block.keep() || block.has_at() || block.watch() ||
        block.has_shared_offset() || size > area - next) {
      continue;
    }
    planned.push_back({lent.index, next, std::string()});
    // Aligned as the area is, so each block's copy starts on a fresh page.
    next += (size + kShmSharedAlignment - 1) / kShmSharedAlignment * kShmSharedAlignment;
    if (next > area) next = area;
  }
  return planned;
}

absl::Status RequestTooLarge(uint64_t bytes, uint64_t limit) {
  return ErrorStatus(
      v1::RESOURCE_EXHAUSTED,
      absl::StrCat("request of ", bytes, " bytes exceeds the limit of ", limit, " bytes"));
}

v1::Response LocalPath::TooLargeAnswer(const v1::Request& request, BorrowedBlocks borrowed) const {
  v1::Response answer;
  answer.set_id(request.id());
  answer.set_generation(generation_);
  *answer.mutable_error() =
      ToProtoError(RequestTooLarge(RequestBytes(request, borrowed), max_request_bytes_));
  return answer;
}

absl::Status LocalPath::Share(v1::Call* call, BorrowedBlocks borrowed,
                              std::vector<SharedBlock>& planned) {
  if (planned.empty()) return absl::OkStatus();
  absl::StatusOr<absl::Span<char>> area = channel_->SharedArea();
  if (!area.ok()) return area.status();
  for (SharedBlock& shared : planned) {
    v1::MemoryBlock* block = call->mutable_blocks(shared.index);
    const uint64_t size = BlockSize(*block);
    char* at = area->data() + shared.offset;
    if (block->direction() != v1::OUT) {
      const BorrowedBlock* lent = BorrowedOf(borrowed, shared.index);
      const absl::string_view data =
          lent != nullptr && block->data().empty() ? lent->bytes : absl::string_view(block->data());
      const size_t copied = std::min<size_t>(data.size(), size);
      CopyBulk(at, data.data(), copied);
      memset(at + copied, 0, size - copied);
      shared_bytes_moved_ += size;
    }
    block->set_size(size);
    block->mutable_data()->swap(shared.data);
    block->set_shared_offset(shared.offset);
  }
  return absl::OkStatus();
}

void LocalPath::Unshare(v1::Call* call, std::vector<SharedBlock>& shared) {
  for (SharedBlock& placed : shared) {
    v1::MemoryBlock* block = call->mutable_blocks(placed.index);
    block->clear_shared_offset();
    block->mutable_data()->swap(placed.data);
  }
}

bool LocalPath::TooLarge(const v1::Request& request, BorrowedBlocks borrowed) const {
  if (max_request_bytes_ == 0) return false;
  uint64_t bytes = request.ByteSizeLong();
  if (!request.has_call()) return bytes > max_request_bytes_;
  const std::vector<SharedBlock> planned = PlanShared(request.call(), borrowed);
  for (const BorrowedBlock& lent : borrowed) {
    // Borrowed bytes not bound for the area go into the frame (with a tag and a length).
    bool in_area = false;
    for (const SharedBlock& block : planned) in_area = in_area || block.index == lent.index;
    if (!in_area && request.call().blocks(lent.index).data().empty()) {
      bytes += lent.bytes.size() + 11;
    }
  }
  for (const SharedBlock& block : planned) {
    // The data leaves the frame; an offset (at most 11 bytes with its tag) comes in.
    const uint64_t data = request.call().blocks(block.index).data().size();
    bytes -= std::min(bytes, data);
    bytes += 11;
  }
  return bytes > max_request_bytes_;
}

bool LocalPath::TooLarge(const ScalarCall& call) const {
  // The bound first (no pass over the arguments): it settles every call of a few arguments.
  return max_request_bytes_ != 0 && ScalarCallBytesAtMost(call.args.size()) > max_request_bytes_ &&
         ScalarCallBytes(std::numeric_limits<uint64_t>::max(), call) > max_request_bytes_;
}

absl::StatusOr<v1::Response> LocalPath::Exchange(v1::Request* request, BorrowedBlocks borrowed,
                                                 absl::Time deadline,
                                                 std::optional<uint64_t> result_bytes) {
  std::vector<SharedBlock> shared = PlanShared(request->call(), borrowed);
  if (!Share(request->mutable_call(), borrowed, shared).ok()) {
    // This process cannot map the area (its address space is full): frames only, from now.
    shared_usable_ = false;
    shared.clear();
    if (TooLarge(*request, borrowed)) return TooLargeAnswer(*request, borrowed);
  }
  // Borrowed blocks that did not go to the area go in the frame.
  for (const BorrowedBlock& lent : borrowed) {
    v1::MemoryBlock* block = request->mutable_call()->mutable_blocks(lent.index);
    if (!block->has_shared_offset() && block->data().empty() && !lent.bytes.empty()) {
      block->set_data(lent.bytes.data(), lent.bytes.size());
    }
  }
  const size_t max_answer = AnswerBoundOf(*request, result_bytes);
  absl::StatusOr<v1::Response> response = ExchangeFrames(*request, deadline, max_answer);
  if (!shared.empty() && response.ok() && response->has_error() &&
      response->error().code() == v1::RESOURCE_EXHAUSTED &&
      absl::EndsWith(response->error().field(), ".shared_offset")) {
    // The worker could not map the area, and did not run the call: again, without it.
    Unshare(request->mutable_call(), shared);
    shared_usable_ = false;
    // Too large for a frame: the broker would refuse it too.
    if (TooLarge(*request, borrowed)) return TooLargeAnswer(*request, borrowed);
    CopyBorrowedIn(request->mutable_call(), borrowed);
    return ExchangeFrames(*request, deadline, max_answer);
  }
  if (!response.ok() || response->has_error() || shared.empty()) {
    Unshare(request->mutable_call(), shared);
    return response;
  }
  // The checked answer marks exactly the OUT/INOUT blocks placed in the area as `shared`:
  // their bytes are read from there (the worker may still change them: they are bytes of a
  // buffer, nothing parses them) into the borrowed destination, or else into the storage
  // their request data had.
  absl::StatusOr<absl::Span<char>> area = channel_->SharedArea();
  for (v1::BlockContents& contents : *response->mutable_call()->mutable_blocks()) {
    if (!contents.shared()) continue;
    for (SharedBlock& placed : shared) {
      if (placed.index != static_cast<int>(contents.block())) continue;
      const uint64_t size = request->call().blocks(placed.index).size();
      const BorrowedBlock* lent = BorrowedOf(borrowed, placed.index);
      if (lent != nullptr && lent->into != nullptr) {
        // A buffer of the block's size (an INOUT one) is written in place.
        if (lent->into->size() != size) lent->into->resize(size);
        CopyBulk(lent->into->data(), area->data() + placed.offset, size);
      } else {
        placed.data.assign(area->data() + placed.offset, size);
        contents.mutable_data()->swap(placed.data);
        contents.clear_shared();
      }
      shared_bytes_moved_ += size;
      break;
    }
  }
  return response;
}

absl::StatusOr<v1::Response> LocalPath::ExchangeNested(const v1::Request& request,
                                                       absl::Time deadline) {
  return ExchangeFrames(request, deadline, AnswerBoundOf(request));
}

absl::Status LocalPath::WriteRequest(const v1::Request& request, absl::Time deadline) {
  const size_t length = request.ByteSizeLong();
  if (max_request_bytes_ != 0 && length > max_request_bytes_) {
    return RequestTooLarge(length, max_request_bytes_);
  }
  return WriteFrame(
      *channel_, length,
      [&request](google::protobuf::io::CodedOutputStream* out) {
        request.SerializeWithCachedSizes(out);
      },
      deadline);
}

absl::Status LocalPath::CheckInvocation(uint64_t id, uint64_t named_parent, uint64_t parent) const {
  if (named_parent != parent) {
    return absl::InvalidArgumentError(
        absl::StrCat("invocation ", id, " names parent ", named_parent, ", not ", parent));
  }
  if (id == 0 || absl::c_linear_search(open_invocations_, id)) {
    return absl::InvalidArgumentError(absl::StrCat("invocation id ", id, " is not fresh"));
  }
  if (open_invocations_.size() >= kMaxChannelInvocationDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("invocation ", id, " is nested deeper than ", kMaxChannelInvocationDepth));
  }
  return absl::OkStatus();
}

absl::Status LocalPath::Serve(v1::Response message, uint64_t parent, absl::Time deadline) {
  const v1::CallbackInvoke& invoke = message.callback_invoke();
  const uint64_t id = invoke.invocation();
  FFIBOX_RETURN_IF_ERROR(CheckInvocation(id, invoke.parent_invocation(), parent));
  message.set_generation(generation_);
  open_invocations_.push_back(id);
  absl::StatusOr<v1::CallbackReturn> answer = invocations_(message, *this, deadline);
  open_invocations_.pop_back();
  if (!answer.ok()) return absl::InvalidArgumentError(answer.status().message());
  // A request of the handler failed on the channel: the worker and this end are out of step.
  FFIBOX_RETURN_IF_ERROR(broken_);
  v1::Request reply;
  *reply.mutable_callback_return() = *std::move(answer);
  reply.mutable_callback_return()->set_invocation(id);
  // The answer is small, unless the handler wrote large pointees back: the worker reads it
  // at once.
  return SendReturn(std::move(reply), absl::Now() + kLocalAnswerProgress);
}

absl::Status LocalPath::SendReturn(v1::Request reply, absl::Time due) {
  absl::Status sent = WriteRequest(reply, due);
  if (absl::IsResourceExhausted(sent)) {
    // Too large for a frame: native code gets zero, as for a handler that failed.
    const uint64_t id = reply.callback_return().invocation();
    reply.mutable_callback_return()->Clear();
    reply.mutable_callback_return()->set_invocation(id);
    reply.mutable_callback_return()->set_error(absl::StrCat(
        "the callback's answer is too large for the same-host channel: ", sent.message()));
    sent = WriteRequest(reply, due);
  }
  if (!sent.ok()) return absl::UnavailableError(sent.message());
  return absl::OkStatus();
}

absl::StatusOr<bool> LocalPath::ServeScalar(const FramePayload& frame, uint64_t parent,
                                            absl::Time deadline) {
  ScalarInvoke invoke;
  if (scalar_invocations_ == nullptr || frame.pieces.size() != 1 ||
      !ReadScalarInvoke(frame.pieces[0], &invoke)) {
    return false;
  }
  const uint64_t id = invoke.invocation;
  if (absl::Status checked = CheckInvocation(id, invoke.parent_invocation, parent); !checked.ok()) {
    return InvocationFailure(checked);
  }
  open_invocations_.push_back(id);
  std::optional<ScalarReturn> answer = scalar_invocations_(invoke, *this, deadline);
  open_invocations_.pop_back();
  if (!answer.has_value()) return false;  // runs as a message
  // A request of the handler failed on the channel: the worker and this end are out of step.
  if (!broken_.ok()) return InvocationFailure(broken_);
  char bytes[kScalarReturnBytesAtMost];
  const size_t length = EncodeScalarReturn(id, answer->result, bytes);
  if (!answer->error.empty() || (max_request_bytes_ != 0 && length > max_request_bytes_)) {
    v1::Request reply;
    reply.mutable_callback_return()->set_invocation(id);
    reply.mutable_callback_return()->set_error(std::move(answer->error));
    if (answer->result.has_value()) {
      SetScalarBits(*answer->result, reply.mutable_callback_return()->mutable_result());
    }
    absl::Status sent = SendReturn(std::move(reply), absl::Now() + kLocalAnswerProgress);
    if (!sent.ok()) return InvocationFailure(sent);
    return true;
  }
  absl::Status sent = WriteFrame(*channel_, absl::string_view(bytes, length), kLocalAnswerProgress);
  if (!sent.ok()) return absl::UnavailableError(sent.message());
  return true;
}

void LocalPath::NoteFailure(const absl::Status& failure) {
  // Refused before it was written: the channel is as it was.
  if (!failure.ok() && !absl::IsResourceExhausted(failure) &&
      !absl::IsFailedPrecondition(failure)) {
    broken_ = failure;
  }
}

absl::StatusOr<v1::Response> LocalPath::ExchangeFrames(const v1::Request& request,
                                                       absl::Time deadline, size_t max_answer) {
  FFIBOX_RETURN_IF_ERROR(broken_);
  absl::StatusOr<v1::Response> response = ExchangeFramesOnce(request, deadline, max_answer);
  NoteFailure(response.status());
  return response;
}

absl::StatusOr<LocalPath::ScalarAnswer> LocalPath::ExchangeScalar(uint64_t id,
                                                                  const ScalarCall& call,
                                                                  absl::Time deadline) {
  FFIBOX_RETURN_IF_ERROR(broken_);
  absl::StatusOr<ScalarAnswer> answer = ExchangeScalarOnce(id, call, deadline);
  NoteFailure(answer.status());
  return answer;
}

absl::StatusOr<LocalPath::ScalarAnswer> LocalPath::ExchangeScalarOnce(uint64_t id,
                                                                      const ScalarCall& call,
                                                                      absl::Time deadline) {
  absl::InlinedVector<char, 256> bytes(ScalarCallBytesAtMost(call.args.size()));
  const size_t length = EncodeScalarCall(id, call, bytes.data());
  if (max_request_bytes_ != 0 && length > max_request_bytes_) {
    return RequestTooLarge(length, max_request_bytes_);
  }
  FFIBOX_RETURN_IF_ERROR(
      NotWritten(WriteFrame(*channel_, absl::string_view(bytes.data(), length), deadline)));
  // The call as a message, for the checks of the first frame not read from its bytes.
  std::optional<v1::Request> request;
  for (;;) {
    // A scalar call returns no block: its answer holds at most the base of any call's.
    FrameDecoder frames(kCallAnswerBaseBytes);
    frames.Recycle(std::move(scalar_frame_buffer_));
    absl::StatusOr<FramePayload> frame =
        ReadFrameAsItArrives(*channel_, frames, deadline, kLocalAnswerProgress);
    ScalarAnswer answer;
    if (frame.ok() && frame->pieces.size() == 1) {
      if (ReadScalarAnswer(frame->pieces[0], id, &answer.result)) {
        scalar_frame_buffer_ = std::move(frame->pieces[0]);  // the next answer goes there
        return answer;
      }
      // A scalar call runs at the top, inside no invocation.
      FFIBOX_ASSIGN_OR_RETURN(bool served, ServeScalar(*frame, /*parent=*/0, deadline));
      if (served) {
        scalar_frame_buffer_ = std::move(frame->pieces[0]);
        continue;
      }
    }
    if (!request.has_value()) request = ScalarCallRequest(id, call);
    FFIBOX_ASSIGN_OR_RETURN(answer.response, TakeFrame(*request, std::move(frame), deadline));
    // Else an invocation was served, and the call goes on.
    if (answer.response.has_value()) return answer;
  }
}

absl::StatusOr<v1::Response> LocalPath::ExchangeFramesOnce(const v1::Request& request,
                                                           absl::Time deadline, size_t max_answer) {
  FFIBOX_RETURN_IF_ERROR(NotWritten(WriteRequest(request, deadline)));
  return ReadAnswer(request, deadline, max_answer);
}

absl::StatusOr<v1::Response> LocalPath::ReadAnswer(const v1::Request& request, absl::Time deadline,
                                                   size_t max_answer) {
  for (;;) {
    // Read as it arrives: the buffer grows only with what the worker sent, up to what the
    // request may be answered with.
    FrameDecoder frames(max_answer);
    FFIBOX_ASSIGN_OR_RETURN(
        std::optional<v1::Response> answer,
        TakeFrame(request, ReadFrameAsItArrives(*channel_, frames, deadline, kLocalAnswerProgress),
                  deadline));
    if (answer.has_value()) return *std::move(answer);
  }
}

absl::StatusOr<std::optional<v1::Response>> LocalPath::TakeFrame(const v1::Request& request,
                                                                 absl::StatusOr<FramePayload> frame,
                                                                 absl::Time deadline) {
  // What the answer may hold (core/encoding_limits.h): the call's result, or a callback's
  // invocation while the call runs; or the result of a nested request. Worked out only for
  // an answer large enough to be walked.
  auto limits = [&] {
    AnswerLimits limits;
    if (request.has_call()) {
      limits = CallAnswerLimits(ExpectedResultOf(request.call()));
      if (invocations_ != nullptr) limits.Add(InvokeLimits(TypeLimits{}.max_args));
    } else if (request.has_get_layout()) {
      limits = LayoutAnswerLimits(request.get_layout().type());
    } else if (request.has_read_memory_list()) {
      limits.memory_reads = request.read_memory_list().reads_size();
    }
    return limits;
  };
  if (absl::IsDataLoss(frame.status()) || absl::IsResourceExhausted(frame.status())) {
    return MalformedAnswer(frame.status().message());
  }
  if (!frame.ok()) return frame.status();
  if (request.has_call()) {
    FFIBOX_ASSIGN_OR_RETURN(bool served, ServeScalar(*frame, request.invocation(), deadline));
    if (served) return std::nullopt;
  }
  absl::Status shape = CheckAnswerShape(frame->Views(), v1::Response::descriptor(), limits);
  if (!shape.ok()) return MalformedAnswer(shape.message());
  v1::Response response;
  if (!ParseFromOwnedPieces(absl::MakeSpan(frame->pieces), &response)) {
    return MalformedAnswer("does not parse");
  }
  if (response.id() == 0 && response.has_callback_invoke() && invocations_ != nullptr &&
      request.has_call()) {
    // Native code called a callback: its handler runs here, and the call goes on.
    absl::Status served = Serve(std::move(response), request.invocation(), deadline);
    if (!served.ok()) return InvocationFailure(served);
    return std::nullopt;
  }
  if (response.id() != request.id()) {
    return MalformedAnswer(absl::StrCat("answers request ", response.id(), ", not ", request.id()));
  }
  if (!request.has_call()) {
    absl::Status checked = CheckNestedAnswer(request, response);
    if (!checked.ok()) return MalformedAnswer(checked.message());
  } else if (response.has_error()) {
    absl::Status checked = CheckErrorAnswer(response);
    if (!checked.ok()) return MalformedAnswer(checked.message());
  } else {
    if (!response.has_call()) return MalformedAnswer("carries no call result");
    absl::Status checked = CheckCallResult(response.call(), ExpectedResultOf(request.call()));
    if (!checked.ok()) return MalformedAnswer(checked.message());
  }
  // The generation is the one the broker named for this channel, whatever the worker says.
  response.set_generation(generation_);
  return response;
}

uint64_t LocalPath::worker_scalar_calls() const {
  return channel_->LoadStatusWord(kLocalScalarCallsWord);
}

bool LocalPath::closed_by_worker() const {
  return channel_->LoadStatusWord(kLocalClosedWord) == kLocalClosedByWorker;
}

bool LocalPath::lost() const { return channel_->PeerEnded() && !closed_by_worker(); }

}  // namespace client_internal
}  // namespace ffibox

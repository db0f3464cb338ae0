#include "server/worker/dispatcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <thread>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "core/blocks.h"
#include "core/call_shape.h"
#include "core/errors.h"
#include "core/local_channel.h"
#include "core/piece_stream.h"
#include "core/status_macros.h"
#include "core/thread_name.h"
#include "google/protobuf/arena.h"
#include "server/protocol/crash_report.h"
#include "server/worker/inline_arena.h"

namespace ffibox {
namespace {

// How often, at most, a same-host channel's worker looks whether its long spin still fits
// its CPU budget (LongSpinFitsBudget).
constexpr absl::Duration kLocalBudgetLook = absl::Milliseconds(10);

// The callback nesting of the calling thread: how many invocations it is inside, and the
// innermost one (0 outside any).
thread_local int t_depth = 0;
thread_local uint64_t t_invocation = 0;
// The request this thread is running, or {0, false}: its id, which an invocation this
// thread makes names (CallbackInvoke.request_id), and whether it is a single call, whose
// kept blocks its first invocation tells (CallbackInvoke.kept). One for requests from the
// broker (WorkerRequest.id), which the invocations it routes name, and one for requests on
// the same-host channel (Request.id), which the invocations on the channel name.
struct ThreadRequest {
  uint64_t id = 0;
  bool call = false;
};
thread_local ThreadRequest t_request;
thread_local ThreadRequest t_channel_request;

// Sets one of them while this thread runs a request.
class RunningRequest {
 public:
  RunningRequest(ThreadRequest& running, uint64_t id, const v1::Request& request)
      : RunningRequest(running, id, request.has_call()) {}
  RunningRequest(ThreadRequest& running, uint64_t id, bool call)
      : running_(running), outer_(std::exchange(running, {id, call})) {}
  ~RunningRequest() { running_ = outer_; }
  RunningRequest(const RunningRequest&) = delete;
  RunningRequest& operator=(const RunningRequest&) = delete;

 private:
  ThreadRequest& running_;
  const ThreadRequest outer_;
};
// The same-host channel whose call the calling thread (the main thread) is running, when
// its client takes callbacks there (LocalChannel.callbacks); null otherwise.
thread_local ShmChannel* t_channel = nullptr;
// Whether this thread runs a request that the handler of an invocation on the same-host
// channel sent through the broker: that handler waits for the broker's answer, not on the
// channel, so a callback now (a library's constructor calling one) could not be served.
thread_local bool t_channel_inbox = false;

// The name of a request's operation, for errors ("read_memory").
std::string OpName(const v1::Request& request) {
  const google::protobuf::FieldDescriptor* field =
      v1::Request::descriptor()->FindFieldByNumber(request.op_case());
  return field != nullptr ? field->name() : "no operation";
}

// Validates such a request as the broker validates those it forwards (a call's shape is the
// executor's to check, as for any call from the channel).
absl::Status ValidateNested(const v1::Request& request, const TypeLimits& limits) {
  if (request.has_call()) return absl::OkStatus();
  if (request.has_get_layout()) {
    return ValidateType(request.get_layout().type(), limits, "get_layout.type");
  }
  return ValidateMemoryRequest(request, limits);
}

// Whether Route queues `request` for the main thread: no begin, no callback_return, and no
// invocation it belongs to.
bool IsTopLevel(const internal::WorkerRequest& request) {
  return !request.has_begin() && request.invocation() == 0 && request.channel_invocation() == 0 &&
         request.request().op_case() != v1::Request::kCallbackReturn;
}

constexpr absl::string_view kGotZero = "; native code received zero";

// A request's and a reply's arena on the stack, as a local.
using StackArena = InlineArena<4096>;

// The type and call limits the broker validates with, as far as the settings carry them.
TypeLimits LimitsFrom(const internal::WorkerSettings& settings) {
  TypeLimits limits;
  if (settings.max_block_bytes() > 0) limits.max_block_bytes = settings.max_block_bytes();
  if (settings.max_batch_calls() > 0) limits.max_batch_calls = settings.max_batch_calls();
  return limits;
}

}  // namespace

WorkerDispatcher::WorkerDispatcher(std::unique_ptr<ShmChannel> channel, int hangup_fd,
                                   const internal::WorkerSettings& settings, int descriptor_fd)
    : broker_(std::move(channel), hangup_fd),
      descriptor_fd_(descriptor_fd),
      limits_(LimitsFrom(settings)),
      max_callback_depth_(
          settings.max_callback_depth() > 0
              ? static_cast<int>(std::min<uint32_t>(settings.max_callback_depth(), 1 << 20))
              : kDefaultMaxCallbackDepth) {}

void WorkerDispatcher::Begin() {
  absl::StatusOr<ReceivedRequest> received = broker_.Receive();
  if (!received.ok()) _exit(absl::IsInvalidArgument(received.status()) ? 2 : 0);
  const internal::WorkerRequest& first = received->request();
  if (!first.has_begin() || first.begin().generation() == 0 || first.has_request()) {
    fprintf(stderr, "ffibox-worker: the first request is not a begin with a generation\n");
    _exit(2);
  }
  generation_ = first.begin().generation();
  executor_.emplace(generation_, this, descriptor_fd_, limits_);
  absl::MutexLock lock(&mu_);
  begun_ = true;
  reader_ = Reader::kNone;  // the idle main thread reads the session's requests
}

void WorkerDispatcher::Run() {
  // The reader thread starts while the worker is still generic (a pooled worker waits here
  // for its session), so taking the worker waits for no thread to be made. It sleeps until
  // the begin is in: the main thread receives that, and the session's first request right
  // behind it, with one wakeup.
  absl::StatusOr<std::thread> reader = StartThread("worker-reader", [this] {
    // glibc gives a thread its malloc arena at its first allocation: now, not on the
    // session's first request.
    void* volatile first_allocation = malloc(1);
    free(first_allocation);
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&begun_));
    }
    ReadLoop();
  });
  if (!reader.ok()) {  // the task limit reached: an exit that says so, not an abort
    fprintf(stderr, "ffibox-worker: %s\n", std::string(reader.status().message()).c_str());
    _exit(kWorkerExitNoThread);
  }
  reader->detach();
  internal::WorkerReply started;
  started.set_started(true);
  Send(started);
  Begin();
  for (;;) {
    std::optional<ReceivedRequest> next;
    ShmChannel* local = nullptr;
    bool receive = false;
    {
      absl::MutexLock lock(&mu_);
      main_busy_ = false;
      if (local_ == nullptr) {
        mu_.Await(absl::Condition(
            +[](WorkerDispatcher* self) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return !self->top_level_.empty() || self->reader_ == Reader::kNone;
            },
            this));
      }
      if (!top_level_.empty()) {
        next.emplace(std::move(top_level_.front()));
        top_level_.pop_front();
        main_busy_ = true;
        busy_since_ = absl::Now();
      } else if (local_ != nullptr) {
        local = local_.get();  // only this thread replaces it
      } else {
        reader_ = Reader::kMain;
        receive = true;
      }
    }
    if (receive) next.emplace(ReceiveForMain());
    if (next.has_value() && next->request().has_local_channel()) {
      AttachLocalChannel(next->request());
    } else if (next.has_value()) {
      Answer(next->request());
    } else {
      ServeLocal(*local);
    }
  }
}

ReceivedRequest WorkerDispatcher::ReceiveOrExit() {
  absl::StatusOr<ReceivedRequest> request = broker_.Receive();
  if (!request.ok()) {
    // The broker closed the channel (or broke it): the session is over, whatever runs.
    _exit(absl::IsInvalidArgument(request.status()) ? 2 : 0);
  }
  return *std::move(request);
}

ReceivedRequest WorkerDispatcher::ReceiveForMain() {
  for (;;) {
    ReceivedRequest received = ReceiveOrExit();
    const internal::WorkerRequest& request = received.request();
    if (IsTopLevel(request)) {
      absl::MutexLock lock(&mu_);
      reader_ = Reader::kNone;  // the reader thread takes over if it must meanwhile
      main_busy_ = true;
      busy_since_ = absl::Now();
      return received;
    }
    Route(std::move(received));  // for a waiting invocation; the main thread reads on
  }
}

bool WorkerDispatcher::ReaderNeeded() const {
  return reader_ == Reader::kNone && (unanswered_ > 0 || local_ != nullptr);
}

absl::Duration WorkerDispatcher::UntilTakeover(absl::Time now) const {
  return main_busy_ ? std::max(busy_since_, unread_since_) + kReaderTakeover - now
                    : kReaderTakeover;
}

void WorkerDispatcher::ReadLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      for (;;) {
        const absl::Duration until_takeover = UntilTakeover(absl::Now());
        if (ReaderNeeded() ||
            (reader_ == Reader::kNone && until_takeover <= absl::ZeroDuration())) {
          break;
        }
        if (reader_ == Reader::kInvoker) {
          // The thread of the one waiting invocation reads (whatever the main thread runs).
          // It gives the role back with each answer, and its next invocation takes it at once:
          // that wakes nobody. Woken only when this thread is needed, or to look again
          // kReaderTakeover later (the takeover still counts from the last give-up).
          mu_.AwaitWithTimeout(absl::Condition(this, &WorkerDispatcher::ReaderNeeded),
                               kReaderTakeover);
          continue;
        }
        // A request the main thread starts does not wake this thread: it looks again when
        // that request may have become a long one.
        mu_.AwaitWithTimeout(absl::Condition(this, &WorkerDispatcher::ReaderNeeded),
                             std::max(until_takeover, absl::Milliseconds(1)));
      }
      reader_ = Reader::kReaderThread;
    }
    for (;;) {
      const bool returned = Route(ReceiveOrExit());
      absl::MutexLock lock(&mu_);
      if (reader_ != Reader::kReaderThread) break;  // given up in Route
      const absl::Time now = absl::Now();
      // Given up once nothing waits for it: when the main thread is idle (it reads then),
      // when its request has not run for kReaderTakeover yet, or when this frame answered an
      // invocation (its thread, back in native code, reads for the next one itself; if nobody
      // does, this thread takes over again kReaderTakeover later).
      if (unanswered_ == 0 && local_ == nullptr &&
          (returned || UntilTakeover(now) > absl::ZeroDuration())) {
        reader_ = Reader::kNone;
        unread_since_ = now;
        break;
      }
    }
  }
}

bool WorkerDispatcher::Route(ReceivedRequest received) {
  const internal::WorkerRequest& request = received.request();
  // A worker begins once: a second begin is a broken or hostile broker.
  if (request.has_begin()) _exit(2);
  if (request.channel_invocation() != 0) {
    const uint64_t id = request.channel_invocation();
    const uint64_t request_id = request.id();
    {
      absl::MutexLock lock(&mu_);
      auto waiting = channel_waiting_.find(id);
      if (waiting != channel_waiting_.end() && local_ != nullptr) {
        waiting->second->push_back(std::move(received));
        local_->Interrupt();  // the invocation's thread waits on the channel
        return false;
      }
    }
    RefuseNotWaiting(request_id, id, " on the same-host channel");
    return false;
  }
  if (request.request().op_case() == v1::Request::kCallbackReturn) {
    const uint64_t id = request.request().callback_return().invocation();
    absl::MutexLock lock(&mu_);
    auto waiting = waiting_.find(id);
    if (waiting == waiting_.end() || waiting->second->returned) return false;  // late or bogus
    waiting->second->returned = true;
    --unanswered_;
    // The reader thread gives up the role with the last answer awaited (ReadLoop), here,
    // before the invocation's thread runs on: that thread's next invocation, made at once,
    // must find the role free to read for itself.
    if (reader_ == Reader::kReaderThread && unanswered_ == 0 && local_ == nullptr) {
      reader_ = Reader::kNone;
      unread_since_ = absl::Now();
    }
    waiting->second->inbox.push_back(std::move(received));
    return true;
  }
  const uint64_t id = request.invocation();
  {
    absl::MutexLock lock(&mu_);
    if (id == 0) {
      top_level_.push_back(std::move(received));
      // The main thread may be waiting on the client's same-host channel.
      if (local_ != nullptr) local_->Interrupt();
      return false;
    }
    auto waiting = waiting_.find(id);
    if (waiting != waiting_.end() && !waiting->second->returned) {
      waiting->second->inbox.push_back(std::move(received));
      return false;
    }
  }
  RefuseNotWaiting(request.id(), id, "");
  return false;
}

void WorkerDispatcher::Refuse(uint64_t request_id, const absl::Status& status) {
  internal::WorkerReply reply;
  reply.mutable_response()->set_id(request_id);
  *reply.mutable_response()->mutable_error() = ToProtoError(status);
  Send(reply);
}

void WorkerDispatcher::RefuseNotWaiting(uint64_t request_id, uint64_t id, absl::string_view where) {
  Refuse(request_id, ErrorStatus(v1::FAILED_PRECONDITION,
                                 absl::StrCat("invocation ", id, " is not waiting", where)));
}

void WorkerDispatcher::Answer(const internal::WorkerRequest& request) {
  if (request.has_local_channel()) {
    // Only the main thread serves a channel (Run attaches it); not inside an invocation.
    Refuse(request.id(), ErrorStatus(v1::FAILED_PRECONDITION,
                                     "a same-host channel is attached at the top level only"));
    return;
  }
  StackArena arena;
  auto* reply = google::protobuf::Arena::CreateMessage<internal::WorkerReply>(&arena.arena);
  {
    const RunningRequest running(t_request, request.id(), request.request());
    executor_->Execute(request, reply->mutable_response());
  }
  Send(*reply);
}

void WorkerDispatcher::Send(const internal::WorkerReply& reply) {
  if (!broker_.Send(reply).ok()) _exit(0);  // the broker has gone
}

void WorkerDispatcher::AttachLocalChannel(const internal::WorkerRequest& request) {
  internal::WorkerReply reply;
  v1::Response* response = reply.mutable_response();
  response->set_id(request.id());
  absl::StatusOr<int> fd = executor_->TakeDescriptor(request.id());
  absl::StatusOr<std::unique_ptr<ShmChannel>> channel =
      fd.ok() ? ShmChannel::Attach(*fd, ShmChannel::End::kPeer, /*may_map_shared=*/true)
              : absl::StatusOr<std::unique_ptr<ShmChannel>>(fd.status());
  if (fd.ok()) close(*fd);
  if (channel.ok()) {
    CloseLocal();  // first: its area is unmapped before this one is mapped
    // The shared area is mapped now, so the worker keeps no descriptor of the channel (the
    // library could find it); when it cannot be, calls that use it are refused with why.
    (*channel)->SharedArea().IgnoreError();
    (*channel)->SetLongestReadSpin(local_long_spin_ ? kLocalLongestSpin
                                                    : ShmChannel::kDefaultLongestReadSpin);
    local_max_request_bytes_ = request.local_channel().max_request_bytes();
    local_callbacks_ = request.local_channel().callbacks();
    {
      absl::MutexLock lock(&mu_);
      local_ = *std::move(channel);
    }
    response->mutable_local_channel();
  } else {
    *response->mutable_error() = ToProtoError(ErrorStatus(
        v1::INTERNAL, absl::StrCat("the same-host channel: ", channel.status().message())));
  }
  Send(reply);
}

void WorkerDispatcher::ServeLocal(ShmChannel& channel) {
  // The long spin for the client's next call (and its callbacks' answers) ends with the CPU
  // budget's share for spinning, as the broker's does; looked at once per kLocalBudgetLook
  // at most (two system calls, a quarter of a quick call's time).
  if (local_long_spin_) {
    const absl::Time now = absl::Now();
    if (now >= local_budget_look_) {
      local_budget_look_ = now + kLocalBudgetLook;
      local_long_spin_ = LongSpinFitsBudget();
      if (!local_long_spin_) channel.SetLongestReadSpin(ShmChannel::kDefaultLongestReadSpin);
    }
  }
  // Until the client's first byte, or a request from the broker (the reader interrupts);
  // once a frame started, it must keep arriving.
  FrameDecoder frames(local_max_request_bytes_);
  frames.Recycle(std::move(local_frame_buffer_));
  absl::StatusOr<FramePayload> frame =
      ReadFrameAsItArrives(channel, frames, absl::InfiniteFuture(), kLocalFrameArrival);
  if (frame.ok()) {
    RunLocal(channel, *frame);
    // A frame the call did not parse (a scalar call's) holds its bytes still: the next
    // frame goes there.
    if (frame->pieces.size() == 1) local_frame_buffer_ = std::move(frame->pieces[0]);
  } else if (!absl::IsCancelled(frame.status())) {
    CloseLocal();  // the client went away, broke the rings, or sent too much or too slowly
  }
}

bool WorkerDispatcher::RunAsLocalCall(ShmChannel& channel, uint64_t function, uint32_t timeout_ms,
                                      absl::FunctionRef<void()> run) {
  channel.StoreStatusWord(kLocalBusyFunctionWord, function);
  channel.StoreStatusWord(kLocalBusyTimeoutWord, timeout_ms);
  channel.StoreStatusWord(kLocalBusySinceWord, std::max<uint64_t>(LocalClockNanos(), 1));
  local_failed_ = false;
  t_channel = local_callbacks_ ? &channel : nullptr;
  run();
  t_channel = nullptr;
  channel.StoreStatusWord(kLocalBusySinceWord, 0);
  channel.StoreStatusWord(kLocalBusyTimeoutWord, 0);
  channel.StoreStatusWord(kLocalBusyFunctionWord, 0);
  if (local_failed_) {
    CloseLocal();  // an invocation on it failed: the client is gone, or broke the protocol
    return false;
  }
  return true;
}

bool WorkerDispatcher::RunScalarLocal(ShmChannel& channel, absl::string_view frame) {
  ScalarCallFrame call;
  if (!ReadScalarCall(frame, &call) || call.id == 0) return false;
  StackArena arena;  // the answer's messages: no heap
  v1::Response& response = *google::protobuf::Arena::CreateMessage<v1::Response>(&arena.arena);
  std::optional<absl::Status> ran;
  const bool channel_ok = RunAsLocalCall(channel, call.function, call.timeout_ms, [&] {
    const RunningRequest running(t_channel_request, call.id, /*call=*/true);
    ran = executor_->CallScalar(call.function, call.args, response.mutable_call());
  });
  if (!ran.has_value()) return false;  // not run: the general path answers it
  if (!channel_ok) return true;        // closed, and `channel` with it
  channel.StoreStatusWord(kLocalScalarCallsWord, channel.LoadStatusWord(kLocalScalarCallsWord) + 1);
  response.set_id(call.id);
  response.set_generation(generation_);
  if (!ran->ok()) WorkerExecutor::SetFailure(*ran, &response);
  // The client went away or does not read.
  if (!WriteLocal(channel, response).ok()) CloseLocal();
  return true;
}

void WorkerDispatcher::RunLocal(ShmChannel& channel, FramePayload& frame) {
  if (frame.pieces.size() == 1 && RunScalarLocal(channel, frame.pieces[0])) return;
  StackArena arena;
  auto* wrapped = google::protobuf::Arena::CreateMessage<internal::WorkerRequest>(&arena.arena);
  // The client's bytes: only a top-level call, or a request the worker answers alone, with
  // an id is served here.
  const v1::Request& request = *wrapped->mutable_request();
  if (!ParseFromOwnedPieces(absl::MakeSpan(frame.pieces), wrapped->mutable_request()) ||
      !AllowedInChannelInvocation(request) || request.id() == 0 || request.invocation() != 0 ||
      request.channel_invocation() != 0) {
    CloseLocal();
    return;
  }
  wrapped->set_id(request.id());
  auto* response = google::protobuf::Arena::CreateMessage<v1::Response>(&arena.arena);
  if (absl::Status valid = ValidateNested(request, limits_); !valid.ok()) {
    // As the broker refuses it on the stream; the channel goes on.
    response->set_id(request.id());
    *response->mutable_error() = ToProtoError(valid);
  }
  // The shared area was mapped when the channel was attached, if it could be.
  absl::Span<char> shared;
  // (Without an area, such a block is the executor's INVALID_ARGUMENT.)
  for (int i = 0; channel.shared_bytes() != 0 && i < request.call().blocks_size(); ++i) {
    if (!request.call().blocks(i).has_shared_offset()) continue;
    absl::StatusOr<absl::Span<char>> area = channel.SharedArea();
    if (area.ok()) {
      shared = *area;
    } else {
      // The call does not run; the client may send it again without the area.
      const std::string field = absl::StrCat("call.blocks[", i, "].shared_offset");
      response->set_id(request.id());
      v1::Error* error = response->mutable_error();
      error->set_code(v1::RESOURCE_EXHAUSTED);
      error->set_field(field);
      error->set_message(absl::StrCat(field, ": ", area.status().message()));
    }
    break;
  }
  // A request other than a call names no function (0) and has the session's timeout (0).
  const bool channel_ok =
      RunAsLocalCall(channel, request.call().function(), request.call().timeout_ms(), [&] {
        const RunningRequest running(t_channel_request, request.id(), request);
        if (!response->has_error()) executor_->Execute(*wrapped, response, shared);
      });
  if (!channel_ok) return;
  response->set_generation(generation_);
  // The client went away or does not read.
  if (!WriteLocal(channel, *response).ok()) CloseLocal();
}

absl::Status WorkerDispatcher::WriteLocal(ShmChannel& channel, const v1::Response& message) {
  const size_t length = message.ByteSizeLong();
  if (message.has_call() && !message.has_error()) {
    // A call's answer of one scalar or none (most calls'), written without the serializer:
    // the same bytes, as long as the message holds nothing more (its size says so).
    std::optional<ScalarBits> result;
    if (message.call().has_result()) result = ScalarBitsOfValue(message.call().result());
    if (result.has_value() || !message.call().has_result()) {
      char bytes[kScalarAnswerBytesAtMost];
      const size_t written = EncodeScalarAnswer(message.id(), message.generation(), result, bytes);
      if (written == length) {
        return WriteFrame(channel, absl::string_view(bytes, written), kLocalReplyDeparture);
      }
    }
  }
  return WriteFrame(
      channel, length,
      [&message](google::protobuf::io::CodedOutputStream* out) {
        message.SerializeWithCachedSizes(out);
      },
      // However large, a reply the client takes at 16 MiB/s or more gets through.
      absl::Now() + kLocalReplyDeparture + absl::Seconds(length >> 24));
}

void WorkerDispatcher::RunChannelInbox(uint64_t id, Inbox& inbox) {
  for (;;) {
    std::optional<ReceivedRequest> next;
    {
      absl::MutexLock lock(&mu_);
      if (inbox.empty()) return;
      next.emplace(std::move(inbox.front()));
      inbox.pop_front();
    }
    const internal::WorkerRequest& request = next->request();
    absl::Status refused;
    if (!AllowedThroughBrokerInChannelInvocation(request.request().op_case())) {
      refused = ErrorStatus(v1::INVALID_ARGUMENT, absl::StrCat(OpName(request.request()),
                                                               " cannot run inside invocation ", id,
                                                               " on the same-host channel"));
    } else if (t_depth >= max_callback_depth_) {
      refused = InvocationTooDeep(id, t_depth, max_callback_depth_);
    }
    if (!refused.ok()) {
      Refuse(request.id(), refused);
      continue;
    }
    t_channel_inbox = true;
    Answer(request);
    t_channel_inbox = false;
  }
}

absl::StatusOr<WorkerDispatcher::ChannelReturn> WorkerDispatcher::ChannelInvoke(
    ShmChannel& channel, uint64_t id, absl::FunctionRef<absl::Status()> write_invoke, bool scalar) {
  // Requests the client's handler sends through the broker come here, until the return.
  Inbox inbox;
  {
    absl::MutexLock lock(&mu_);
    channel_waiting_[id] = &inbox;
  }
  absl::Cleanup forget = [this, id, &inbox] {
    // The broker waits for an answer to each left (a client that returned before they ran),
    // in order, and Route refuses later ones once the lock is free: refused under it.
    absl::MutexLock lock(&mu_);
    channel_waiting_.erase(id);
    for (const ReceivedRequest& request : inbox) {
      RefuseNotWaiting(request.request().id(), id, " on the same-host channel");
    }
    inbox.clear();
  };
  FFIBOX_RETURN_IF_ERROR(write_invoke());
  FrameDecoder frames(local_max_request_bytes_);
  frames.Recycle(std::move(local_answer_buffer_));
  for (;;) {
    RunChannelInbox(id, inbox);
    // The client's handler may take as long as it likes: the broker kills a call that
    // overruns its deadline, handlers included.
    absl::StatusOr<FramePayload> frame =
        ReadFrameAsItArrives(channel, frames, absl::InfiniteFuture(), kLocalFrameArrival);
    // A request from the broker was queued: for this invocation, it runs at the loop's top;
    // a top-level one waits until the call is done.
    if (absl::IsCancelled(frame.status())) continue;
    if (!frame.ok()) return frame.status();
    ChannelReturn answer;
    if (scalar && frame->pieces.size() == 1 &&
        ReadScalarReturn(frame->pieces[0], id, &answer.result)) {
      answer.read_from_bytes = true;
      local_answer_buffer_ = std::move(frame->pieces[0]);  // the next answer goes there
      return answer;
    }
    StackArena arena;
    auto* wrapped = google::protobuf::Arena::CreateMessage<internal::WorkerRequest>(&arena.arena);
    v1::Request* request = wrapped->mutable_request();
    if (!ParseFromOwnedPieces(absl::MakeSpan(frame->pieces), request)) {
      return absl::InvalidArgumentError("the client sent a frame that does not parse");
    }
    if (request->op_case() == v1::Request::kCallbackReturn) {
      if (request->callback_return().invocation() != id) {
        return absl::InvalidArgumentError(absl::StrCat("the client answered invocation ",
                                                       request->callback_return().invocation(),
                                                       " while invocation ", id, " waited"));
      }
      answer.message = request->callback_return();
      return answer;
    }
    if (request->invocation() != id || request->id() == 0 ||
        !AllowedInChannelInvocation(*request)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the client sent ", OpName(*request), " (invocation ", request->invocation(),
                       ") inside invocation ", id,
                       "; only calls, read_memory, read_memory_list, read_string, write_memory "
                       "and get_layout of this invocation and its callback_return may come "
                       "there"));
    }
    wrapped->set_id(request->id());
    wrapped->set_invocation(id);
    auto* response = google::protobuf::Arena::CreateMessage<v1::Response>(&arena.arena);
    response->set_id(request->id());
    if (t_depth >= max_callback_depth_) {
      // What the broker answers a request inside an invocation nested this deep.
      *response->mutable_error() =
          ToProtoError(InvocationTooDeep(id, t_depth, max_callback_depth_));
    } else if (absl::Status valid = ValidateNested(*request, limits_); !valid.ok()) {
      *response->mutable_error() = ToProtoError(valid);
    } else if (request->has_call()) {
      // The broker blames the function the busy word names when the worker dies: this one,
      // while it runs. The call's start and timeout stay the outer call's.
      const uint64_t outer = channel.LoadStatusWord(kLocalBusyFunctionWord);
      channel.StoreStatusWord(kLocalBusyFunctionWord, request->call().function());
      // No shared area for a call inside an invocation: the outer call's blocks are there.
      {
        const RunningRequest running(t_channel_request, request->id(), *request);
        executor_->Execute(*wrapped, response);
      }
      channel.StoreStatusWord(kLocalBusyFunctionWord, outer);
    } else {
      executor_->Execute(*wrapped, response);
    }
    response->set_generation(generation_);
    FFIBOX_RETURN_IF_ERROR(WriteLocal(channel, *response));
  }
}

void WorkerDispatcher::CloseLocal() {
  std::unique_ptr<ShmChannel> closing;
  {
    absl::MutexLock lock(&mu_);
    closing = std::move(local_);
  }
  if (closing != nullptr) {
    closing->StoreStatusWord(kLocalClosedWord, kLocalClosedByWorker);
    closing->Close();
  }
}

void WorkerDispatcher::ReportCallbackError(const v1::Error& error) {
  internal::WorkerReply reply;
  v1::SessionEvent* event = reply.mutable_event();
  event->set_kind(v1::SessionEvent::CALLBACK_ERROR);
  *event->mutable_error() = error;
  Send(reply);
}

void WorkerDispatcher::ReportFailure(uint64_t callback, uint64_t invocation,
                                     const absl::Status& status, absl::string_view consequence) {
  v1::Error error = ToProtoError(status);
  error.set_function(absl::StrCat("callback ", callback));
  error.set_message(absl::StrCat(
      "callback ", callback, invocation != 0 ? absl::StrCat(" (invocation ", invocation, ")") : "",
      ": ", error.message(), consequence));
  ReportCallbackError(error);
}

bool WorkerDispatcher::InvokerMayRead(uint64_t id) const {
  // Called while invocation `id` is unanswered: the one unanswered invocation is `id`.
  return unanswered_ == 1 && local_ == nullptr &&
         (reader_ == Reader::kNone || (reader_ == Reader::kInvoker && reading_invocation_ == id));
}

ReceivedRequest WorkerDispatcher::NextFor(uint64_t id, Invocation* invocation) {
  absl::MutexLock lock(&mu_);
  for (;;) {
    if (!invocation->inbox.empty()) break;
    if (InvokerMayRead(id)) {
      // Nobody else reads and only this invocation waits: its frames come to the thread
      // that waits for them, with no wakeup of the reader thread on the way.
      reader_ = Reader::kInvoker;
      reading_invocation_ = id;
      mu_.Unlock();
      Route(ReceiveOrExit());
      mu_.Lock();
      continue;
    }
    // Another thread reads, or other invocations wait too (the reader thread serves them
    // all): wait for this one's frame, or for the role to be free again.
    GiveUpReading(id);
    struct Waiter {
      WorkerDispatcher* self;
      uint64_t id;
      Invocation* invocation;
    } waiter{this, id, invocation};
    mu_.Await(absl::Condition(
        +[](Waiter* w) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return !w->invocation->inbox.empty() || w->self->InvokerMayRead(w->id);
        },
        &waiter));
  }
  ReceivedRequest next = std::move(invocation->inbox.front());
  invocation->inbox.pop_front();
  if (next.request().request().op_case() == v1::Request::kCallbackReturn) waiting_.erase(id);
  // Running a request inside the invocation, or back in native code: the reader thread reads
  // if it must meanwhile.
  GiveUpReading(id);
  return next;
}

void WorkerDispatcher::GiveUpReading(uint64_t id) {
  if (reader_ == Reader::kInvoker && reading_invocation_ == id) {
    reader_ = Reader::kNone;
    reading_invocation_ = 0;
    unread_since_ = absl::Now();
  }
}

void WorkerDispatcher::RunCallback(uint64_t callback, const Closure& closure, uint32_t buffer_bytes,
                                   void* const* args, void* result) {
  const v1::Signature& signature = closure.signature();
  if (t_depth >= max_callback_depth_) {
    StoreZeroResult(signature, result);
    ReportFailure(callback, 0,
                  ErrorStatus(v1::RESOURCE_EXHAUSTED,
                              absl::StrCat("not invoked: ", t_depth,
                                           " callback invocations are already nested on this "
                                           "thread, the limit (--max_callback_depth)")),
                  kGotZero);
    return;
  }
  // On the thread running a call from the same-host channel (whose client takes callbacks
  // there): the invocation goes on that channel; otherwise through the broker.
  ShmChannel* channel = t_channel;
  if (channel != nullptr && t_channel_inbox) {
    StoreZeroResult(signature, result);
    ReportFailure(callback, 0,
                  ErrorStatus(v1::FAILED_PRECONDITION,
                              "not invoked: called while a request that a callback's handler "
                              "sent through the broker ran (the handler waits for its answer)"),
                  kGotZero);
    return;
  }
  if (channel != nullptr && local_failed_) {
    // Not through the broker either: this thread may be inside an invocation only the
    // channel knew.
    StoreZeroResult(signature, result);
    ReportFailure(callback, 0,
                  ErrorStatus(v1::FAILED_PRECONDITION,
                              "not invoked: the same-host channel failed earlier in this call"),
                  kGotZero);
    return;
  }
  const uint64_t id = InvocationId(generation_, ++invocations_);
  if (channel != nullptr) {
    // A callback of scalars: its invoke is written, and its answer read, in the wire format
    // (core/scalar_wire.h).
    ScalarInvoke scalar;
    if (buffer_bytes == 0 && DecodeScalarArguments(signature, args, generation_, &scalar.args)) {
      scalar.generation = generation_;
      scalar.invocation = id;
      scalar.callback = callback;
      scalar.parent_invocation = t_invocation;
      auto write = [channel, &scalar] {
        absl::InlinedVector<char, 256> bytes(ScalarInvokeBytesAtMost(scalar.args.size()));
        const size_t length = EncodeScalarInvoke(scalar, bytes.data());
        return WriteFrame(*channel, absl::string_view(bytes.data(), length), kLocalReplyDeparture);
      };
      InvokeOnChannel(*channel, callback, id, closure, write, /*scalar=*/true, {}, result);
      return;
    }
  }
  internal::WorkerReply invoke_reply;
  v1::Response channel_message;
  v1::CallbackInvoke* invoke = channel != nullptr ? channel_message.mutable_callback_invoke()
                                                  : invoke_reply.mutable_invoke();
  invoke->set_invocation(id);
  invoke->set_callback(callback);
  invoke->set_parent_invocation(t_invocation);
  const ThreadRequest& making = channel != nullptr ? t_channel_request : t_request;
  invoke->set_request_id(making.id);
  std::vector<ShippedPointee> shipped;
  absl::Status decoded =
      DecodeCallbackArguments(signature, args, generation_, buffer_bytes, invoke, &shipped);
  if (!decoded.ok()) {
    StoreZeroResult(signature, result);
    ReportFailure(callback, 0, decoded, kGotZero);
    return;
  }
  // Told once per call, by the invocation that is sent (not one that failed above).
  if (making.id != 0 && making.call) CallBlocks::TellKept(generation_, invoke->mutable_kept());

  if (channel != nullptr) {
    channel_message.set_generation(generation_);
    InvokeOnChannel(
        *channel, callback, id, closure,
        [channel, &channel_message] { return WriteLocal(*channel, channel_message); },
        /*scalar=*/false, shipped, result);
    return;
  }

  const uint64_t parent = t_invocation;

  Invocation invocation;
  {
    absl::MutexLock lock(&mu_);
    waiting_[id] = &invocation;
    ++unanswered_;
    // Taken with the registration, when this thread may read: the reader thread is not woken
    // for an invocation whose frames this thread reads itself (NextFor). (Nobody reads while
    // the invoke below waits for room in the ring to the broker: the broker reads that ring
    // whatever it writes, so the wait ends.)
    if (InvokerMayRead(id)) {
      reader_ = Reader::kInvoker;
      reading_invocation_ = id;
    }
  }
  Send(invoke_reply);
  ++t_depth;
  t_invocation = id;
  v1::CallbackReturn answer;
  for (;;) {
    ReceivedRequest next = NextFor(id, &invocation);  // forgets the invocation at its return
    if (next.request().request().op_case() == v1::Request::kCallbackReturn) {
      answer = next.request().request().callback_return();
      break;
    }
    Answer(next.request());  // reentrancy: a request the client made inside this invocation
  }
  t_invocation = parent;
  --t_depth;
  Complete(callback, id, closure, answer, shipped, result);
}

void WorkerDispatcher::InvokeOnChannel(ShmChannel& channel, uint64_t callback, uint64_t id,
                                       const Closure& closure,
                                       absl::FunctionRef<absl::Status()> write_invoke, bool scalar,
                                       const std::vector<ShippedPointee>& shipped, void* result) {
  const uint64_t parent = t_invocation;
  ++t_depth;
  t_invocation = id;
  absl::StatusOr<ChannelReturn> answer = ChannelInvoke(channel, id, write_invoke, scalar);
  t_invocation = parent;
  --t_depth;
  if (!answer.ok()) {
    local_failed_ = true;  // the channel closes once the outer call is done
    StoreZeroResult(closure.signature(), result);
    ReportFailure(
        callback, id,
        ErrorStatus(v1::FAILED_PRECONDITION,
                    absl::StrCat("the same-host channel failed: ", answer.status().message())),
        kGotZero);
    return;
  }
  if (!answer->read_from_bytes) {
    Complete(callback, id, closure, answer->message, shipped, result);
    return;
  }
  v1::Value value;
  if (answer->result.has_value()) SetScalarBits(*answer->result, &value);
  StoreResult(callback, id, closure, answer->result.has_value() ? &value : nullptr, result);
}

void WorkerDispatcher::Complete(uint64_t callback, uint64_t invocation_id, const Closure& closure,
                                const v1::CallbackReturn& answer,
                                const std::vector<ShippedPointee>& shipped, void* result) {
  const v1::Signature& signature = closure.signature();
  // Pointees first, also when the client failed: like ctypes, its writes before the
  // exception stay.
  for (int i = 0; i < answer.pointees_size(); ++i) {
    absl::Status written = WriteBackPointee(shipped, answer.pointees(i));
    if (!written.ok()) {
      ReportFailure(callback, invocation_id,
                    PrefixField(written, absl::StrCat("callback_return.pointees[", i, "]")),
                    "; this pointee was not written back");
    }
  }
  if (!answer.error().empty()) {
    StoreZeroResult(signature, result);
    ReportFailure(callback, invocation_id,
                  ErrorStatus(v1::FAILED_PRECONDITION,
                              absl::StrCat("the client's function failed: ", answer.error())),
                  kGotZero);
    return;
  }
  StoreResult(callback, invocation_id, closure, answer.has_result() ? &answer.result() : nullptr,
              result);
}

void WorkerDispatcher::StoreResult(uint64_t callback, uint64_t invocation_id,
                                   const Closure& closure, const v1::Value* value, void* result) {
  MarshalContext context;
  context.generation = generation_;
  context.callbacks = &executor_->callbacks();
  absl::Status stored = StoreCallbackResult(closure.signature(), value, context, result);
  if (!stored.ok()) {
    ReportFailure(callback, invocation_id, PrefixField(stored, "callback_return.result"), kGotZero);
  }
}

}  // namespace ffibox

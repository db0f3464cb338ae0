// A request the broker has sent to a worker and not yet seen answered. Shared by the session
// (which queues them) and CheckWorkerResponse (which checks the worker's answer against them).
#ifndef FFIBOX_SERVER_BROKER_PENDING_REQUEST_H_
#define FFIBOX_SERVER_BROKER_PENDING_REQUEST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "core/call_answer.h"
#include "core/encoding_limits.h"
#include "core/shm_channel.h"
#include "ffibox/v1/ffibox.pb.h"
#include "server/broker/library_descriptor.h"

namespace ffibox {

struct PendingRequest {
  uint64_t sequence = 0;   // WorkerRequest.id: unique per worker, in send order
  uint64_t client_id = 0;  // the client's Request.id; 0 for the broker's own replays
  v1::Request::OpCase op = v1::Request::OP_NOT_SET;
  uint64_t handle = 0;  // library, function or callback handle, for load / resolve / define
  // The invocation the request runs inside (WorkerRequest.invocation); 0 = top level.
  uint64_t scope = 0;
  // `scope` is an invocation on the same-host channel (WorkerRequest.channel_invocation),
  // which the broker never saw open.
  bool channel_scope = false;
  std::string label;       // what was running, for errors: "cos", "dlopen libm.so.6"
  absl::Duration timeout;  // the deadline, counted from when the worker starts on it
  static constexpr uint64_t kNotReturned = ExpectedCallResult::kNotReturned;
  // What the worker's answer may hold (core/encoding_limits.h): set by the session for calls,
  // batches and layouts; nothing repeated for other requests.
  AnswerLimits answer_limits;
  // For a call: what its result must look like.
  ExpectedCallResult call;
  // For a call or a batch: the most bytes an honest answer to it takes (core/
  // encoding_limits.h's CallAnswerBytes, of each call of a batch); 0 when not known (a
  // result of a registered type).
  uint64_t answer_bytes = 0;
  // For a batch: how many calls it has, and what the result of each call that sent blocks
  // must look like, by call index in increasing order (a call not listed sent no blocks, so
  // its result returns and keeps none). Memory proportional to the blocks, not the calls.
  uint32_t batch_calls = 0;
  std::vector<std::pair<uint32_t, ExpectedCallResult>> batch_blocks;
  // For read_memory: the exact number of bytes the reply must carry in `data`, or, when
  // `read_typed`, the size a `raw` value must have (then `data` must be empty).
  uint64_t read_size = 0;
  bool read_typed = false;
  // For read_memory_list: what each read's answer must hold, in order.
  std::vector<ExpectedRead> read_list;
  // When it was queued for the worker (InFlightRequests::Queue): its latency is counted
  // from here (server/broker/broker_metrics.h).
  absl::Time queued_at;
  // For open_local_channel: the channel's memfd for the door and the broker's attachment of
  // the worker's end, both put to use once the worker attached the channel.
  struct LocalChannelSetup {
    LibraryFd memfd;
    std::unique_ptr<ShmChannel> worker_end;
  };
  std::shared_ptr<LocalChannelSetup> local_channel;
  // Its deadline was restarted once already (InFlightRequests::PostponeTopLevelHead).
  bool postponed = false;
  // Non-zero: the request is only valid on this worker generation (calls of functions
  // resolved by address); on any other, it fails with STALE_HANDLE instead of being sent.
  uint64_t required_generation = 0;
};

}  // namespace ffibox

#endif  // FFIBOX_SERVER_BROKER_PENDING_REQUEST_H_
